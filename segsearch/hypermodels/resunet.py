"""ResUNetHyperModel: the ``resunet`` architecture of the registry as a keras-tuner HyperModel."""

from __future__ import annotations

from typing import ClassVar

from segsearch.hypermodels.base import SegmentationHyperModel

__all__ = ["ResUNetHyperModel"]


class ResUNetHyperModel(SegmentationHyperModel):
    """ResUNet: depth 3 (filters 64-128-256, bridge 512), stride-2 conv downsampling, nearest 2x.

    Hyperparameters: depth, filters, upsampling, dropout, batch_norm + the training ones. The
    defaults build the ``resunet`` preset (``segsearch.hypermodels.registry.PRESETS``).

    Example:
        >>> import keras_tuner
        >>> hm = ResUNetHyperModel((64, 64, 3), space={"filters": 8, "depth": 2})
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    key: ClassVar[str] = "resunet"
