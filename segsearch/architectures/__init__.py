"""Pure network builders: one ``build_<key>`` per architecture, no hyperparameter objects.

``BUILDERS`` maps each registry key (the YAML value, export record, test id and CLI word) to its
builder. Every builder checks its arguments before creating a layer and raises
:class:`~segsearch.errors.InfeasibleError` for sizes, depths or ASPP rates that cannot work,
:class:`~segsearch.errors.ConfigError` for bad values and :class:`~segsearch.errors.WeightsError` for
weights that cannot be loaded. :func:`check_input_size` runs the same checks without building.

Keras is imported only inside the builders, so importing this package is cheap.

Example:
    >>> from segsearch.architectures import BUILDERS, check_input_size
    >>> check_input_size("unet", (100, 100, 3))     # raises InfeasibleError: not divisible by 16
    >>> model = BUILDERS["unet"]((64, 64, 3), encoder_filters=8)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from segsearch.architectures.deeplabv3plus import (
    build_deeplabv3plus,
    validate_deeplabv3plus,
)
from segsearch.architectures.resblock_unet import (
    build_resblock_unet,
    validate_resblock_unet,
)
from segsearch.architectures.resnet50_unet import (
    build_resnet50_unet,
    validate_resnet50_unet,
)
from segsearch.architectures.resunet import build_resunet, validate_resunet
from segsearch.architectures.unet import build_unet, validate_unet
from segsearch.errors import ConfigError, unknown_name

__all__ = [
    "BUILDERS",
    "build_deeplabv3plus",
    "build_resblock_unet",
    "build_resnet50_unet",
    "build_resunet",
    "build_unet",
    "check_input_size",
    "get_builder",
    "register",
]

BUILDERS: dict[str, Callable[..., Any]] = {}
_VALIDATORS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {}


def register(
    key: str,
    builder: Callable[..., Any],
    validator: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> None:
    """Add a builder under ``key``; a key that is already registered is an error.

    Args:
        key: snake_case registry key, e.g. "unet".
        builder: ``build_<key>(input_shape, num_classes, **kwargs) -> keras.Model``.
        validator: takes the builder's bound arguments (a mapping) and raises on what cannot work.
    """
    if key in BUILDERS:
        raise ConfigError(
            f"architecture key {key!r} is registered twice ({BUILDERS[key].__module__}."
            f"{BUILDERS[key].__name__} and {builder.__module__}.{builder.__name__}); keys must be unique"
        )
    BUILDERS[key] = builder
    _VALIDATORS[key] = validator


for _key, _builder, _validator in (
    ("unet", build_unet, validate_unet),
    ("resunet", build_resunet, validate_resunet),
    ("resnet50_unet", build_resnet50_unet, validate_resnet50_unet),
    ("deeplabv3plus", build_deeplabv3plus, validate_deeplabv3plus),
    ("resblock_unet", build_resblock_unet, validate_resblock_unet),
):
    register(_key, _builder, _validator)
del _key, _builder, _validator


def get_builder(key: str) -> Callable[..., Any]:
    """Return the builder under ``key``; an unknown key raises ConfigError naming the closest."""
    try:
        return BUILDERS[key]
    except KeyError:
        raise ConfigError(unknown_name("architecture", key, BUILDERS)) from None


def check_input_size(architecture: str, input_shape: Sequence[int | None], **options: Any) -> None:
    """Check, without building, that ``architecture`` can be built at ``input_shape`` with ``options``.

    ``options`` are the builder's keyword arguments (missing ones take the builder's defaults). The
    checks are the builder's own: input size divisible by the total stride 2**encoder_depth, ASPP
    rates smaller than the feature map at the ASPP input, image pooling on a map of at least 1x1,
    2D / 3D support, the value of every argument, an existing weights file.

    Args:
        architecture: registry key, e.g. "deeplabv3plus".
        input_shape: (H, W, C), or (D, H, W, C) for resblock_unet.
        **options: builder keyword arguments, e.g. ``encoder_depth=4, aspp_rates="6,12,18"``.

    Raises:
        InfeasibleError: the configuration cannot work at this input size (the message says the fix).
        ConfigError: unknown architecture or option, or a bad value.
        WeightsError: a weights path that does not exist, or ImageNet weights with != 3 channels.

    Example:
        >>> check_input_size("deeplabv3plus", (64, 64, 3))
        InfeasibleError: deeplabv3plus: ASPP rate(s) 6, 12, 18 >= the 4x4 feature map at the ASPP ...
    """
    builder = get_builder(architecture)
    signature = inspect.signature(builder)
    valid = [n for n in signature.parameters if n not in ("input_shape", "name")]
    for option in options:
        if option not in signature.parameters or option in ("input_shape",):
            raise ConfigError(unknown_name(f"{architecture} option", option, valid))
    bound = signature.bind(input_shape, **options)
    bound.apply_defaults()
    _VALIDATORS[architecture](bound.arguments)
