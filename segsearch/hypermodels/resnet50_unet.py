"""ResNet50UNetHyperModel: U-Net decoder on a keras.applications ResNet50 encoder (seed 000)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from segsearch.hypermodels.base import (
    SegmentationHyperModel,
    _batch_norm,
    _depth,
    _dropout,
    _filters,
    _freeze,
    _upsampling,
)
from segsearch.params import Domain, Param

__all__ = ["ResNet50UNetHyperModel"]


class ResNet50UNetHyperModel(SegmentationHyperModel):
    """ResNet50 U-Net: bridge conv4_block6_out (depth 4), decoder 512-256-128-64, transposed conv.

    Hyperparameters: depth (which ResNet50 stage is the bridge: stride 2**depth), filters (width of
    the last decoder level, doubling upwards), upsampling, dropout, batch_norm, freeze and
    freeze_batch_norm (searchable only with ``weights``) + the training ones. The defaults build
    seed 000 (20,676,545 parameters at 512x512x3, 1 sigmoid channel, weights=None).

    Example:
        >>> import keras_tuner
        >>> hm = ResNet50UNetHyperModel((64, 64, 3), weights="imagenet")
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    key: ClassVar[str] = "resnet50_unet"
    default_num_classes: ClassVar[int] = 1
    reference_input_shape: ClassVar[tuple[int, ...]] = (512, 512, 3)
    uses_weights: ClassVar[bool] = True
    title: ClassVar[str] = "ResNet50 U-Net (seed 000)"

    def architecture_params(self) -> tuple[Param, ...]:
        return (
            _depth(2, 5, 4, "ResNet50 stage used as bridge (stride 2**depth; 4 = conv4_block6_out)",
                   domain=Domain(2, 5)),  # the builder's MIN_DEPTH..MAX_DEPTH
            _filters(64, help="filters of the last (full-resolution) decoder level, doubling "
                              "per level upwards"),
            _upsampling("transpose", self.input_shape),
            _dropout(),
            _batch_norm(),
            *_freeze(self.weights),
        )

    def builder_kwargs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "encoder_depth": values["depth"],
            "decoder_filters": values["filters"],
            "decoder_upsampling": values["upsampling"],
            "dropout": values["dropout"],
            "batch_norm": values["batch_norm"],
            "freeze": values["freeze"],
            "freeze_batch_norm": (True if values.get("freeze_batch_norm") is None
                                  else values["freeze_batch_norm"]),
        }
