"""Conv blocks, residual blocks, upsampling and ASPP: shapes, layer names and parameter counts."""

from __future__ import annotations

import pytest

from segsearch.blocks import (
    aspp,
    conv_block,
    preact_residual_block,
    residual_block,
    residual_stack,
    upsample,
)
from segsearch.errors import ConfigError


def _model(inputs, outputs):
    import keras

    return keras.Model(inputs, outputs)


def _input(shape):
    import keras

    return keras.Input(shape)


def _names(model):
    return {layer.name for layer in model.layers}


def test_conv_block_matches_the_seed():
    x = _input((16, 16, 3))
    model = _model(x, conv_block(x, 4, name="enc1"))
    assert model.output_shape == (None, 16, 16, 4)
    assert {"enc1_conv1", "enc1_bn1", "enc1_relu1", "enc1_conv2", "enc1_bn2", "enc1_relu2"} <= (
        _names(model)
    )
    # conv 3x3 with bias, BN (4 weights per channel), twice
    assert model.count_params() == (27 * 4 + 4) + 16 + (36 * 4 + 4) + 16
    assert "enc1_drop" not in _names(model)


def test_conv_block_options():
    x = _input((16, 16, 3))
    model = _model(x, conv_block(x, 4, name="b", batch_norm=False, dropout=0.3))
    assert not any("bn" in n for n in _names(model))
    assert model.get_layer("b_drop").rate == pytest.approx(0.3)


def test_preact_residual_block():
    x = _input((16, 16, 4))
    model = _model(x, preact_residual_block(x, 8, strides=2, name="enc2"))
    assert model.output_shape == (None, 8, 8, 8)
    assert model.get_layer("enc2_shortcut").strides == (2, 2)
    assert {"enc2_pre_bn", "enc2_pre_relu", "enc2_mid_bn", "enc2_add"} <= _names(model)
    stem_in = _input((16, 16, 3))
    stem = _model(stem_in, preact_residual_block(stem_in, 8, name="enc1", preactivate=False))
    assert "enc1_pre_bn" not in _names(stem)
    # seed encoder 1: conv 3x3 (3->8) + BN + conv 3x3 (8->8) + 1x1 shortcut (3->8), all with bias
    assert stem.count_params() == (27 * 8 + 8) + 32 + (72 * 8 + 8) + (3 * 8 + 8)


def test_residual_block_has_a_bias_free_projection():
    x = _input((16, 16, 1))
    model = _model(x, residual_block(x, 8, name="enc1_res1"))
    shortcut = model.get_layer("enc1_res1_shortcut")
    assert shortcut.use_bias is False and len(shortcut.weights) == 1
    assert model.get_layer("enc1_res1_out").get_config()["activation"] == "relu"
    assert model.count_params() == 8 + (9 * 8 + 8) + 32 + (72 * 8 + 8) + 32


def test_residual_block_identity_needs_matching_channels():
    with pytest.raises(ValueError, match="identity shortcut needs 8"):
        residual_block(_input((16, 16, 4)), 8, name="r", projection=False)


def test_residual_stack_and_3d():
    x = _input((8, 8, 8, 2))
    model = _model(x, residual_stack(x, 4, name="enc1", blocks=2, dropout=0.1))
    assert model.output_shape == (None, 8, 8, 8, 4)
    names = _names(model)
    assert "enc1_res1_shortcut" in names and "enc1_res2_shortcut" not in names
    assert "enc1_res2_add" in names and "enc1_drop" in names
    assert type(model.get_layer("enc1_res1_conv1")).__name__ == "Conv3D"


@pytest.mark.parametrize(
    "mode, conv, expected",
    [
        ("transpose", True, {"d_up"}),
        ("nearest", True, {"d_up", "d_upconv"}),
        ("bilinear", False, {"d_up"}),
    ],
)
def test_upsample_modes(mode, conv, expected):
    x = _input((8, 8, 6))
    model = _model(x, upsample(x, name="d", mode=mode, filters=3, conv=conv))
    assert _names(model) - {model.layers[0].name} == expected
    assert model.output_shape == (None, 16, 16, 6 if mode != "transpose" and not conv else 3)
    if mode == "transpose":
        layer = model.get_layer("d_up")
        assert layer.kernel_size == (2, 2) and layer.strides == (2, 2)
    if mode == "nearest":
        assert model.get_layer("d_upconv").kernel_size == (2, 2)


def test_upsample_factor_activation_and_3d():
    x = _input((4, 4, 2))
    model = _model(x, upsample(x, name="h", mode="bilinear", factor=4, conv_activation="relu"))
    assert model.output_shape == (None, 16, 16, 2)
    assert "h_uprelu" in _names(model)
    v = _input((4, 4, 4, 2))
    assert _model(v, upsample(v, name="d", mode="nearest", filters=3)).output_shape == (
        None, 8, 8, 8, 3
    )
    with pytest.raises(ValueError, match="2D only"):
        upsample(v, name="d", mode="bilinear")
    with pytest.raises(ConfigError, match="did you mean 'nearest'"):
        upsample(x, name="d", mode="neares")


def test_aspp_branches_and_parameters():
    c, f = 16, 8
    x = _input((8, 8, c))
    model = _model(x, aspp(x, rates=(2, 4), filters=f))
    assert model.output_shape == (None, 8, 8, f)
    names = _names(model)
    assert {
        "aspp_pool",
        "aspp_pool_conv",
        "aspp_pool_up",
        "aspp_1x1",
        "aspp_rate2",
        "aspp_rate4",
        "aspp_concat",
        "aspp_proj",
        "aspp_proj_bn",
        "aspp_proj_relu",
    } <= names
    assert model.get_layer("aspp_rate4").dilation_rate == (4, 4)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert convs and not any(layer.use_bias for layer in convs)
    expected = (c * f + 4 * f) * 2 + (9 * c * f + 4 * f) * 2 + (4 * f * f + 4 * f)
    assert model.count_params() == expected


def test_aspp_without_image_pooling_or_batch_norm():
    x = _input((8, 8, 4))
    model = _model(x, aspp(x, rates=(), filters=4, image_pooling=False, batch_norm=False, name="a"))
    names = _names(model)
    assert "a_pool" not in names and "a_concat" not in names and "a_1x1_bn" not in names
    assert model.get_layer("a_1x1").use_bias
