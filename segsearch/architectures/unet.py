"""U-Net: conv-BN-ReLU x2 blocks, max-pooling, transposed-conv upsampling, skip concatenation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from segsearch.architectures._head import segmentation_head
from segsearch.architectures._levels import LevelArgs, check_levels, decode
from segsearch.blocks import conv_block
from segsearch.blocks._common import UpsamplingMode

if TYPE_CHECKING:  # pragma: no cover
    import keras

ARCH = "unet"


def validate_unet(args: Mapping[str, Any]) -> LevelArgs:
    """Check :func:`build_unet` arguments (ConfigError / InfeasibleError), once."""
    return check_levels(ARCH, args)


def build_unet(
    input_shape: Sequence[int | None],
    num_classes: int = 1,
    *,
    depth: int = 4,
    filters: int = 64,
    filter_growth: float = 2.0,
    upsampling: UpsamplingMode = "transpose",
    dropout: float = 0.0,
    batch_norm: bool = True,
    stackwise_filters: Sequence[int] | None = None,
    name: str = "unet",
) -> keras.Model:
    """Build a U-Net; with the defaults it is the network of the ``unet`` preset.

    (The presets, with their parameter counts and source articles, are the table
    ``segsearch.hypermodels.registry.PRESETS``.) Level i (1 = full resolution) has
    ``filters * filter_growth**(i-1)`` filters; the bridge has the next width (64-128-256-512,
    bridge 1024 by default). Decoder level i upsamples (2x2 transposed conv, or nearest/bilinear
    resizing + 2x2 conv, both to the level's width), concatenates the level's skip and applies the
    same conv block. Layers: ``enc{i}_*``, ``enc{i}_pool``, ``bridge_*``,
    ``dec{i}_up``/``dec{i}_upconv``, ``dec{i}_concat``, ``dec{i}_*``, ``head_conv``, ``head_act``.

    Args:
        input_shape: (H, W, C); H and W must be divisible by 2**depth (or None).
        num_classes: 1 for a sigmoid (binary) head, >= 2 for softmax.
        depth: number of 2x2 max-poolings (levels below full resolution).
        filters: filters of the first level.
        filter_growth: width factor from one level to the next.
        upsampling: "transpose", "nearest" or "bilinear".
        dropout: dropout rate after every conv block (0 = none).
        batch_norm: BatchNormalization between each conv and its ReLU.
        stackwise_filters: explicit widths of the encoder levels and the bridge (depth + 1 ints,
            shallow to deep); overrides filters / filter_growth.
        name: model name.

    Example:
        >>> model = build_unet((64, 64, 1), depth=3, filters=8)
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    import keras
    from keras import layers

    p = validate_unet(locals())
    block = partial(conv_block, batch_norm=p.batch_norm, dropout=p.dropout)

    inputs = keras.Input(tuple(input_shape), name="input")
    x = inputs
    skips = []
    for i in range(1, p.depth + 1):
        x = block(x, p.filters[i - 1], name=f"enc{i}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    x = block(x, p.filters[p.depth], name="bridge")
    x = decode(x, skips, p.filters, block, mode=p.upsampling)
    outputs = segmentation_head(x, p.num_classes)
    return keras.Model(inputs, outputs, name=name)
