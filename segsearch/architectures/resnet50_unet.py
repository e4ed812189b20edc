"""ResNet50-U-Net: a keras.applications encoder (ResNet50 by default), U-Net decoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from segsearch.architectures._checks import level_filters
from segsearch.architectures._encoder import EncoderArgs, check_encoder, finish, make_encoder
from segsearch.architectures._levels import decode
from segsearch.blocks import conv_block
from segsearch.blocks._common import UpsamplingMode
from segsearch.blocks.encoders import FreezeMode, Weights

if TYPE_CHECKING:  # pragma: no cover
    import keras

ARCH = "resnet50_unet"
MIN_DEPTH, MAX_DEPTH = 2, 5


@dataclass(frozen=True)
class ResNet50UNetArgs(EncoderArgs):
    """The checked arguments of :func:`build_resnet50_unet`: the encoder's and the decoder widths
    (``widths[i - 1]`` = decoder level i, 1 = full resolution)."""

    widths: tuple[int, ...] = ()


def validate_resnet50_unet(args: Mapping[str, Any]) -> ResNet50UNetArgs:
    """Check :func:`build_resnet50_unet` arguments.

    Raises ConfigError, InfeasibleError or WeightsError.
    """
    stackwise = args["stackwise_decoder_filters"]

    def widths(spatial: Any, depth: int) -> tuple[int, ...]:
        return tuple(level_filters(
            ARCH, args["filters"], 2.0, depth,
            None if stackwise is None else list(stackwise)[::-1],
            what="filters", stackwise_name="stackwise_decoder_filters",
        ))

    return check_encoder(ARCH, args, MIN_DEPTH, MAX_DEPTH, cls=ResNet50UNetArgs, widths=widths)


def build_resnet50_unet(
    input_shape: Sequence[int | None],
    num_classes: int = 1,
    *,
    encoder: str = "resnet50",
    depth: int = 4,
    filters: int = 64,
    upsampling: UpsamplingMode = "transpose",
    dropout: float = 0.0,
    batch_norm: bool = True,
    weights: Weights = None,
    freeze: FreezeMode = "none",
    freeze_batch_norm: bool = True,
    stackwise_decoder_filters: Sequence[int] | None = None,
    name: str = "resnet50_unet",
) -> keras.Model:
    """Build a ResNet50-U-Net; with the defaults it is the network of the ``resnet50_unet`` preset.

    (The presets, with their parameter counts and source articles, are the table
    ``segsearch.hypermodels.registry.PRESETS``.) The bridge is the ResNet50 feature map at stride
    2**depth (depth 4: conv4_block6_out); the skips are the maps at strides 1 (the input), 2
    (conv1_relu), 4 (conv2_block3_out), 8 (conv3_block4_out) and 16 (conv4_block6_out) above it.
    Another ``encoder`` gives its own maps at these strides (its taps in
    :data:`segsearch.blocks.ENCODERS`).
    Decoder level i (1 = full resolution) has ``filters * 2**(i-1)`` filters (512-256-128-64 by
    default): 2x upsampling to that width (2x2 transposed conv, or nearest/bilinear resizing + 2x2
    conv), concatenation with the skip, conv block. Layers: ResNet50's own names, ``dec{i}_*``,
    ``head_conv``, ``head_act``.

    Args:
        input_shape: (H, W, C); H and W must be divisible by 2**depth (or None).
        num_classes: 1 for a sigmoid (binary) head, >= 2 for softmax.
        encoder: a keras.applications encoder of :data:`segsearch.blocks.ENCODER_NAMES`
            ("resnet50", "resnet101", "resnet50v2", "efficientnetb0".."efficientnetb4",
            "mobilenetv3small", "mobilenetv3large").
        depth: 2..5, the encoder stage used as bridge (stride 2**depth).
        filters: width of the full-resolution decoder level; doubles per level.
        upsampling: "transpose" (the preset), "nearest" or "bilinear".
        dropout: dropout rate after every decoder conv block (0 = none).
        batch_norm: BatchNormalization in the decoder conv blocks.
        weights: None, "imagenet" (Keras cache or download) or a path to the encoder's weights.
        freeze: "none", "all" or "stage1".."stage4" (encoder stages up to and including it).
        freeze_batch_norm: freeze the BatchNormalization layers of the frozen stages too.
        stackwise_decoder_filters: explicit decoder widths, deepest level first (the preset:
            512, 256, 128, 64); overrides filters.
        name: model name.

    Example:
        >>> model = build_resnet50_unet((64, 64, 3), filters=8, depth=3)
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    p = validate_resnet50_unet(locals())
    inputs, _, features = make_encoder(input_shape, p)
    skips = [features[2 ** (i - 1)] for i in range(1, p.depth + 1)]
    block = partial(conv_block, batch_norm=p.batch_norm, dropout=p.dropout)
    x = decode(features[2**p.depth], skips, p.widths, block, mode=p.upsampling)
    return finish(inputs, x, p, name)
