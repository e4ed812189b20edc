"""The encoder table (segsearch/blocks/encoders.py): each encoder's taps, stages, input, weights.

Each encoder is built once (weights=None, 64x64) and the table is checked against the graph: every
tap exists and has its stride, DeepLabV3+'s low-level map has stride 4, every trainable layer of
the encoder lies in one of the five stages, each stage holds some, and a stage's layers work at
the stage's strides. The weights routes (a file the test saves, the
Keras cache with its checksum) are checked on EfficientNetB0.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from segsearch.blocks import encoders as enc  # noqa: E402
from segsearch.errors import ConfigError, WeightsError  # noqa: E402

SIZE = 64
#: the big encoders, out of the default run (``-m slow``)
SLOW = {"resnet101", "efficientnetb3", "efficientnetb4"}
NAMES = [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else [])
         for n in enc.ENCODER_NAMES]
_BUILT: dict[str, keras.Model] = {}


def backbone(name: str) -> keras.Model:
    """``name`` built once for this module (weights=None, 64x64x3)."""
    if name not in _BUILT:
        _BUILT[name] = enc.build_encoder(keras.Input((SIZE, SIZE, 3), name="input"), name)
    return _BUILT[name]


def stride(tensor) -> int:
    return SIZE // tensor.shape[1]


@pytest.mark.parametrize("name", NAMES)
def test_taps_have_their_strides(name):
    model = backbone(name)
    features = enc.encoder_features(model, name)
    assert sorted(features) == [1, 2, 4, 8, 16, 32]
    for s, tensor in features.items():
        assert tensor.shape[1] == tensor.shape[2] == SIZE // s, (name, s, tensor.shape)
    low = enc.tap(model, enc.ENCODERS[name].low_level)
    assert stride(low) == 4
    # the stride-32 tap is the encoder's output (nothing of the encoder is left unused)
    assert features[32] is model.outputs[0] or enc.ENCODERS[name].taps[32] != enc.OUTPUT


@pytest.mark.parametrize("name", NAMES)
def test_every_trainable_layer_is_in_one_stage(name):
    spec = enc.ENCODERS[name]
    model = backbone(name)
    stages: dict[int, list[str]] = {}
    for layer in model.layers:
        if not layer.trainable_weights:
            assert layer.name == enc.PREPROCESS_LAYER or spec.stage(layer.name) is None or \
                not layer.weights or not any(v.trainable for v in layer.weights)
            continue
        stage = spec.stage(layer.name)
        assert stage is not None, f"{name}: {layer.name} is in no stage"
        stages.setdefault(stage, []).append(layer.name)
        # a layer of stage N works at the stage's strides: from its input's (2**(N-1)) to the
        # next stage's (ResNet50V2 downsamples in the last block of a stage); the stem may work
        # at full resolution; squeeze-excite 1x1 maps are left out
        out = layer.output.shape
        if len(out) == 4 and out[1] > 1:
            low = 1 if stage == 1 else 2 ** (stage - 1)
            assert low <= stride(layer.output) <= 2 ** (stage + 1), (name, layer.name, stage,
                                                                     out)
    assert sorted(stages) == [1, 2, 3, 4, 5], (name, sorted(stages))
    assert enc.encoder_stage("head_conv", name) is None


@pytest.mark.parametrize("name", ["resnet50v2", "efficientnetb0", "mobilenetv3small"])
def test_freeze_by_stage_follows_the_table(name):
    spec = enc.ENCODERS[name]
    model = backbone(name)
    try:
        frozen = enc.freeze_encoder(model, "stage2", freeze_batch_norm=False, encoder=name)
        assert frozen > 0
        for layer in model.layers:
            stage = spec.stage(layer.name)
            if stage is not None and stage <= 2 and not isinstance(
                    layer, keras.layers.BatchNormalization):
                assert not layer.trainable, layer.name
            else:
                assert layer.trainable, layer.name
    finally:
        for layer in model.layers:
            layer.trainable = True


def test_unknown_encoder_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'efficientnetb0'"):
        enc.encoder_spec("efficientnet_b0")


def test_input_is_what_the_imagenet_weights_expect():
    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype("float32")
    rgb = np.asarray(enc.CAFFE_MEAN_RGB, "float32")
    cases = {
        # encoder, pretrained -> the encoder graph's input for [0, 1] images x
        ("resnet50", False): x,  # the seed networks: unchanged
        ("resnet50", True): (x * 255 - rgb)[..., ::-1],  # caffe: BGR, ImageNet means subtracted
        ("resnet50v2", True): x * 2 - 1,  # tf: [-1, 1]
        ("efficientnetb0", False): x * 255,  # its own graph rescales and normalises
        ("mobilenetv3small", True): x * 255,
    }
    for (name, pretrained), want in cases.items():
        inputs = keras.Input((32, 32, 3))
        got = keras.Model(inputs, enc.preprocess(inputs, name, pretrained=pretrained))(x)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-3,
                                   err_msg=f"{name} pretrained={pretrained}")


@pytest.fixture(scope="module")
def efficientnet_file(tmp_path_factory):
    """An EfficientNetB0 (no top, weights=None) saved as a legacy .h5 (the layout of the
    keras.applications ImageNet files) and its stem kernel."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(3)
    reference = keras.applications.EfficientNetB0(include_top=False, weights=None,
                                                  input_shape=(SIZE, SIZE, 3))
    path = tmp_path_factory.mktemp("efficientnet") / "efficientnetb0_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    return path, reference.get_layer("stem_conv").kernel.numpy()


