"""ResUNetHyperModel: the Deep Residual U-Net of seed 001 (pre-activation residual blocks)."""

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

__all__ = ["ResUNetHyperModel"]


class ResUNetHyperModel(SegmentationHyperModel):
    """ResUNet: depth 3 (filters 64-128-256, bridge 512), stride-2 conv downsampling, nearest 2x.

    Hyperparameters: depth, filters, upsampling, dropout, batch_norm + the training ones.
    The defaults build seed 001 (8,227,393 parameters at 224x224x3, 1 sigmoid channel).

    Example:
        >>> import keras_tuner
        >>> hm = ResUNetHyperModel((64, 64, 3), space={"filters": 8, "depth": 2})
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    key: ClassVar[str] = "resunet"
    default_num_classes: ClassVar[int] = 1
    reference_input_shape: ClassVar[tuple[int, ...]] = (224, 224, 3)
    title: ClassVar[str] = "Deep Residual U-Net (seed 001)"

    def architecture_params(self) -> tuple[Param, ...]:
        return (
            _depth(2, 4, 3, "number of stride-2 downsamplings (the bridge is the last)"),
            _filters(64),
            _upsampling("nearest", self.input_shape),
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
