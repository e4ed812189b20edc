"""ResBlockUNetHyperModel: the ``resblock_unet`` architecture of the registry, 2D or 3D."""

from __future__ import annotations

from typing import ClassVar

from segsearch.hypermodels.base import SegmentationHyperModel

__all__ = ["ResBlockUNetHyperModel"]


class ResBlockUNetHyperModel(SegmentationHyperModel):
    """Residual-block U-Net: 5 levels (depth 4), root filters 64, upsample + 2x2 conv, softmax head.

    Hyperparameters: depth, filters, blocks (residual blocks per level; ResNet34 uses 3-4-6-3),
    upsampling (no bilinear for 3D inputs), dropout, batch_norm + the training ones. The defaults
    build the ``resblock_unet`` preset (``segsearch.hypermodels.registry.PRESETS``). An input
    shape with four entries (D, H, W, C) builds the 3D network.

    Example:
        >>> import keras_tuner
        >>> hm = ResBlockUNetHyperModel((64, 64, 1), space={"filters": 8, "blocks": [1, 2]})
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    key: ClassVar[str] = "resblock_unet"
