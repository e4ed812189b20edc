"""What the encoder builders share: their argument check, the encoder and the freezing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segsearch.architectures._checks import check_depth, check_divisible, check_input_shape
from segsearch.architectures._head import check_num_classes, segmentation_head
from segsearch.blocks._common import check_dropout, check_upsampling
from segsearch.blocks.encoders import (
    DEFAULT_ENCODER,
    build_encoder,
    check_freeze,
    check_weights,
    encoder_features,
    encoder_spec,
    freeze_encoder,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras


@dataclass(frozen=True)
class EncoderArgs:
    """The checked arguments every encoder builder has.

    Args:
        spatial: the spatial input sizes (None where unknown).
        num_classes: channels of the head (1 = sigmoid).
        encoder: the encoder's name in :data:`segsearch.blocks.ENCODERS`.
        depth: the encoder stage used (stride 2**depth).
        upsampling: "transpose", "nearest" or "bilinear".
        dropout: dropout rate.
        batch_norm: BatchNormalization in the decoder convs.
        weights: None, "imagenet" or a weights file (checked: it exists).
        freeze: a freeze mode of :data:`segsearch.blocks.FREEZE_MODES`.
        freeze_batch_norm: freeze the batch norms of the frozen stages too.
    """

    spatial: tuple[int | None, ...]
    num_classes: int
    encoder: str
    depth: int
    upsampling: str
    dropout: float
    batch_norm: bool
    weights: Any
    freeze: str
    freeze_batch_norm: bool


def check_encoder(
    arch: str, args: Mapping[str, Any], min_depth: int, max_depth: int, *, cls: type, **extra: Any
) -> Any:
    """Check the encoder arguments of an encoder builder (ConfigError / InfeasibleError /
    WeightsError) and return ``cls`` (a subclass of :class:`EncoderArgs`) with ``extra`` added.

    ``extra`` values that are callables are called with (spatial, depth) once those are checked.
    """
    # ConfigError for an unknown encoder; argument dicts made before encoders existed: ResNet50
    encoder_name = encoder_spec(args.get("encoder", DEFAULT_ENCODER)).name
    spatial = check_input_shape(arch, args["input_shape"])
    depth = check_depth(arch, args["depth"], min_depth, max_depth)
    check_divisible(arch, spatial, depth, min_depth=min_depth)
    own = {k: v(spatial, depth) if callable(v) else v for k, v in extra.items()}
    check_weights(args["weights"], args["input_shape"][-1], encoder_name)
    return cls(
        spatial=spatial,
        num_classes=check_num_classes(arch, args["num_classes"]),
        encoder=encoder_name,
        depth=depth,
        upsampling=check_upsampling(args["upsampling"]),
        dropout=check_dropout(args["dropout"]),
        batch_norm=bool(args["batch_norm"]),
        weights=args["weights"],
        freeze=check_freeze(args["freeze"]),
        freeze_batch_norm=bool(args["freeze_batch_norm"]),
        **own,
    )


def make_encoder(
    input_shape: Any, p: EncoderArgs
) -> tuple[keras.KerasTensor, keras.Model, dict[int, keras.KerasTensor]]:
    """The input, the encoder ``p.encoder`` on it (``p.weights`` loaded) and its feature maps by
    stride."""
    import keras

    inputs = keras.Input(tuple(input_shape), name="input")
    backbone = build_encoder(inputs, p.encoder, weights=p.weights)
    return inputs, backbone, encoder_features(backbone, p.encoder)


def finish(
    inputs: keras.KerasTensor, x: keras.KerasTensor, p: EncoderArgs, name: str
) -> keras.Model:
    """The head on ``x``, the model, and its encoder frozen as ``p.freeze`` says."""
    import keras

    model = keras.Model(inputs, segmentation_head(x, p.num_classes), name=name)
    freeze_encoder(model, p.freeze, freeze_batch_norm=p.freeze_batch_norm, encoder=p.encoder)
    return model
