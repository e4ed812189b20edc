"""ResNet50UNetHyperModel: the ``resnet50_unet`` architecture of the registry (ResNet50 encoder)."""

from __future__ import annotations

from typing import ClassVar

from segsearch.hypermodels.base import SegmentationHyperModel

__all__ = ["ResNet50UNetHyperModel"]


class ResNet50UNetHyperModel(SegmentationHyperModel):
    """ResNet50 U-Net: bridge conv4_block6_out (depth 4), decoder 512-256-128-64, transposed conv.

    Hyperparameters: depth (which ResNet50 stage is the bridge: stride 2**depth), filters (width of
    the last decoder level, doubling upwards), upsampling, dropout, batch_norm, freeze and
    freeze_batch_norm (searchable only with ``weights``) + the training ones. The defaults build
    the ``resnet50_unet`` preset (``segsearch.hypermodels.registry.PRESETS``, weights=None).

    Example:
        >>> import keras_tuner
        >>> hm = ResNet50UNetHyperModel((64, 64, 3), weights="imagenet")
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    key: ClassVar[str] = "resnet50_unet"
