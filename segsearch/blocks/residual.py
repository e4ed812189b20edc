"""Residual blocks.

ResUNet's pre-activation block and resblock_unet's block (their presets' articles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segsearch.blocks._common import layer_class, spatial_rank
from segsearch.blocks.conv import batchnorm_relu

if TYPE_CHECKING:  # pragma: no cover
    import keras


def preact_residual_block(
    x: keras.KerasTensor,
    filters: int,
    *,
    name: str,
    strides: int = 1,
    batch_norm: bool = True,
    dropout: float = 0.0,
    preactivate: bool = True,
) -> keras.KerasTensor:
    """Pre-activation residual block: (BN-ReLU-conv) x2 plus a strided 1x1 conv shortcut, added.

    This is ``residual_block`` of the ResUNet seed (Zhang et al.); with ``preactivate=False`` the
    first BN-ReLU is left out, which is the seed's first encoder level (conv, BN-ReLU, conv + 1x1
    shortcut).
    Layers: ``{name}_pre_bn``/``{name}_pre_relu``, ``{name}_conv1``, ``{name}_mid_bn``,
    ``{name}_mid_relu``, ``{name}_conv2``, ``{name}_shortcut``, ``{name}_add`` and ``{name}_drop``.

    Args:
        x: input tensor (channels last).
        filters: output channels.
        name: prefix of the layer names, e.g. "enc2".
        strides: stride of the first 3x3 conv and of the shortcut (2 halves the resolution).
        batch_norm: False keeps only the ReLUs.
        dropout: dropout rate after the addition; 0 adds no layer.
        preactivate: whether the block starts with BN-ReLU on its input.

    Example:
        >>> x = keras.Input((32, 32, 16))
        >>> y = preact_residual_block(x, 32, strides=2, name="enc2")  # 16x16x32
    """
    from keras import layers

    conv = layer_class("conv", spatial_rank(x))
    y = batchnorm_relu(x, name=f"{name}_pre", batch_norm=batch_norm) if preactivate else x
    y = conv(filters, 3, padding="same", strides=strides, name=f"{name}_conv1")(y)
    y = batchnorm_relu(y, name=f"{name}_mid", batch_norm=batch_norm)
    y = conv(filters, 3, padding="same", strides=1, name=f"{name}_conv2")(y)
    s = conv(filters, 1, padding="same", strides=strides, name=f"{name}_shortcut")(x)
    y = layers.Add(name=f"{name}_add")([y, s])
    if dropout > 0:
        y = layers.Dropout(dropout, name=f"{name}_drop")(y)
    return y


def residual_block(
    x: keras.KerasTensor,
    filters: int,
    *,
    name: str,
    batch_norm: bool = True,
    projection: bool = True,
) -> keras.KerasTensor:
    """One resblock_unet residual block: 3x3 conv-BN-ReLU-3x3 conv-BN, plus a shortcut, added, ReLU.

    The shortcut is a 1x1 convolution without bias (``projection=True``, the seed's block) or the
    identity (only possible when the input already has ``filters`` channels). Layers:
    ``{name}_conv1``, ``{name}_bn1``, ``{name}_relu1``, ``{name}_conv2``, ``{name}_bn2``,
    ``{name}_shortcut``, ``{name}_add``, ``{name}_out``.

    Args:
        x: input tensor, 2D or 3D (channels last).
        filters: output channels.
        name: prefix of the layer names, e.g. "enc1_res1".
        batch_norm: False removes both BatchNormalization layers.
        projection: 1x1 conv shortcut (True) or identity shortcut (False).

    Example:
        >>> y = residual_block(keras.Input((32, 32, 1)), 8, name="enc1_res1")   # (None, 32, 32, 8)
    """
    from keras import layers

    conv = layer_class("conv", spatial_rank(x))
    if projection:
        s = conv(filters, 1, padding="same", use_bias=False, name=f"{name}_shortcut")(x)
    else:
        if x.shape[-1] != filters:
            raise ValueError(
                f"{name}: identity shortcut needs {filters} input channels, got {x.shape[-1]}"
            )
        s = x
    y = conv(filters, 3, padding="same", name=f"{name}_conv1")(x)
    if batch_norm:
        y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = conv(filters, 3, padding="same", name=f"{name}_conv2")(y)
    if batch_norm:
        y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([y, s])
    return layers.Activation("relu", name=f"{name}_out")(y)


def residual_stack(
    x: keras.KerasTensor,
    filters: int,
    *,
    name: str,
    blocks: int = 1,
    batch_norm: bool = True,
    dropout: float = 0.0,
) -> keras.KerasTensor:
    """``blocks`` resblock_unet residual blocks in a row, then Dropout when ``dropout > 0``.

    The first block has the 1x1 projection shortcut (it changes the width); the repeats keep the
    width and use identity shortcuts, as ResNet34's basic blocks do. Blocks are named
    ``{name}_res1``, ``{name}_res2``, ...; the dropout layer ``{name}_drop``.

    Args:
        x: input tensor, 2D or 3D.
        filters: output channels.
        name: prefix, e.g. "enc3" or "bridge".
        blocks: number of residual blocks (>= 1).
        batch_norm: whether the blocks use BatchNormalization.
        dropout: dropout rate after the stack; 0 adds no layer.
    """
    from keras import layers

    for k in range(1, blocks + 1):
        x = residual_block(
            x, filters, name=f"{name}_res{k}", batch_norm=batch_norm, projection=k == 1
        )
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    return x
