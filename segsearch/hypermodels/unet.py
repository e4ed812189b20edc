"""UNetHyperModel: the U-Net of seed 003 (conv-BN-ReLU x2 blocks, 2x2 transposed-conv upsampling)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from segsearch.hypermodels.base import (
    SegmentationHyperModel,
    _batch_norm,
    _depth,
    _dropout,
    _filters,
    _upsampling,
)
from segsearch.params import Param

__all__ = ["UNetHyperModel"]


class UNetHyperModel(SegmentationHyperModel):
    """U-Net: depth 4 (filters 64-128-256-512, bridge 1024), transposed-conv upsampling.

    Hyperparameters: depth, filters, upsampling, dropout, batch_norm + the training ones.
    The defaults build seed 003 (31,055,297 parameters at 512x512x3, 1 sigmoid channel).

    Example:
        >>> import keras_tuner
        >>> hm = UNetHyperModel((64, 64, 1), space={"filters": 8})
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    key: ClassVar[str] = "unet"
    default_num_classes: ClassVar[int] = 1
    reference_input_shape: ClassVar[tuple[int, ...]] = (512, 512, 3)
    title: ClassVar[str] = "U-Net (seed 003)"

    def architecture_params(self) -> tuple[Param, ...]:
        return (
            _depth(2, 5, 4, "number of 2x2 poolings (levels below full resolution)"),
            _filters(64),
            _upsampling("transpose", self.input_shape),
            _dropout(),
            _batch_norm(),
        )

    def builder_kwargs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "encoder_depth": values["depth"],
            "encoder_filters": values["filters"],
            "decoder_upsampling": values["upsampling"],
            "dropout": values["dropout"],
            "batch_norm": values["batch_norm"],
        }
