"""Plain convolution blocks: conv-BN-ReLU, twice (the U-Net block of seeds 000 and 003)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segsearch.blocks._common import layer_class, spatial_rank

if TYPE_CHECKING:  # pragma: no cover
    import keras


def batchnorm_relu(
    x: keras.KerasTensor, *, name: str, batch_norm: bool = True
) -> keras.KerasTensor:
    """Apply BatchNormalization (optional) then ReLU.

    The layers are named ``{name}_bn`` and ``{name}_relu``.

    Args:
        x: input tensor.
        name: prefix of the layer names.
        batch_norm: False skips the normalisation and keeps only the ReLU.
    """
    from keras import layers

    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def conv_bn_relu(
    x: keras.KerasTensor,
    filters: int,
    *,
    name: str,
    kernel_size: int = 3,
    dilation_rate: int = 1,
    use_bias: bool = True,
    batch_norm: bool = True,
) -> keras.KerasTensor:
    """Convolve ("same" padding), then BatchNormalization and ReLU.

    Layers are named ``{name}`` (the convolution), ``{name}_bn`` and ``{name}_relu``. Without batch
    normalisation the convolution always gets a bias.

    Args:
        x: input tensor, 2D (B, H, W, C) or 3D (B, D, H, W, C).
        filters: output channels.
        name: name of the convolution and prefix of the others.
        kernel_size: convolution kernel size.
        dilation_rate: atrous rate of the convolution.
        use_bias: whether the convolution has a bias when batch_norm is on.
        batch_norm: whether to normalise between the convolution and the ReLU.
    """
    conv = layer_class("conv", spatial_rank(x))
    x = conv(
        filters,
        kernel_size,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=use_bias or not batch_norm,
        name=name,
    )(x)
    return batchnorm_relu(x, name=name, batch_norm=batch_norm)


def conv_block(
    x: keras.KerasTensor,
    filters: int,
    *,
    name: str,
    batch_norm: bool = True,
    dropout: float = 0.0,
    kernel_size: int = 3,
) -> keras.KerasTensor:
    """Two (conv-BN-ReLU) layers, then Dropout when ``dropout > 0`` (U-Net seed ``conv_block``).

    Layers: ``{name}_conv1``, ``{name}_bn1``, ``{name}_relu1``, ``{name}_conv2``, ``{name}_bn2``,
    ``{name}_relu2`` and ``{name}_drop``. The convolutions keep their bias, as in the seed.

    Args:
        x: input tensor (2D or 3D, channels last).
        filters: output channels of both convolutions.
        name: prefix of the layer names, e.g. "enc1".
        batch_norm: whether to put BatchNormalization between each convolution and its ReLU.
        dropout: dropout rate after the block; 0 adds no layer.
        kernel_size: convolution kernel size.

    Example:
        >>> y = conv_block(keras.Input((32, 32, 3)), 16, name="enc1")   # (None, 32, 32, 16)
    """
    from keras import layers

    conv = layer_class("conv", spatial_rank(x))
    for j in (1, 2):
        x = conv(filters, kernel_size, padding="same", name=f"{name}_conv{j}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{j}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{j}")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    return x