def _check_normalization(model, channels=3):
    norm = [layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)]
    assert norm, "EfficientNet has its Normalization layer"
    mean = np.asarray(enc.IMAGENET_MEAN_RGB)
    var = np.asarray(enc.IMAGENET_STD_RGB) ** 2
    if channels != 3:
        mean, var = mean.mean(), var.mean()
    np.testing.assert_allclose(np.ravel(norm[0].adapt_mean.numpy()), np.broadcast_to(mean, (
        channels,)), rtol=1e-6)
    np.testing.assert_allclose(np.ravel(norm[0].adapt_variance.numpy()), np.broadcast_to(var, (
        channels,)), rtol=1e-6)


def test_weights_file_loads_into_efficientnet(efficientnet_file):
    path, kernel = efficientnet_file
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer is found
        model = enc.build_encoder(keras.Input((SIZE, SIZE, 3)), "efficientnetb0",
                                  weights=str(path))
    np.testing.assert_array_equal(model.get_layer("stem_conv").kernel.numpy(), kernel)
    _check_normalization(model)
    # grey input: the stem (another shape) keeps its initial values, with a warning
    with pytest.warns(UserWarning, match="stem_conv"):
        grey = enc.build_encoder(keras.Input((SIZE, SIZE, 1)), "efficientnetb0",
                                 weights=str(path))
    assert grey.get_layer("stem_conv").kernel.shape[2] == 1
    _check_normalization(grey, channels=1)
    with pytest.raises(WeightsError, match="ImageNet weights for EfficientNetB0 need 3 input "
                                           "channels, got 1"):
        enc.build_encoder(keras.Input((SIZE, SIZE, 1)), "efficientnetb0", weights="imagenet")


def test_imagenet_route_checks_the_cached_file(keras_home, efficientnet_file, monkeypatch):
    path, kernel = efficientnet_file
    cached = keras_home / "models" / "efficientnetb0_notop.h5"
    assert enc.imagenet_cache_path("efficientnetb0") == cached
    with pytest.raises(WeightsError) as info:  # offline, not cached: the message says what to do
        enc.build_encoder(keras.Input((SIZE, SIZE, 3)), "efficientnetb0", weights="imagenet")
    message = str(info.value)
    assert str(cached) in message and enc.ENCODERS["efficientnetb0"].weights_url in message
    assert "weights=None" in message
    cached.parent.mkdir(parents=True, exist_ok=True)  # the failed download made it
    cached.write_bytes(path.read_bytes())
    # the test's file is not Keras' ImageNet file: its checksum does not match
    with pytest.raises(WeightsError, match="incomplete or corrupted"):
        enc.imagenet_weights_file("efficientnetb0")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setattr(enc, "imagenet_hash", lambda encoder: md5)
    model = enc.build_encoder(keras.Input((SIZE, SIZE, 3)), "efficientnetb0", weights="imagenet")
    np.testing.assert_array_equal(model.get_layer("stem_conv").kernel.numpy(), kernel)
    _check_normalization(model)


def test_every_encoder_has_a_keras_checksum():
    for name in enc.ENCODER_NAMES:
        assert len(enc.imagenet_hash(name)) == 32, name
