"""Deep Residual U-Net (Zhang et al., road extraction): pre-activation residual blocks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from segsearch.architectures._head import segmentation_head
from segsearch.architectures._levels import LevelArgs, check_levels, decode
from segsearch.blocks import preact_residual_block
from segsearch.blocks._common import UpsamplingMode

if TYPE_CHECKING:  # pragma: no cover
    import keras

ARCH = "resunet"


@dataclass(frozen=True)
class ResUNetArgs(LevelArgs):
    """The checked arguments of :func:`build_resunet`: the level arguments and upsampling_conv."""

    upsampling_conv: bool = False


def validate_resunet(args: Mapping[str, Any]) -> ResUNetArgs:
    """Check :func:`build_resunet` arguments (ConfigError / InfeasibleError), once."""
    return check_levels(ARCH, args, cls=ResUNetArgs, upsampling_conv=bool(args["upsampling_conv"]))


def build_resunet(
    input_shape: Sequence[int | None],
    num_classes: int = 1,
    *,
    depth: int = 3,
    filters: int = 64,
    upsampling: UpsamplingMode = "nearest",
    upsampling_conv: bool = False,
    filter_growth: float = 2.0,
    dropout: float = 0.0,
    batch_norm: bool = True,
    stackwise_filters: Sequence[int] | None = None,
    name: str = "resunet",
) -> keras.Model:
    """Build a ResUNet; with the defaults it is the network of the ``resunet`` preset.

    (The presets, with their parameter counts and source articles, are the table
    ``segsearch.hypermodels.registry.PRESETS``.) Level 1 is the stem (conv, BN-ReLU, conv, plus a
    1x1 shortcut, added); levels 2..depth and the bridge are pre-activation residual blocks whose
    first conv has stride 2 (64-128-256, bridge 512 by default). Decoder level i: 2x upsampling
    (bare nearest/bilinear resizing as in the article, optionally followed by a 2x2 conv; or a 2x2
    transposed conv to the level's width), concatenation with the level's skip, and a residual
    block. Layers: ``enc{i}_*``, ``bridge_*``, ``dec{i}_up``, ``dec{i}_concat``, ``dec{i}_*``,
    ``head_conv``, ``head_act``.

    Args:
        input_shape: (H, W, C); H and W must be divisible by 2**depth (or None).
        num_classes: 1 for a sigmoid (binary) head, >= 2 for softmax.
        depth: number of stride-2 residual blocks (the bridge included).
        filters: filters of the first level.
        upsampling: "nearest" (the preset), "bilinear" or "transpose".
        upsampling_conv: add a 2x2 conv after nearest/bilinear resizing (off in the preset).
        filter_growth: width factor from one level to the next.
        dropout: dropout rate after every residual block (0 = none).
        batch_norm: BatchNormalization in the pre-activations.
        stackwise_filters: explicit widths of the levels and the bridge (depth + 1 ints,
            shallow to deep); overrides filters / filter_growth.
        name: model name.

    Example:
        >>> model = build_resunet((64, 64, 3), filters=8)
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    import keras

    p = validate_resunet(locals())
    block = partial(preact_residual_block, batch_norm=p.batch_norm, dropout=p.dropout)

    inputs = keras.Input(tuple(input_shape), name="input")
    x = block(inputs, p.filters[0], name="enc1", preactivate=False)
    skips = [x]
    for i in range(2, p.depth + 1):
        x = block(x, p.filters[i - 1], strides=2, name=f"enc{i}")
        skips.append(x)
    x = block(x, p.filters[p.depth], strides=2, name="bridge")
    x = decode(x, skips, p.filters, block, mode=p.upsampling, conv=p.upsampling_conv)
    outputs = segmentation_head(x, p.num_classes)
    return keras.Model(inputs, outputs, name=name)
