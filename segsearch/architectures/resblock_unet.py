"""U-Net with a residual block at every level (seed 004), in 2D or 3D."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from segsearch.architectures._checks import (
    check_depth,
    check_divisible,
    check_input_shape,
    level_filters,
)
from segsearch.architectures._head import check_num_classes, segmentation_head
from segsearch.blocks import residual_stack, upsample
from segsearch.blocks._common import (
    UpsamplingMode,
    check_dropout,
    check_filters,
    check_upsampling,
    layer_class,
)
from segsearch.errors import InfeasibleError

if TYPE_CHECKING:  # pragma: no cover
    import keras

ARCH = "resblock_unet"


def validate_resblock_unet(args: Mapping[str, Any]) -> dict[str, Any]:
    """Check :func:`build_resblock_unet` arguments (ConfigError / InfeasibleError), normalised."""
    spatial = check_input_shape(ARCH, args["input_shape"], allow_3d=True)
    depth = check_depth(ARCH, args["encoder_depth"], 1)
    check_divisible(ARCH, spatial, depth)
    upsampling = check_upsampling(args["decoder_upsampling"])
    if len(spatial) == 3 and upsampling == "bilinear":
        raise InfeasibleError(
            f"{ARCH}: 'bilinear' upsampling is 2D only and the input {tuple(args['input_shape'])} is a "
            "3D volume; use decoder_upsampling='nearest' or 'transpose'"
        )
    return {
        "num_classes": check_num_classes(ARCH, args["num_classes"]),
        "ndim": len(spatial),
        "depth": depth,
        "filters": level_filters(
            ARCH, args["encoder_filters"], args["filter_growth"], depth + 1, args["stackwise_filters"]
        ),
        "blocks": check_filters(args["blocks_per_level"], f"{ARCH}: blocks_per_level"),
        "upsampling": upsampling,
        "dropout": check_dropout(args["dropout"]),
        "batch_norm": bool(args["batch_norm"]),
    }


def build_resblock_unet(
    input_shape: Sequence[int | None],
    num_classes: int = 2,
    *,
    encoder_depth: int = 4,
    encoder_filters: int = 64,
    filter_growth: float = 2.0,
    blocks_per_level: int = 1,
    decoder_upsampling: UpsamplingMode = "nearest",
    dropout: float = 0.0,
    batch_norm: bool = True,
    stackwise_filters: Sequence[int] | None = None,
    name: str = "resblock_unet",
) -> keras.Model:
    """Build a residual-block U-Net; the defaults are seed 004 (32,446,914 parameters at 256x256x1).

    Every level is a residual block (1x1 no-bias conv shortcut; 3x3 conv-BN-ReLU-3x3 conv-BN; add;
    ReLU), repeated ``blocks_per_level`` times (repeats use identity shortcuts). There are
    encoder_depth + 1 levels (5 by default, filters 64-128-256-512-1024), 2x max-pooling between
    them. Decoder level i: 2x upsampling then a 2x2 conv with the level's width and ReLU ("upsample
    then convolve", the seed's choice; or a 2x2 transposed conv), concatenation with the skip, and the
    residual block. A 4-dimensional input_shape (D, H, W, C) builds the same network in 3D (Conv3D,
    MaxPooling3D, UpSampling3D). Layers: ``enc{i}_res{k}_*``, ``enc{i}_pool``, ``bridge_res{k}_*``,
    ``dec{i}_up``, ``dec{i}_upconv``, ``dec{i}_uprelu``, ``dec{i}_concat``, ``dec{i}_res{k}_*``,
    ``head_conv``, ``head_act``.

    Args:
        input_shape: (H, W, C) or (D, H, W, C); spatial sizes divisible by 2**encoder_depth (or None).
        num_classes: 1 for a sigmoid (binary) head, >= 2 for softmax (seed: 2).
        encoder_depth: number of 2x max-poolings (levels = encoder_depth + 1).
        encoder_filters: filters of the first level.
        filter_growth: width factor from one level to the next.
        blocks_per_level: residual blocks per level.
        decoder_upsampling: "nearest" (seed), "bilinear" (2D only) or "transpose".
        dropout: dropout rate after every level's residual blocks (0 = none).
        batch_norm: BatchNormalization inside the residual blocks.
        stackwise_filters: explicit widths of the levels (encoder_depth + 1 ints, shallow to deep);
            overrides encoder_filters / filter_growth.
        name: model name.

    Example:
        >>> model = build_resblock_unet((16, 16, 16, 1), encoder_depth=2, encoder_filters=4)
        >>> model.output_shape
        (None, 16, 16, 16, 2)
    """
    import keras
    from keras import layers

    p = validate_resblock_unet(locals())
    filters, depth = p["filters"], p["depth"]
    common = {"blocks": p["blocks"], "batch_norm": p["batch_norm"], "dropout": p["dropout"]}
    max_pool = layer_class("max_pool", p["ndim"])

    inputs = keras.Input(tuple(input_shape), name="input")
    x = inputs
    skips = []
    for i in range(1, depth + 1):
        x = residual_stack(x, filters[i - 1], name=f"enc{i}", **common)
        skips.append(x)
        x = max_pool(2, name=f"enc{i}_pool")(x)
    x = residual_stack(x, filters[depth], name="bridge", **common)
    for i in range(depth, 0, -1):
        x = upsample(
            x, name=f"dec{i}", mode=p["upsampling"], filters=filters[i - 1], conv_activation="relu"
        )
        x = layers.Concatenate(name=f"dec{i}_concat")([x, skips[i - 1]])
        x = residual_stack(x, filters[i - 1], name=f"dec{i}", **common)
    outputs = segmentation_head(x, p["num_classes"])
    return keras.Model(inputs, outputs, name=name)
