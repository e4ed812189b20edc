"""U-Net with a residual block at every level, in 2D or 3D."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from segsearch.architectures._head import segmentation_head
from segsearch.architectures._levels import LevelArgs, check_levels, decode
from segsearch.blocks import residual_stack
from segsearch.blocks._common import UpsamplingMode, check_filters, layer_class
from segsearch.errors import InfeasibleError

if TYPE_CHECKING:  # pragma: no cover
    import keras

ARCH = "resblock_unet"


@dataclass(frozen=True)
class ResBlockUNetArgs(LevelArgs):
    """The checked arguments of :func:`build_resblock_unet`: the level arguments and blocks."""

    blocks: int = 1


def validate_resblock_unet(args: Mapping[str, Any]) -> ResBlockUNetArgs:
    """Check :func:`build_resblock_unet` arguments (ConfigError / InfeasibleError), once."""
    p = check_levels(ARCH, args, allow_3d=True, cls=ResBlockUNetArgs,
                     blocks=check_filters(args["blocks"], f"{ARCH}: blocks"))
    if p.ndim == 3 and p.upsampling == "bilinear":
        raise InfeasibleError(
            f"{ARCH}: 'bilinear' upsampling is 2D only and the input "
            f"{tuple(args['input_shape'])} is a 3D volume; use upsampling='nearest' or 'transpose'"
        )
    return p


def build_resblock_unet(
    input_shape: Sequence[int | None],
    num_classes: int = 2,
    *,
    depth: int = 4,
    blocks: int = 1,
    filters: int = 64,
    filter_growth: float = 2.0,
    upsampling: UpsamplingMode = "nearest",
    dropout: float = 0.0,
    batch_norm: bool = True,
    stackwise_filters: Sequence[int] | None = None,
    name: str = "resblock_unet",
) -> keras.Model:
    """Build a residual-block U-Net; the defaults are the network of the ``resblock_unet`` preset.

    (The presets, with their parameter counts and source articles, are the table
    ``segsearch.hypermodels.registry.PRESETS``.) Every level is a residual block (1x1 no-bias conv
    shortcut; 3x3 conv-BN-ReLU-3x3 conv-BN; add; ReLU), repeated ``blocks`` times (repeats use
    identity shortcuts). There are depth + 1 levels (5 by default, filters 64-128-256-512-1024), 2x
    max-pooling between them. Decoder level i: 2x upsampling then a 2x2 conv with the level's width
    and ReLU ("upsample then convolve", the article's choice; or a 2x2 transposed conv),
    concatenation with the skip, and the residual block. A 4-dimensional input_shape (D, H, W, C)
    builds the same network in 3D (Conv3D, MaxPooling3D, UpSampling3D). Layers:
    ``enc{i}_res{k}_*``, ``enc{i}_pool``, ``bridge_res{k}_*``, ``dec{i}_up``, ``dec{i}_upconv``,
    ``dec{i}_uprelu``, ``dec{i}_concat``, ``dec{i}_res{k}_*``, ``head_conv``, ``head_act``.

    Args:
        input_shape: (H, W, C) or (D, H, W, C); spatial sizes divisible by 2**depth (or None).
        num_classes: 1 for a sigmoid (binary) head, >= 2 for softmax (the preset: 2).
        depth: number of 2x max-poolings (levels = depth + 1).
        blocks: residual blocks per level.
        filters: filters of the first level.
        filter_growth: width factor from one level to the next.
        upsampling: "nearest" (the preset), "bilinear" (2D only) or "transpose".
        dropout: dropout rate after every level's residual blocks (0 = none).
        batch_norm: BatchNormalization inside the residual blocks.
        stackwise_filters: explicit widths of the levels (depth + 1 ints, shallow to deep);
            overrides filters / filter_growth.
        name: model name.

    Example:
        >>> model = build_resblock_unet((16, 16, 16, 1), depth=2, filters=4)
        >>> model.output_shape
        (None, 16, 16, 16, 2)
    """
    import keras

    p = validate_resblock_unet(locals())
    block = partial(residual_stack, blocks=p.blocks, batch_norm=p.batch_norm, dropout=p.dropout)
    max_pool = layer_class("max_pool", p.ndim)

    inputs = keras.Input(tuple(input_shape), name="input")
    x = inputs
    skips = []
    for i in range(1, p.depth + 1):
        x = block(x, p.filters[i - 1], name=f"enc{i}")
        skips.append(x)
        x = max_pool(2, name=f"enc{i}_pool")(x)
    x = block(x, p.filters[p.depth], name="bridge")
    x = decode(x, skips, p.filters, block, mode=p.upsampling, conv_activation="relu")
    outputs = segmentation_head(x, p.num_classes)
    return keras.Model(inputs, outputs, name=name)
