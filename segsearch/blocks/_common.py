"""Small helpers shared by the blocks: layer classes by rank and argument checks.

Keras is imported inside the functions so that importing :mod:`segsearch.blocks` stays cheap.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Literal, get_args

from segsearch.errors import ConfigError, unknown_name

if TYPE_CHECKING:  # pragma: no cover
    import keras

#: The decoder upsampling modes: the one list (the hyperparameter ``upsampling`` reads it too).
UpsamplingMode = Literal["transpose", "nearest", "bilinear"]
UPSAMPLING_MODES: tuple[str, ...] = get_args(UpsamplingMode)


def layer_class(
    kind: Literal["conv", "conv_transpose", "max_pool", "upsampling"], ndim: int
) -> Any:
    """Return the 2D or 3D Keras layer class of one kind.

    Args:
        kind: "conv", "conv_transpose", "max_pool" or "upsampling".
        ndim: number of spatial dimensions, 2 or 3.

    Example:
        >>> layer_class("conv", 3).__name__
        'Conv3D'
    """
    from keras import layers

    if ndim not in (2, 3):
        raise ConfigError(f"only 2D and 3D networks are supported, got {ndim} spatial dimensions")
    table = {
        ("conv", 2): layers.Conv2D,
        ("conv", 3): layers.Conv3D,
        ("conv_transpose", 2): layers.Conv2DTranspose,
        ("conv_transpose", 3): layers.Conv3DTranspose,
        ("max_pool", 2): layers.MaxPooling2D,
        ("max_pool", 3): layers.MaxPooling3D,
        ("upsampling", 2): layers.UpSampling2D,
        ("upsampling", 3): layers.UpSampling3D,
    }
    return table[(kind, ndim)]


def spatial_rank(x: keras.KerasTensor) -> int:
    """Return the number of spatial dimensions of a channels-last tensor (2 or 3)."""
    return len(x.shape) - 2


def check_filters(value: Any, what: str = "filters") -> int:
    """Return ``value`` as a positive int, or raise ConfigError saying what was received."""
    try:
        number = operator.index(value)
    except TypeError:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}") from None
    if isinstance(value, bool) or number < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    value = int(number)
    return value


def check_dropout(value: Any, what: str = "dropout") -> float:
    """Return ``value`` as a float in [0, 1), or raise ConfigError."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"{what} must be in [0, 1), got {rate}")
    return rate


def check_upsampling(mode: Any, what: str = "upsampling") -> str:
    """Return ``mode`` if it is one of "transpose", "nearest", "bilinear".

    Anything else raises ConfigError.
    """
    if mode not in UPSAMPLING_MODES:
        raise ConfigError(unknown_name(f"{what} mode", mode, UPSAMPLING_MODES))
    return str(mode)
