"""UNetHyperModel: the ``unet`` architecture of the registry as a keras-tuner HyperModel."""

from __future__ import annotations

from typing import ClassVar

from segsearch.hypermodels.base import SegmentationHyperModel

__all__ = ["UNetHyperModel"]


class UNetHyperModel(SegmentationHyperModel):
    """U-Net: depth 4 (filters 64-128-256-512, bridge 1024), transposed-conv upsampling.

    Hyperparameters: depth, filters, upsampling, dropout, batch_norm + the training ones. The
    defaults build the ``unet`` preset (``segsearch.hypermodels.registry.PRESETS``).

    Example:
        >>> import keras_tuner
        >>> hm = UNetHyperModel((64, 64, 1), space={"filters": 8})
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    key: ClassVar[str] = "unet"
