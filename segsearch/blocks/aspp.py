"""Atrous Spatial Pyramid Pooling, as in the DeepLabV3+ seed (002)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segsearch.blocks.conv import conv_bn_relu

if TYPE_CHECKING:  # pragma: no cover
    import keras


def aspp(
    x: keras.KerasTensor,
    *,
    rates: Sequence[int] = (6, 12, 18),
    filters: int = 256,
    image_pooling: bool = True,
    batch_norm: bool = True,
    name: str = "aspp",
) -> keras.KerasTensor:
    """ASPP: image pooling, a 1x1 branch and one 3x3 atrous branch per rate.

    The branches are concatenated and projected.

    Every convolution has no bias and is followed by BN and ReLU (the DeepLabV3+ article).
    Branches, in the article's order: ``{name}_pool`` (AveragePooling over the whole map,
    ``{name}_pool_conv`` 1x1, ``{name}_pool_up`` bilinear back to the map size), ``{name}_1x1``,
    ``{name}_rate{r}`` for each rate; then ``{name}_concat`` and the 1x1 projection
    ``{name}_proj``. The input must have a fixed spatial size (the pooling window is the whole
    map); callers check rates against that size
    (:func:`segsearch.hypermodels.registry.check_input_size`).

    Args:
        x: 2D feature map (B, H, W, C) with known H and W.
        rates: dilation rates of the 3x3 atrous branches (may be empty).
        filters: channels of every branch and of the projection.
        image_pooling: whether to add the image-level pooling branch.
        batch_norm: False replaces BN by a conv bias (ReLU stays).
        name: prefix of the layer names.

    Example:
        >>> y = aspp(keras.Input((32, 32, 1024)), rates=(6, 12, 18))   # (None, 32, 32, 256)
    """
    from keras import layers

    h, w = int(x.shape[1]), int(x.shape[2])
    branches = []
    if image_pooling:
        y = layers.AveragePooling2D(pool_size=(h, w), name=f"{name}_pool")(x)
        y = conv_bn_relu(
            y,
            filters,
            kernel_size=1,
            use_bias=False,
            batch_norm=batch_norm,
            name=f"{name}_pool_conv",
        )
        y = layers.UpSampling2D((h, w), interpolation="bilinear", name=f"{name}_pool_up")(y)
        branches.append(y)
    branches.append(
        conv_bn_relu(
            x, filters, kernel_size=1, use_bias=False, batch_norm=batch_norm, name=f"{name}_1x1"
        )
    )
    for rate in rates:
        branches.append(
            conv_bn_relu(
                x,
                filters,
                kernel_size=3,
                dilation_rate=int(rate),
                use_bias=False,
                batch_norm=batch_norm,
                name=f"{name}_rate{int(rate)}",
            )
        )
    y = layers.Concatenate(name=f"{name}_concat")(branches) if len(branches) > 1 else branches[0]
    return conv_bn_relu(
        y, filters, kernel_size=1, use_bias=False, batch_norm=batch_norm, name=f"{name}_proj"
    )
