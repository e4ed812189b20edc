"""DeepLabV3+: a keras.applications encoder (ResNet50 by default), ASPP, low-level feature decoder,
bilinear upsampling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segsearch.architectures._checks import check_aspp, parse_rates
from segsearch.architectures._encoder import EncoderArgs, check_encoder, finish, make_encoder
from segsearch.blocks import aspp, conv_bn_relu, upsample
from segsearch.blocks._common import UpsamplingMode, check_filters
from segsearch.blocks.encoders import FreezeMode, Weights, encoder_spec, tap

if TYPE_CHECKING:  # pragma: no cover
    import keras

ARCH = "deeplabv3plus"
MIN_DEPTH, MAX_DEPTH = 3, 5


@dataclass(frozen=True)
class DeepLabV3PlusArgs(EncoderArgs):
    """The checked arguments of :func:`build_deeplabv3plus`: the encoder's, the ASPP's and the
    decoder's."""

    aspp_rates: tuple[int, ...] = ()
    aspp_pooling: bool = True
    aspp_filters: int = 256
    low_level_filters: int = 48
    filters: int = 256


def validate_deeplabv3plus(args: Mapping[str, Any]) -> DeepLabV3PlusArgs:
    """Check :func:`build_deeplabv3plus` arguments.

    Raises ConfigError, InfeasibleError or WeightsError.
    """
    rates = parse_rates(ARCH, args["aspp_rates"])
    pooling = bool(args["aspp_pooling"])

    def feasible_rates(spatial: Any, depth: int) -> tuple[int, ...]:
        check_aspp(ARCH, spatial, depth, rates, pooling, min_depth=MIN_DEPTH)
        return rates

    return check_encoder(
        ARCH, args, MIN_DEPTH, MAX_DEPTH, cls=DeepLabV3PlusArgs,
        aspp_rates=feasible_rates,
        aspp_pooling=pooling,
        aspp_filters=check_filters(args["aspp_filters"], f"{ARCH}: aspp_filters"),
        low_level_filters=check_filters(args["low_level_filters"], f"{ARCH}: low_level_filters"),
        filters=check_filters(args["filters"], f"{ARCH}: filters"),
    )


def build_deeplabv3plus(
    input_shape: Sequence[int],
    num_classes: int = 1,
    *,
    encoder: str = "resnet50",
    depth: int = 4,
    aspp_rates: Sequence[int] | str = (6, 12, 18),
    aspp_filters: int = 256,
    aspp_pooling: bool = True,
    low_level_filters: int = 48,
    filters: int = 256,
    upsampling: UpsamplingMode = "bilinear",
    dropout: float = 0.0,
    batch_norm: bool = True,
    weights: Weights = None,
    freeze: FreezeMode = "none",
    freeze_batch_norm: bool = True,
    name: str = "deeplabv3plus",
) -> keras.Model:
    """Build DeepLabV3+ on ResNet50; the defaults are the network of the ``deeplabv3plus`` preset.

    (The presets, with their parameter counts and source articles, are the table
    ``segsearch.hypermodels.registry.PRESETS``.) The ASPP (:func:`segsearch.blocks.aspp`) runs on
    the ResNet50 map at stride 2**depth (depth 4: conv4_block6_out) and is upsampled by
    2**(depth - 2) to stride 4 ("aspp_up"); the low-level features conv2_block2_out go through a
    1x1 conv ("lowlevel"); both are concatenated ("decoder_concat"), go through two 3x3
    conv-BN-ReLU ("decoder_conv1", "decoder_conv2"), are upsampled x4 ("head_up") and the 1x1 head
    follows. Another ``encoder`` gives its own maps (its taps and ``low_level`` in
    :data:`segsearch.blocks.ENCODERS`). Upsampling is bare bilinear (the preset) or nearest
    resizing, or a transposed conv with kernel = stride = factor. The article's first decoder
    conv also had ``activation="relu"`` before its BN; here each conv is conv -> BN -> ReLU, as
    the preset's description says (same parameters).

    Args:
        input_shape: (H, W, C) with fixed H and W divisible by 2**depth.
        num_classes: 1 for a sigmoid (binary) head, >= 2 for softmax.
        encoder: a keras.applications encoder of :data:`segsearch.blocks.ENCODER_NAMES`.
        depth: 3..5, the encoder stage that feeds the ASPP (stride 2**depth).
        aspp_rates: dilation rates of the atrous branches, e.g. (6, 12, 18) or "6,12,18"; each must
            be smaller than the feature map at the ASPP input.
        aspp_filters: width of every ASPP branch and of its projection.
        aspp_pooling: whether the ASPP has the image-pooling branch.
        low_level_filters: width of the 1x1 conv on the low-level features.
        filters: width of the two decoder 3x3 convs.
        upsampling: "bilinear" (the preset), "nearest" or "transpose".
        dropout: dropout rate after the ASPP projection and after the decoder convs (0 = none).
        batch_norm: BatchNormalization after every ASPP / decoder conv (else the convs get a bias).
        weights: None, "imagenet" (Keras cache or download) or a path to the encoder's weights.
        freeze: "none", "all" or "stage1".."stage4" (encoder stages up to and including it).
        freeze_batch_norm: freeze the BatchNormalization layers of the frozen stages too.
        name: model name.

    Example:
        >>> model = build_deeplabv3plus((64, 64, 3), depth=3, aspp_rates=(1, 2, 4),
        ...                             aspp_filters=16, filters=16)
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    from keras import layers

    p = validate_deeplabv3plus(locals())
    inputs, backbone, features = make_encoder(input_shape, p)

    x = aspp(
        features[2**p.depth],
        rates=p.aspp_rates,
        filters=p.aspp_filters,
        image_pooling=p.aspp_pooling,
        batch_norm=p.batch_norm,
        name="aspp",
    )
    if p.dropout > 0:
        x = layers.Dropout(p.dropout, name="aspp_drop")(x)
    factor = 2 ** (p.depth - 2)
    x = upsample(x, name="aspp", mode=p.upsampling, factor=factor, conv=False)

    low = tap(backbone, encoder_spec(p.encoder).low_level)
    low = conv_bn_relu(low, p.low_level_filters, kernel_size=1, use_bias=False,
                       batch_norm=p.batch_norm, name="lowlevel")
    x = layers.Concatenate(name="decoder_concat")([x, low])
    for j in (1, 2):
        x = conv_bn_relu(x, p.filters, kernel_size=3, use_bias=False, batch_norm=p.batch_norm,
                         name=f"decoder_conv{j}")
    if p.dropout > 0:
        x = layers.Dropout(p.dropout, name="decoder_drop")(x)
    x = upsample(x, name="head", mode=p.upsampling, factor=4, conv=False)
    return finish(inputs, x, p, name)
