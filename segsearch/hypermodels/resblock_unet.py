"""ResBlockUNetHyperModel: U-Net whose every level is a residual block (seed 004), 2D or 3D."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from segsearch.hypermodels.base import (
    POSITIVE_INT,
    SegmentationHyperModel,
    _batch_norm,
    _depth,
    _dropout,
    _filters,
    _upsampling,
)
from segsearch.params import Param

__all__ = ["ResBlockUNetHyperModel"]


class ResBlockUNetHyperModel(SegmentationHyperModel):
    """Residual-block U-Net: 5 levels (depth 4), root filters 64, upsample + 2x2 conv, softmax head.

    Hyperparameters: depth, filters, blocks (residual blocks per level; ResNet34 uses 3-4-6-3),
    upsampling (no bilinear for 3D inputs), dropout, batch_norm + the training ones. The defaults
    build seed 004 (32,446,914 parameters at 256x256x1, 2 softmax channels). An input shape with
    four entries (D, H, W, C) builds the 3D network.

    Example:
        >>> import keras_tuner
        >>> hm = ResBlockUNetHyperModel((64, 64, 1), space={"filters": 8, "blocks": [1, 2]})
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    key: ClassVar[str] = "resblock_unet"
    default_num_classes: ClassVar[int] = 2
    reference_input_shape: ClassVar[tuple[int, ...]] = (256, 256, 1)
    allows_3d: ClassVar[bool] = True
    title: ClassVar[str] = "U-Net with residual blocks (seed 004)"

    def architecture_params(self) -> tuple[Param, ...]:
        return (
            _depth(2, 5, 4, "number of poolings (levels = depth + 1)"),
            _filters(64),
            Param.Int("blocks", 1, 3, default=1, help="residual blocks per level",
                      domain=POSITIVE_INT),
            _upsampling("nearest", self.input_shape),
            _dropout(),
            _batch_norm(),
        )

    def builder_kwargs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "encoder_depth": values["depth"],
            "encoder_filters": values["filters"],
            "blocks_per_level": values["blocks"],
            "decoder_upsampling": values["upsampling"],
            "dropout": values["dropout"],
            "batch_norm": values["batch_norm"],
        }
