"""Decoder upsampling.

A transposed convolution, or nearest / bilinear resizing with an optional conv.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segsearch.blocks._common import (
    UpsamplingMode,
    check_upsampling,
    layer_class,
    spatial_rank,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras


def upsample(
    x: keras.KerasTensor,
    *,
    name: str,
    mode: UpsamplingMode = "transpose",
    filters: int | None = None,
    factor: int = 2,
    conv: bool = True,
    conv_kernel: int = 2,
    conv_activation: str | None = None,
) -> keras.KerasTensor:
    """Upsample a feature map by ``factor`` in every spatial dimension.

    - "transpose": ``Conv{2,3}DTranspose(filters, factor, strides=factor)`` named ``{name}_up``
      (for factor 2 the seeds' 2x2 stride-2 transposed convolution);
    - "nearest" / "bilinear": ``UpSampling{2,3}D`` named ``{name}_up``, followed, when ``conv`` is
      True, by a ``conv_kernel`` convolution with ``filters`` outputs named ``{name}_upconv`` (the
      original U-Net "up-convolution") and an optional activation ``{name}_up{activation}``. With
      ``conv=False`` the resize stays bare (ResUNet and DeepLabV3+ seeds). "bilinear" is 2D only.

    Args:
        x: input tensor, 2D or 3D channels last.
        name: prefix of the layer names, e.g. "dec3".
        mode: "transpose", "nearest" or "bilinear".
        filters: output channels of the (transposed) convolution; None keeps the input's channels.
        factor: integer upsampling factor.
        conv: whether nearest/bilinear resizing is followed by a convolution.
        conv_kernel: kernel size of that convolution.
        conv_activation: activation after that convolution (e.g. "relu"), None for none.

    Example:
        >>> x = keras.Input((8, 8, 32))
        >>> y = upsample(x, name="dec2", mode="nearest", filters=16)  # 16x16x16
    """
    from keras import layers

    mode = check_upsampling(mode)
    ndim = spatial_rank(x)
    if filters is None:
        filters = int(x.shape[-1])
    if mode == "transpose":
        return layer_class("conv_transpose", ndim)(
            filters, factor, strides=factor, padding="same", name=f"{name}_up"
        )(x)
    if ndim == 2:
        x = layers.UpSampling2D(factor, interpolation=mode, name=f"{name}_up")(x)
    else:
        if mode != "nearest":
            raise ValueError(
                f"{name}: {mode!r} upsampling is 2D only; use 'nearest' or 'transpose'"
            )
        x = layers.UpSampling3D(factor, name=f"{name}_up")(x)
    if conv:
        x = layer_class("conv", ndim)(
            filters, conv_kernel, padding="same", name=f"{name}_upconv"
        )(x)
        if conv_activation:
            x = layers.Activation(conv_activation, name=f"{name}_up{conv_activation}")(x)
    return x
