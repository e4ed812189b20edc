"""ResNet50 encoder helper: taps, stages, freezing, weights checks and the ImageNet cache."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from segsearch.blocks import resnet50 as r50
from segsearch.errors import ConfigError, WeightsError


@pytest.fixture(scope="module")
def backbone():
    """One ResNet50 (weights=None) on a 64x64x3 input, shared by the module."""
    import keras

    return r50.resnet50_encoder(keras.Input((64, 64, 3), name="input"), weights=None)


def test_feature_taps_by_stride(backbone):
    features = r50.resnet50_features(backbone)
    assert sorted(features) == [1, 2, 4, 8, 16, 32]
    for stride, tensor in features.items():
        assert tensor.shape[1:3] == (64 // stride, 64 // stride)
    assert features[16].shape[-1] == 1024
    assert backbone.get_layer(r50.RESNET50_LOW_LEVEL).output.shape[1] == 16


def test_encoder_stage():
    assert r50.encoder_stage("conv1_conv") == 1
    assert r50.encoder_stage("pool1_pool") == 1
    assert r50.encoder_stage("conv4_block6_out") == 4
    assert r50.encoder_stage("dec1_conv1") is None
    assert r50.encoder_stage("head_conv") is None


def test_freeze_encoder_stage3(backbone):
    from keras import layers

    try:
        frozen = r50.freeze_encoder(backbone, "stage3", freeze_batch_norm=True)
        assert frozen > 0
        assert not backbone.get_layer("conv3_block4_3_conv").trainable
        assert not backbone.get_layer("conv2_block1_1_bn").trainable
        assert backbone.get_layer("conv4_block1_1_conv").trainable
        r50.freeze_encoder(backbone, "stage3", freeze_batch_norm=False)
        assert backbone.get_layer("conv2_block1_1_bn").trainable
        assert isinstance(backbone.get_layer("conv2_block1_1_bn"), layers.BatchNormalization)
        assert r50.freeze_encoder(backbone, "none") == 0
    finally:
        for layer in backbone.layers:
            layer.trainable = True
    with pytest.raises(ConfigError, match="did you mean 'stage4'"):
        r50.freeze_encoder(backbone, "stage4x")


def test_weights_file_of_another_network_is_refused_and_nothing_changes(backbone, tmp_path):
    import keras

    x = keras.Input((8, 8, 3))
    other = keras.Model(x, keras.layers.Conv2D(2, 3, name="other_conv")(x))
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    before = backbone.get_layer("conv1_conv").weights[0].numpy()
    with pytest.raises(
        WeightsError, match="no layer of the ResNet50 encoder matched|could not load"
    ):
        r50.load_encoder_weights(backbone, str(path))
    np.testing.assert_array_equal(backbone.get_layer("conv1_conv").weights[0].numpy(), before)
    assert not np.isnan(backbone.get_layer("conv5_block3_3_bn").weights[0].numpy()).any()


def test_check_weights(tmp_path):
    r50.check_weights(None)
    r50.check_weights("imagenet", 3)
    with pytest.raises(WeightsError, match="3 input channels"):
        r50.check_weights("imagenet", 1)
    with pytest.raises(WeightsError, match="not found"):
        r50.check_weights(str(tmp_path / "missing.h5"))
    text = tmp_path / "weights.txt"
    text.write_text("x")
    with pytest.raises(WeightsError, match="must end with"):
        r50.check_weights(text)
    with pytest.raises(WeightsError, match="None, 'imagenet' or a path"):
        r50.check_weights(42)


def test_imagenet_cache_path_follows_keras_home(keras_home):
    assert r50.imagenet_cache_path() == keras_home / "models" / r50.IMAGENET_FILE


def test_imagenet_offline_message(keras_home):
    with pytest.raises(WeightsError) as info:
        r50.imagenet_weights_file()
    message = str(info.value)
    assert "offline" in message and "not in the Keras cache" in message
    assert str(keras_home / "models" / r50.IMAGENET_FILE) in message
    assert r50.IMAGENET_URL in message and "weights=None" in message


def test_imagenet_cached_file_is_used_without_download(keras_home, monkeypatch):
    cached = keras_home / "models" / r50.IMAGENET_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not really weights")
    with pytest.raises(WeightsError, match="incomplete or corrupted"):
        r50.imagenet_weights_file()
    assert cached.exists()  # never deleted
    monkeypatch.setattr(
        r50, "_imagenet_md5", lambda: hashlib.md5(b"not really weights").hexdigest()
    )
    assert r50.imagenet_weights_file() == cached
