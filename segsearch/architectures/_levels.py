"""What the U-Net-shaped builders share: their argument check and their decoder loop.

``unet``, ``resunet`` and ``resblock_unet`` take the same level arguments (``depth``, ``filters``,
``filter_growth``, ``stackwise_filters``, ``upsampling``, ``dropout``, ``batch_norm``);
:func:`check_levels` checks them once and returns a frozen :class:`LevelArgs`. :func:`decode` is
the decoder every U-Net-shaped builder runs (resnet50_unet too): upsample, concatenate the skip,
apply the level's block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segsearch.architectures._checks import (
    check_depth,
    check_divisible,
    check_input_shape,
    level_filters,
)
from segsearch.architectures._head import check_num_classes
from segsearch.blocks import upsample
from segsearch.blocks._common import check_dropout, check_upsampling

if TYPE_CHECKING:  # pragma: no cover
    import keras


@dataclass(frozen=True)
class LevelArgs:
    """The checked arguments of a U-Net-shaped builder.

    Args:
        num_classes: channels of the head (1 = sigmoid).
        ndim: spatial dimensions of the input (2, or 3 for volumes).
        depth: levels below full resolution (the bridge is the deepest).
        filters: the width of every level and the bridge, shallow to deep (depth + 1 ints).
        upsampling: "transpose", "nearest" or "bilinear".
        dropout: dropout rate after each block.
        batch_norm: BatchNormalization in the blocks.
    """

    num_classes: int
    ndim: int
    depth: int
    filters: tuple[int, ...]
    upsampling: str
    dropout: float
    batch_norm: bool


def check_levels(
    arch: str, args: Mapping[str, Any], *, allow_3d: bool = False, cls: type = LevelArgs,
    **extra: Any,
) -> Any:
    """Check the level arguments of a U-Net-shaped builder (ConfigError / InfeasibleError).

    Args:
        arch: the architecture's key, for messages.
        args: the builder's bound arguments.
        allow_3d: whether (D, H, W, C) inputs are accepted.
        cls: the frozen class to return (:class:`LevelArgs` or a subclass with more fields).
        **extra: the subclass's own fields, already checked.
    """
    spatial = check_input_shape(arch, args["input_shape"], allow_3d=allow_3d)
    depth = check_depth(arch, args["depth"], 1)
    check_divisible(arch, spatial, depth)
    filters = level_filters(arch, args["filters"], args["filter_growth"], depth + 1,
                            args["stackwise_filters"])
    return cls(
        num_classes=check_num_classes(arch, args["num_classes"]),
        ndim=len(spatial),
        depth=depth,
        filters=tuple(filters),
        upsampling=check_upsampling(args["upsampling"]),
        dropout=check_dropout(args["dropout"]),
        batch_norm=bool(args["batch_norm"]),
        **extra,
    )


def decode(
    x: keras.KerasTensor,
    skips: Sequence[keras.KerasTensor],
    widths: Sequence[int],
    block: Callable[..., keras.KerasTensor],
    *,
    mode: str,
    **upsample_options: Any,
) -> keras.KerasTensor:
    """The decoder: for level i = len(skips) .. 1, upsample to ``widths[i - 1]`` ("dec{i}_up"),
    concatenate ``skips[i - 1]`` ("dec{i}_concat") and apply ``block(x, width, name="dec{i}")``.

    Args:
        x: the bridge.
        skips: the skip of every level, shallow to deep.
        widths: the width of every decoder level, shallow to deep.
        block: the level's block, called as ``block(x, filters, name=...)``.
        mode: the upsampling mode.
        **upsample_options: further arguments of :func:`segsearch.blocks.upsample`.
    """
    from keras import layers

    for i in range(len(skips), 0, -1):
        x = upsample(x, name=f"dec{i}", mode=mode, filters=widths[i - 1], **upsample_options)
        x = layers.Concatenate(name=f"dec{i}_concat")([x, skips[i - 1]])
        x = block(x, widths[i - 1], name=f"dec{i}")
    return x
