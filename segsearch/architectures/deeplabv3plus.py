"""DeepLabV3+ (seed 002): ResNet50 encoder, ASPP, low-level feature decoder, bilinear upsampling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from segsearch.architectures._checks import (
    check_aspp,
    check_depth,
    check_divisible,
    check_input_shape,
    parse_rates,
)
from segsearch.architectures._head import check_num_classes, segmentation_head
from segsearch.blocks import aspp, conv_bn_relu, upsample
from segsearch.blocks._common import (
    UpsamplingMode,
    check_dropout,
    check_filters,
    check_upsampling,
)
from segsearch.blocks.resnet50 import (
    RESNET50_LOW_LEVEL,
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

ARCH = "deeplabv3plus"
MIN_DEPTH, MAX_DEPTH = 3, 5


def validate_deeplabv3plus(args: Mapping[str, Any]) -> dict[str, Any]:
    """Check :func:`build_deeplabv3plus` arguments (ConfigError / InfeasibleError / WeightsError)."""
    spatial = check_input_shape(ARCH, args["input_shape"])
    depth = check_depth(ARCH, args["encoder_depth"], MIN_DEPTH, MAX_DEPTH)
    check_divisible(ARCH, spatial, depth, min_depth=MIN_DEPTH)
    rates = parse_rates(ARCH, args["aspp_rates"])
    image_pooling = bool(args["aspp_image_pooling"])
    check_aspp(ARCH, spatial, depth, rates, image_pooling, min_depth=MIN_DEPTH)
    check_weights(args["weights"], args["input_shape"][-1])
    return {
        "num_classes": check_num_classes(ARCH, args["num_classes"]),
        "depth": depth,
        "rates": rates,
        "image_pooling": image_pooling,
        "aspp_filters": check_filters(args["aspp_filters"], f"{ARCH}: aspp_filters"),
        "low_level_filters": check_filters(args["low_level_filters"], f"{ARCH}: low_level_filters"),
        "decoder_filters": check_filters(args["decoder_filters"], f"{ARCH}: decoder_filters"),
        "upsampling": check_upsampling(args["decoder_upsampling"]),
        "dropout": check_dropout(args["dropout"]),
        "batch_norm": bool(args["batch_norm"]),
        "freeze": check_freeze(args["freeze"]),
        "freeze_batch_norm": bool(args["freeze_batch_norm"]),
    }


def build_deeplabv3plus(
    input_shape: Sequence[int],
    num_classes: int = 1,
    *,
    encoder_depth: int = 4,
    aspp_rates: Sequence[int] | str = (6, 12, 18),
    aspp_filters: int = 256,
    aspp_image_pooling: bool = True,
    low_level_filters: int = 48,
    decoder_filters: int = 256,
    decoder_upsampling: UpsamplingMode = "bilinear",
    dropout: float = 0.0,
    batch_norm: bool = True,
    weights: Weights = None,
    freeze: FreezeMode = "none",
    freeze_batch_norm: bool = True,
    name: str = "deeplabv3plus",
) -> keras.Model:
    """Build DeepLabV3+ on ResNet50; the defaults are seed 002 (17,830,209 parameters at 512x512x3).

    The ASPP (:func:`segsearch.blocks.aspp`) runs on the ResNet50 map at stride 2**encoder_depth
    (depth 4: conv4_block6_out) and is upsampled by 2**(encoder_depth - 2) to stride 4
    ("aspp_up"); the low-level features conv2_block2_out go through a 1x1 conv ("lowlevel");
    both are concatenated ("decoder_concat"), go through two 3x3 conv-BN-ReLU ("decoder_conv1",
    "decoder_conv2"), are upsampled x4 ("head_up") and the 1x1 head follows. Upsampling is bare
    bilinear (seed) or nearest resizing, or a transposed conv with kernel = stride = factor.
    The seed's first decoder conv also had ``activation="relu"`` before its BN; here each conv is
    conv -> BN -> ReLU, as ARCHITECTURES.md describes (same parameters).

    Args:
        input_shape: (H, W, C) with fixed H and W divisible by 2**encoder_depth.
        num_classes: 1 for a sigmoid (binary) head, >= 2 for softmax.
        encoder_depth: 3..5, the ResNet50 stage that feeds the ASPP (stride 2**encoder_depth).
        aspp_rates: dilation rates of the atrous branches, e.g. (6, 12, 18) or "6,12,18"; each must be
            smaller than the feature map at the ASPP input.
        aspp_filters: width of every ASPP branch and of its projection.
        aspp_image_pooling: whether the ASPP has the image-pooling branch.
        low_level_filters: width of the 1x1 conv on the low-level features.
        decoder_filters: width of the two decoder 3x3 convs.
        decoder_upsampling: "bilinear" (seed), "nearest" or "transpose".
        dropout: dropout rate after the ASPP projection and after the decoder convs (0 = none).
        batch_norm: BatchNormalization after every ASPP / decoder conv (else the convs get a bias).
        weights: None, "imagenet" (Keras cache or download) or a path to a ResNet50 weights file.
        freeze: "none", "all" or "stage1".."stage5" (ResNet50 stages up to and including it).
        freeze_batch_norm: freeze the BatchNormalization layers of the frozen stages too.
        name: model name.

    Example:
        >>> model = build_deeplabv3plus((64, 64, 3), encoder_depth=3, aspp_rates=(1, 2, 4),
        ...                             aspp_filters=16, decoder_filters=16)
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    import keras
    from keras import layers

    p = validate_deeplabv3plus(locals())
    depth, bn = p["depth"], p["batch_norm"]

    inputs = keras.Input(tuple(input_shape), name="input")
    backbone = resnet50_encoder(inputs, weights=weights)
    features = resnet50_features(backbone)

    x = aspp(
        features[2**depth],
        rates=p["rates"],
        filters=p["aspp_filters"],
        image_pooling=p["image_pooling"],
        batch_norm=bn,
        name="aspp",
    )
    if p["dropout"] > 0:
        x = layers.Dropout(p["dropout"], name="aspp_drop")(x)
    factor = 2 ** (depth - 2)
    x = upsample(x, name="aspp", mode=p["upsampling"], factor=factor, conv=False)

    low = backbone.get_layer(RESNET50_LOW_LEVEL).output
    low = conv_bn_relu(
        low, p["low_level_filters"], kernel_size=1, use_bias=False, batch_norm=bn, name="lowlevel"
    )
    x = layers.Concatenate(name="decoder_concat")([x, low])
    for j in (1, 2):
        x = conv_bn_relu(
            x,
            p["decoder_filters"],
            kernel_size=3,
            use_bias=False,
            batch_norm=bn,
            name=f"decoder_conv{j}",
        )
    if p["dropout"] > 0:
        x = layers.Dropout(p["dropout"], name="decoder_drop")(x)
    x = upsample(x, name="head", mode=p["upsampling"], factor=4, conv=False)
    outputs = segmentation_head(x, p["num_classes"])
    model = keras.Model(inputs, outputs, name=name)
    freeze_encoder(model, p["freeze"], freeze_batch_norm=p["freeze_batch_norm"])
    return model
