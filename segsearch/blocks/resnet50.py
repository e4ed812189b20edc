"""ResNet50 encoder (keras.applications): the names the ResNet50 builders have always used.

The seeds (000, 002) build ``keras.applications.ResNet50(include_top=False, weights="imagenet",
input_tensor=inputs)`` and tap named layers. ResNet50 is the default row of the encoder table
(:data:`segsearch.blocks.encoders.ENCODERS`); this module gives its taps, its ImageNet file and the
encoder functions under their ResNet50 names. As every encoder, it is built with ``weights=None``
and the weights are loaded afterwards, so that a missing download or a bad file becomes a
:class:`~segsearch.errors.WeightsError` with a message saying what to do, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from segsearch._keras_compat import resnet50_notop_md5
from segsearch.blocks.encoders import (
    ENCODERS,
    FREEZE_MODES,
    WEIGHTS_SUFFIXES,
    FreezeMode,
    Weights,
    build_encoder,
    check_freeze,
    check_weights,
    encoder_features,
    encoder_stage,
    freeze_encoder,
    keras_cache_dir,
    load_encoder_weights,
)
from segsearch.blocks.encoders import imagenet_cache_path as _cache_path
from segsearch.blocks.encoders import imagenet_weights_file as _weights_file

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = [
    "FREEZE_MODES", "IMAGENET_FILE", "IMAGENET_URL", "RESNET50_LOW_LEVEL", "RESNET50_TAPS",
    "WEIGHTS_SUFFIXES", "FreezeMode", "Weights", "check_freeze", "check_weights", "encoder_stage",
    "freeze_encoder", "imagenet_cache_path", "imagenet_weights_file", "keras_cache_dir",
    "load_encoder_weights", "resnet50_encoder", "resnet50_features",
]

_SPEC = ENCODERS["resnet50"]
#: stride -> layer whose output is the feature map at that stride (1 is the input itself).
RESNET50_TAPS: dict[int, str | None] = {1: None, **_SPEC.taps}
#: DeepLabV3+'s low-level features (stride 4), as in the DeepLabV3+ article.
RESNET50_LOW_LEVEL = _SPEC.low_level
IMAGENET_FILE = _SPEC.weights_file
IMAGENET_URL = _SPEC.weights_url


def imagenet_cache_path() -> Path:
    """Return the exact path where Keras looks for the ResNet50 ImageNet (no-top) weights file."""
    return _cache_path("resnet50")


def _imagenet_md5() -> str:
    return resnet50_notop_md5()


def imagenet_weights_file() -> Path:
    """Return the cached ResNet50 ImageNet weights file, downloading it when it is not cached.

    Raises:
        WeightsError: the file is not cached and cannot be downloaded (offline), or the cached file
            is incomplete.
    """
    return _weights_file("resnet50", expected=_imagenet_md5())


def resnet50_encoder(inputs: keras.KerasTensor, *, weights: Weights = None) -> keras.Model:
    """Build keras.applications ResNet50 (no top) on ``inputs`` and load ``weights``
    (:func:`segsearch.blocks.encoders.build_encoder` with ``encoder="resnet50"``).

    Example:
        >>> backbone = resnet50_encoder(keras.Input((64, 64, 3)), weights=None)
        >>> resnet50_features(backbone)[16].shape
        (None, 4, 4, 1024)
    """
    return build_encoder(inputs, "resnet50", weights=weights)


def resnet50_features(backbone: keras.Model) -> dict[int, keras.KerasTensor]:
    """Return the encoder feature maps by stride.

    The strides are 1 (input), 2, 4, 8, 16 and 32 (see ``RESNET50_TAPS``).
    """
    return encoder_features(backbone, "resnet50")
