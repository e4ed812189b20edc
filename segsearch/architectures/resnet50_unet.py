"""ResNet50-U-Net (seed 000): keras.applications ResNet50 encoder, U-Net decoder."""

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
from segsearch.blocks.resnet50 import (
    FreezeMode,
    Weights,
    check_freeze,
    check_weights,
    freeze_encoder,
    resnet50_encoder,
    resnet50_features,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras

ARCH = "resnet50_unet"
MIN_DEPTH, MAX_DEPTH = 2, 5


def validate_resnet50_unet(args: Mapping[str, Any]) -> dict[str, Any]:
    """Check :func:`build_resnet50_unet` arguments (ConfigError / InfeasibleError / WeightsError)."""
    spatial = check_input_shape(ARCH, args["input_shape"])
    depth = check_depth(ARCH, args["encoder_depth"], MIN_DEPTH, MAX_DEPTH)
    check_divisible(ARCH, spatial, depth, min_depth=MIN_DEPTH)
    check_weights(args["weights"], args["input_shape"][-1])
    stackwise = args["stackwise_decoder_filters"]
    widths = level_filters(
        ARCH,
        args["decoder_filters"],
        2.0,
        depth,
        None if stackwise is None else list(stackwise)[::-1],
        what="decoder_filters",
        stackwise_name="stackwise_decoder_filters",
    )
    return {
        "num_classes": check_num_classes(ARCH, args["num_classes"]),
        "depth": depth,
        "widths": widths,  # widths[i - 1] = decoder level i (1 = full resolution)
        "upsampling": check_upsampling(args["decoder_upsampling"]),
        "dropout": check_dropout(args["dropout"]),
        "batch_norm": bool(args["batch_norm"]),
        "freeze": check_freeze(args["freeze"]),
        "freeze_batch_norm": bool(args["freeze_batch_norm"]),
    }


def build_resnet50_unet(
    input_shape: Sequence[int | None],
    num_classes: int = 1,
    *,
    encoder_depth: int = 4,
    decoder_filters: int = 64,
    decoder_upsampling: UpsamplingMode = "transpose",
    dropout: float = 0.0,
    batch_norm: bool = True,
    weights: Weights = None,
    freeze: FreezeMode = "none",
    freeze_batch_norm: bool = True,
    stackwise_decoder_filters: Sequence[int] | None = None,
    name: str = "resnet50_unet",
) -> keras.Model:
    """Build a ResNet50-U-Net; with the defaults it is seed 000 (20,676,545 parameters at 512x512x3).

    The bridge is the ResNet50 feature map at stride 2**encoder_depth (depth 4: conv4_block6_out);
    the skips are the maps at strides 1 (the input), 2 (conv1_relu), 4 (conv2_block3_out),
    8 (conv3_block4_out) and 16 (conv4_block6_out) above it. Decoder level i (1 = full resolution)
    has ``decoder_filters * 2**(i-1)`` filters (512-256-128-64 by default): 2x upsampling to that
    width (2x2 transposed conv, or nearest/bilinear resizing + 2x2 conv), concatenation with the
    skip, conv block. Layers: ResNet50's own names, ``dec{i}_*``, ``head_conv``, ``head_act``.

    Args:
        input_shape: (H, W, C); H and W must be divisible by 2**encoder_depth (or None).
        num_classes: 1 for a sigmoid (binary) head, >= 2 for softmax.
        encoder_depth: 2..5, the ResNet50 stage used as bridge (stride 2**encoder_depth).
        decoder_filters: width of the full-resolution decoder level; doubles per level.
        decoder_upsampling: "transpose" (seed), "nearest" or "bilinear".
        dropout: dropout rate after every decoder conv block (0 = none).
        batch_norm: BatchNormalization in the decoder conv blocks.
        weights: None, "imagenet" (Keras cache or download) or a path to a ResNet50 weights file.
        freeze: "none", "all" or "stage1".."stage5" (ResNet50 stages up to and including it).
        freeze_batch_norm: freeze the BatchNormalization layers of the frozen stages too.
        stackwise_decoder_filters: explicit decoder widths, deepest level first (seed:
            512, 256, 128, 64); overrides decoder_filters.
        name: model name.

    Example:
        >>> model = build_resnet50_unet((64, 64, 3), decoder_filters=8, encoder_depth=3)
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    import keras
    from keras import layers

    p = validate_resnet50_unet(locals())
    depth, widths = p["depth"], p["widths"]

    inputs = keras.Input(tuple(input_shape), name="input")
    backbone = resnet50_encoder(inputs, weights=weights)
    features = resnet50_features(backbone)
    x = features[2**depth]
    for i in range(depth, 0, -1):
        x = upsample(x, name=f"dec{i}", mode=p["upsampling"], filters=widths[i - 1])
        x = layers.Concatenate(name=f"dec{i}_concat")([x, features[2 ** (i - 1)]])
        x = conv_block(
            x, widths[i - 1], name=f"dec{i}", batch_norm=p["batch_norm"], dropout=p["dropout"]
        )
    outputs = segmentation_head(x, p["num_classes"])
    model = keras.Model(inputs, outputs, name=name)
    freeze_encoder(model, p["freeze"], freeze_batch_norm=p["freeze_batch_norm"])
    return model
