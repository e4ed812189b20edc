"""Building blocks of the networks.

Conv blocks, residual blocks, upsampling, ASPP, keras.applications encoders (ResNet50 and the
others of ``ENCODERS``). Pure Keras (``keras.layers`` / ``keras.ops``, no ``tf.*``), no
hyperparameter objects. Keras itself is imported only when a block
is called, so importing this package is cheap.
"""

from __future__ import annotations

from segsearch.blocks._common import UPSAMPLING_MODES, UpsamplingMode, layer_class
from segsearch.blocks.aspp import aspp
from segsearch.blocks.conv import batchnorm_relu, conv_block, conv_bn_relu
from segsearch.blocks.encoders import (
    DEFAULT_ENCODER,
    ENCODER_NAMES,
    ENCODERS,
    EncoderSpec,
    build_encoder,
    encoder_features,
)
from segsearch.blocks.residual import (
    preact_residual_block,
    residual_block,
    residual_stack,
)
from segsearch.blocks.resnet50 import (
    FREEZE_MODES,
    IMAGENET_FILE,
    IMAGENET_URL,
    RESNET50_LOW_LEVEL,
    RESNET50_TAPS,
    FreezeMode,
    check_freeze,
    check_weights,
    encoder_stage,
    freeze_encoder,
    imagenet_cache_path,
    imagenet_weights_file,
    load_encoder_weights,
    resnet50_encoder,
    resnet50_features,
)
from segsearch.blocks.upsampling import upsample

__all__ = [
    "UPSAMPLING_MODES",
    "UpsamplingMode",
    "DEFAULT_ENCODER",
    "ENCODERS",
    "ENCODER_NAMES",
    "EncoderSpec",
    "build_encoder",
    "encoder_features",
    "FREEZE_MODES",
    "FreezeMode",
    "IMAGENET_FILE",
    "IMAGENET_URL",
    "RESNET50_LOW_LEVEL",
    "RESNET50_TAPS",
    "aspp",
    "batchnorm_relu",
    "check_freeze",
    "check_weights",
    "conv_block",
    "conv_bn_relu",
    "encoder_stage",
    "freeze_encoder",
    "imagenet_cache_path",
    "imagenet_weights_file",
    "layer_class",
    "load_encoder_weights",
    "preact_residual_block",
    "residual_block",
    "residual_stack",
    "resnet50_encoder",
    "resnet50_features",
    "upsample",
]
