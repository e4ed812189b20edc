"""U-Net (seed 003): conv-BN-ReLU x2 blocks, max-pooling, transposed-conv upsampling, skip concat."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from segsearch.architectures._checks import (
    check_depth,
    check_divisible,
    check_input_shape,
    level_filters,
)
from segsearch.architectures._head import check_num_classes, segmentation_head
from segsearch.blocks import conv_block, upsample
from segsearch.blocks._common import UpsamplingMode, check_dropout, check_upsampling

if TYPE_CHECKING:  # pragma: no cover
    import keras

ARCH = "unet"


def validate_unet(args: Mapping[str, Any]) -> dict[str, Any]:
    """Check :func:`build_unet` arguments (ConfigError / InfeasibleError); return them normalised."""
    spatial = check_input_shape(ARCH, args["input_shape"])
    depth = check_depth(ARCH, args["encoder_depth"], 1)
    check_divisible(ARCH, spatial, depth)
    return {
        "num_classes": check_num_classes(ARCH, args["num_classes"]),
        "depth": depth,
        "filters": level_filters(
            ARCH, args["encoder_filters"], args["filter_growth"], depth + 1, args["stackwise_filters"]
        ),
        "upsampling": check_upsampling(args["decoder_upsampling"]),
        "dropout": check_dropout(args["dropout"]),
        "batch_norm": bool(args["batch_norm"]),
    }


def build_unet(
    input_shape: Sequence[int | None],
    num_classes: int = 1,
    *,
    encoder_depth: int = 4,
    encoder_filters: int = 64,
    filter_growth: float = 2.0,
    decoder_upsampling: UpsamplingMode = "transpose",
    dropout: float = 0.0,
    batch_norm: bool = True,
    stackwise_filters: Sequence[int] | None = None,
    name: str = "unet",
) -> keras.Model:
    """Build a U-Net; with the defaults it is seed 003 (31,055,297 parameters at 512x512x3).

    Level i (1 = full resolution) has ``encoder_filters * filter_growth**(i-1)`` filters; the bridge
    has the next width (64-128-256-512, bridge 1024 by default). Decoder level i upsamples (2x2
    transposed conv, or nearest/bilinear resizing + 2x2 conv, both to the level's width),
    concatenates the level's skip and applies the same conv block. Layers: ``enc{i}_*``,
    ``enc{i}_pool``, ``bridge_*``, ``dec{i}_up``/``dec{i}_upconv``, ``dec{i}_concat``, ``dec{i}_*``,
    ``head_conv``, ``head_act``.

    Args:
        input_shape: (H, W, C); H and W must be divisible by 2**encoder_depth (or None).
        num_classes: 1 for a sigmoid (binary) head, >= 2 for softmax.
        encoder_depth: number of 2x2 max-poolings (levels below full resolution).
        encoder_filters: filters of the first level.
        filter_growth: width factor from one level to the next.
        decoder_upsampling: "transpose", "nearest" or "bilinear".
        dropout: dropout rate after every conv block (0 = none).
        batch_norm: BatchNormalization between each conv and its ReLU.
        stackwise_filters: explicit widths of the encoder levels and the bridge (encoder_depth + 1
            ints, shallow to deep); overrides encoder_filters / filter_growth.
        name: model name.

    Example:
        >>> model = build_unet((64, 64, 1), encoder_depth=3, encoder_filters=8)
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    import keras
    from keras import layers

    p = validate_unet(locals())
    filters, depth = p["filters"], p["depth"]
    common = {"batch_norm": p["batch_norm"], "dropout": p["dropout"]}

    inputs = keras.Input(tuple(input_shape), name="input")
    x = inputs
    skips = []
    for i in range(1, depth + 1):
        x = conv_block(x, filters[i - 1], name=f"enc{i}", **common)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    x = conv_block(x, filters[depth], name="bridge", **common)
    for i in range(depth, 0, -1):
        x = upsample(x, name=f"dec{i}", mode=p["upsampling"], filters=filters[i - 1])
        x = layers.Concatenate(name=f"dec{i}_concat")([x, skips[i - 1]])
        x = conv_block(x, filters[i - 1], name=f"dec{i}", **common)
    outputs = segmentation_head(x, p["num_classes"])
    return keras.Model(inputs, outputs, name=name)
