"""The segmentation head shared by every builder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segsearch.architectures._checks import as_int
from segsearch.blocks._common import layer_class, spatial_rank
from segsearch.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import keras


def check_num_classes(arch: str, num_classes: Any) -> int:
    """Return ``num_classes`` as an int >= 1 or raise ConfigError."""
    value = as_int(num_classes)
    if value is None or value < 1:
        raise ConfigError(
            f"{arch}: num_classes must be an int >= 1 (1 = binary sigmoid), got {num_classes!r}"
        )
    return value


def segmentation_head(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """1x1 conv to ``num_classes`` ("head_conv"), then sigmoid or softmax ("head_act").

    Both run in float32, so under mixed precision the logits and the outputs keep float32's
    range and resolution (a 1x1 conv to a few classes costs next to nothing).
    """
    from keras import layers

    x = layer_class("conv", spatial_rank(x))(num_classes, 1, padding="same", dtype="float32",
                                             name="head_conv")(x)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name="head_act")(x)
