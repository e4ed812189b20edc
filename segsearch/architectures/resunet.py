"""Deep Residual U-Net (seed 001, Zhang et al. road extraction): pre-activation residual blocks."""

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
from segsearch.blocks import preact_residual_block, upsample
from segsearch.blocks._common import UpsamplingMode, check_dropout, check_upsampling

if TYPE_CHECKING:  # pragma: no cover
    import keras

ARCH = "resunet"


def validate_resunet(args: Mapping[str, Any]) -> dict[str, Any]:
    """Check :func:`build_resunet` arguments (ConfigError / InfeasibleError); return them normalised."""
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
        "upsampling_conv": bool(args["decoder_upsampling_conv"]),
        "dropout": check_dropout(args["dropout"]),
        "batch_norm": bool(args["batch_norm"]),
    }


def build_resunet(
    input_shape: Sequence[int | None],
    num_classes: int = 1,
    *,
    encoder_depth: int = 3,
    encoder_filters: int = 64,
    filter_growth: float = 2.0,
    decoder_upsampling: UpsamplingMode = "nearest",
    decoder_upsampling_conv: bool = False,
    dropout: float = 0.0,
    batch_norm: bool = True,
    stackwise_filters: Sequence[int] | None = None,
    name: str = "resunet",
) -> keras.Model:
    """Build a ResUNet; with the defaults it is seed 001 (8,227,393 parameters at 224x224x3).

    Level 1 is the seed's stem (conv, BN-ReLU, conv, plus a 1x1 shortcut, added); levels 2..depth and
    the bridge are pre-activation residual blocks whose first conv has stride 2 (64-128-256, bridge
    512 by default). Decoder level i: 2x upsampling (bare nearest/bilinear resizing as in the seed,
    optionally followed by a 2x2 conv; or a 2x2 transposed conv to the level's width), concatenation
    with the level's skip, and a residual block. Layers: ``enc{i}_*``, ``bridge_*``, ``dec{i}_up``,
    ``dec{i}_concat``, ``dec{i}_*``, ``head_conv``, ``head_act``.

    Args:
        input_shape: (H, W, C); H and W must be divisible by 2**encoder_depth (or None).
        num_classes: 1 for a sigmoid (binary) head, >= 2 for softmax.
        encoder_depth: number of stride-2 residual blocks (the bridge included).
        encoder_filters: filters of the first level.
        filter_growth: width factor from one level to the next.
        decoder_upsampling: "nearest" (seed), "bilinear" or "transpose".
        decoder_upsampling_conv: add a 2x2 conv after nearest/bilinear resizing (off in the seed).
        dropout: dropout rate after every residual block (0 = none).
        batch_norm: BatchNormalization in the pre-activations.
        stackwise_filters: explicit widths of the levels and the bridge (encoder_depth + 1 ints,
            shallow to deep); overrides encoder_filters / filter_growth.
        name: model name.

    Example:
        >>> model = build_resunet((64, 64, 3), encoder_filters=8)
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    import keras
    from keras import layers

    p = validate_resunet(locals())
    filters, depth = p["filters"], p["depth"]
    bn, drop = p["batch_norm"], p["dropout"]

    inputs = keras.Input(tuple(input_shape), name="input")
    x = preact_residual_block(
        inputs, filters[0], name="enc1", batch_norm=bn, dropout=drop, preactivate=False
    )
    skips = [x]
    for i in range(2, depth + 1):
        x = preact_residual_block(
            x, filters[i - 1], strides=2, name=f"enc{i}", batch_norm=bn, dropout=drop
        )
        skips.append(x)
    x = preact_residual_block(x, filters[depth], strides=2, name="bridge", batch_norm=bn, dropout=drop)
    for i in range(depth, 0, -1):
        x = upsample(
            x, name=f"dec{i}", mode=p["upsampling"], filters=filters[i - 1], conv=p["upsampling_conv"]
        )
        x = layers.Concatenate(name=f"dec{i}_concat")([x, skips[i - 1]])
        x = preact_residual_block(x, filters[i - 1], name=f"dec{i}", batch_norm=bn, dropout=drop)
    outputs = segmentation_head(x, p["num_classes"])
    return keras.Model(inputs, outputs, name=name)
