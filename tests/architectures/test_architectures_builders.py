"""One shared test case run over every builder of the registry (keras applications / smp
BaseModelTester).

Each architecture goes through the same checks: its preset's parameter count at the preset's
input, a forward pass on a tiny input, every upsampling mode, several depths, a float32 head under
mixed precision, deterministic layer names, save/reload in safe mode, and InfeasibleError for a bad
size. The ResNet50-based builders also go through freezing and weights loading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from segsearch.errors import InfeasibleError, WeightsError
from segsearch.hypermodels.registry import ARCHITECTURES, PRESETS, check_input_size

BUILDERS = {key: s.builder for key, s in ARCHITECTURES.items()}

MODES = ("transpose", "nearest", "bilinear")
#: a variant's extra key: build it under the mixed_float16 policy
MIXED = "mixed_precision"


@dataclass(frozen=True)
class Case:
    key: str
    tiny_shape: tuple[int, ...]
    tiny: dict[str, Any]
    default_mode: str
    depths: tuple[tuple[int, dict[str, Any]], ...]
    bad_shape: tuple[int, ...]
    deepest: str  # layer whose input is the deepest feature map, "{depth}" filled in
    resnet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return PRESETS[self.key].num_classes


CASES = [
    Case(
        "unet",
        (32, 32, 3), {"depth": 2, "filters": 4}, "transpose",
        ((1, {}), (3, {})), (30, 30, 3), "bridge_conv1",
    ),
    Case(
        "resunet",
        (32, 32, 3), {"depth": 2, "filters": 4}, "nearest",
        ((1, {}), (4, {})), (30, 30, 3), "dec{depth}_up",
    ),
    # the ResNet50 builders' variants also freeze the encoder (test_upsampling_modes_and_depths
    # checks the trainable flags) and build under mixed precision: each ResNet50 costs ~3.5 CPU s
    Case(
        "resnet50_unet",
        (32, 32, 3), {"depth": 3, "filters": 4}, "transpose",
        ((2, {"freeze": "stage2", "freeze_batch_norm": False}), (5, {})), (36, 36, 3),
        "dec{depth}_up", resnet=True,
    ),
    Case(
        "deeplabv3plus",
        (64, 64, 3),
        {"depth": 3, "aspp_rates": (1, 2, 4), "aspp_filters": 8, "low_level_filters": 4,
         "filters": 8},
        "bilinear",
        ((4, {"aspp_rates": "1,2", "freeze": "all", "freeze_batch_norm": True}),
         (5, {"aspp_rates": (1,), MIXED: True})),
        (60, 60, 3), "aspp_1x1", resnet=True,
    ),
    Case(
        "resblock_unet",
        (32, 32, 1), {"depth": 2, "filters": 4}, "nearest",
        ((1, {}), (3, {"blocks": 2})), (30, 30, 1), "bridge_res1_shortcut",
    ),
]
BY_KEY = {c.key: c for c in CASES}
RESNET_CASES = [c for c in CASES if c.resnet]
AUTO_NAME = re.compile(
    r"^(conv[23]d(_transpose)?|batch_normalization|activation|add|concatenate|up_sampling[23]d|"
    r"dropout|max_pooling[23]d|average_pooling2d|input_layer|dense|lambda)(_\d+)?$"
)


def _ids(cases):
    return [c.key for c in cases]


def _build(case: Case, **overrides: Any):
    kwargs = {**case.tiny, **overrides}
    shape = kwargs.pop("input_shape", case.tiny_shape)
    if not kwargs.pop(MIXED, False):
        return BUILDERS[case.key](shape, case.num_classes, **kwargs)
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return BUILDERS[case.key](shape, case.num_classes, **kwargs)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _forward(model, shape, batch: int = 2):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, size=(batch, *shape)).astype("float32")
    return x, np.asarray(model(x, training=False))


def _check_output(y: np.ndarray, shape: tuple[int, ...], num_classes: int) -> None:
    assert y.shape == (2, *shape[:-1], num_classes)
    assert y.dtype == np.float32
    assert np.isfinite(y).all()
    assert (y >= 0).all() and (y <= 1).all()
    if num_classes > 1:
        np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5)


@pytest.fixture(scope="module", params=CASES, ids=_ids(CASES))
def tiny(request):
    """A tiny model of every architecture, built once per module: (case, model)."""
    case = request.param
    return case, _build(case)


def test_registry_holds_every_case():
    assert sorted(BUILDERS) == sorted(BY_KEY)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_preset_parameter_count_at_its_input(case):
    preset = PRESETS[case.key]
    model = preset.build()
    assert model.count_params() == preset.parameters
    assert model.output_shape == (None, *preset.input_shape[:-1], preset.num_classes)
    assert model.get_layer("head_act").dtype_policy.name == "float32"


def test_forward_pass_on_tiny_input(tiny):
    case, model = tiny
    _, y = _forward(model, case.tiny_shape)
    _check_output(y, case.tiny_shape, case.num_classes)
    activation = model.get_layer("head_act").get_config()["activation"]
    assert activation == ("sigmoid" if case.num_classes == 1 else "softmax")
    assert all(layer.trainable for layer in model.layers)  # freeze="none" by default


def test_layer_names_are_deterministic_and_safe(tiny):
    case, model = tiny
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert not [n for n in names if AUTO_NAME.match(n)], "layers left with automatic names"
    assert not [layer for layer in model.layers if type(layer).__name__ == "Lambda"]
    assert names[-2:] == ["head_conv", "head_act"]
    if not case.resnet:  # keras.applications names its ResNet50 layers itself
        again = [layer.name for layer in _build(case).layers]
        assert again == names


def test_save_and_reload_gives_same_outputs(tiny, tmp_path):
    import keras

    case, model = tiny
    x, y = _forward(model, case.tiny_shape)
    path = tmp_path / f"{case.key}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True, no custom_objects
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), y, rtol=1e-5, atol=1e-6)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def _variants(case: Case) -> list[tuple[str, int, dict[str, Any]]]:
    """The non-default upsampling modes, each paired with one of the case's other depths."""
    modes = [m for m in MODES if m != case.default_mode]
    return [(mode, depth, extra) for mode, (depth, extra) in zip(modes, case.depths, strict=False)]


VARIANTS = [(c, *v) for c in CASES for v in _variants(c)]


@pytest.mark.parametrize(
    "case, mode, depth, extra", VARIANTS, ids=[f"{c.key}-{m}-depth{d}" for c, m, d, _ in VARIANTS]
)
def test_upsampling_modes_and_depths(case, mode, depth, extra):
    """Every upsampling mode (the default one is the tiny model's) and two more depths per
    builder; the ResNet50 builders' variants also freeze the encoder or use mixed precision."""
    from keras import layers

    model = _build(case, upsampling=mode, depth=depth, **extra)
    _, y = _forward(model, case.tiny_shape)
    _check_output(y, case.tiny_shape, case.num_classes)
    if "freeze" in extra:
        _check_frozen(model, extra["freeze"], extra["freeze_batch_norm"])
    if extra.get(MIXED):
        _check_mixed(model)
    deepest = model.get_layer(case.deepest.format(depth=depth)).input
    assert deepest.shape[1] == case.tiny_shape[0] // 2**depth
    ups = [lay for lay in model.layers if lay.name.endswith("_up") and lay.name != "aspp_pool_up"]
    assert ups
    for layer in ups:
        if mode == "transpose":
            assert isinstance(layer, layers.Conv2DTranspose)
        else:
            assert isinstance(layer, layers.UpSampling2D)
            assert layer.interpolation == mode


def _check_mixed(model) -> None:
    assert model.get_layer("head_conv").compute_dtype == "float32"  # the logits too
    assert model.outputs[0].dtype == "float32"
    assert any(layer.compute_dtype == "float16" for layer in model.layers)  # the policy held


# deeplabv3plus: its variant at depth 5 (test_upsampling_modes_and_depths)
MIXED_CASES = [c for c in CASES if not c.resnet]


@pytest.mark.parametrize("case", MIXED_CASES, ids=_ids(MIXED_CASES))
def test_head_is_float32_under_mixed_precision(case):
    _check_mixed(_build(case, **{MIXED: True}))


def test_every_resnet50_builder_has_a_frozen_and_a_mixed_precision_variant():
    """The freezing and mixed-precision checks of the ResNet50 builders ride on their variants
    (test_upsampling_modes_and_depths): each ResNet50 builder is frozen in one, and
    deeplabv3plus is built under mixed precision in one."""
    frozen = {c.key for c, _, _, extra in VARIANTS if "freeze" in extra}
    assert frozen == {c.key for c in RESNET_CASES}
    mixed = {c.key for c, _, _, extra in VARIANTS if extra.get(MIXED)}
    assert mixed == {"deeplabv3plus"}


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_infeasible_size_raises_before_building(case):
    kwargs = {k: v for k, v in case.tiny.items()}
    with pytest.raises(InfeasibleError, match="divisible by"):
        check_input_size(case.key, case.bad_shape, **kwargs)
    with pytest.raises(InfeasibleError, match="divisible by"):
        BUILDERS[case.key](case.bad_shape, case.num_classes, **kwargs)


def test_resblock_unet_3d_forward():
    from keras import layers

    model = BUILDERS["resblock_unet"]((16, 16, 16, 1), 2, depth=2, filters=4)
    rng = np.random.default_rng(0)
    y = np.asarray(model(rng.uniform(size=(2, 16, 16, 16, 1)).astype("float32"), training=False))
    assert y.shape == (2, 16, 16, 16, 2)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5)
    assert isinstance(model.get_layer("enc1_pool"), layers.MaxPooling3D)
    assert isinstance(model.get_layer("dec1_up"), layers.UpSampling3D)
    assert isinstance(model.get_layer("head_conv"), layers.Conv3D)


# --- ResNet50 encoders: freezing and weights ------------------------------------------------------


def _check_frozen(model, freeze: str, freeze_bn: bool) -> None:
    """The freeze modes' trainable flags (resnet50_unet's variant freezes stage2 and not its batch
    norms, deeplabv3plus's all of the encoder with them)."""
    from keras import layers

    from segsearch.blocks import encoder_stage

    last = 5 if freeze == "all" else int(freeze[-1])
    for layer in model.layers:
        stage = encoder_stage(layer.name)
        if stage is None or stage > last:
            expected = True
        elif isinstance(layer, layers.BatchNormalization):
            expected = not freeze_bn
        else:
            expected = False
        assert layer.trainable is expected, (layer.name, layer.trainable)
    assert model.get_layer("head_conv").trainable
    assert len(model.trainable_weights) < len(model.weights)


@pytest.fixture(scope="module")
def resnet50_weights(resnet50_reference):
    """A ResNet50 (no top, weights=None, 32x32) and its .weights.h5 and legacy .h5 files
    (tests/conftest.py builds it once for the session)."""
    return resnet50_reference


WEIGHT_FILES = [
    # (builder, file kind, input channels): a Keras 3 .weights.h5 loads by structure; a legacy
    # .h5 (the format of the keras.applications ImageNet files) loads by layer name, and with a
    # 1-channel input only conv1_conv (other shape) is skipped, with a warning.
    ("deeplabv3plus", "modern", 3),
    ("resnet50_unet", "legacy", 1),
]


@pytest.mark.parametrize(
    "key, kind, channels", WEIGHT_FILES, ids=[f"{k}-{f}" for k, f, _ in WEIGHT_FILES]
)
def test_weights_file_loads_the_encoder(key, kind, channels, resnet50_weights):
    values, modern, legacy = resnet50_weights
    case = BY_KEY[key]
    shape = (*case.tiny_shape[:-1], channels)
    path = modern if kind == "modern" else legacy
    if channels == 3:
        model = _build(case, weights=str(path))
    else:
        with pytest.warns(UserWarning, match=r"1 of \d+ ResNet50 layers .* conv1_conv"):
            model = _build(case, input_shape=shape, weights=path)
        assert model.get_layer("conv1_conv").weights[0].shape[2] == 1
    checked = 0
    for layer in model.layers:
        if layer.name in values and not (channels != 3 and layer.name == "conv1_conv"):
            for v, expected in zip(layer.weights, values[layer.name], strict=True):
                np.testing.assert_array_equal(v.numpy(), expected)
            checked += 1
    assert checked > 20
    _, y = _forward(model, shape)
    _check_output(y, shape, case.num_classes)


@pytest.mark.parametrize("case", RESNET_CASES, ids=_ids(RESNET_CASES))
def test_missing_weights_file(case, tmp_path):
    missing = tmp_path / "nowhere" / "resnet50.weights.h5"
    with pytest.raises(WeightsError, match="weights file not found") as info:
        _build(case, weights=str(missing))
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("case", RESNET_CASES, ids=_ids(RESNET_CASES))
def test_imagenet_offline_without_cache_is_a_weights_error(case, keras_home):
    from segsearch.blocks import IMAGENET_FILE

    with pytest.raises(WeightsError) as info:
        _build(case, weights="imagenet")
    message = str(info.value)
    assert "offline" in message
    assert str(keras_home / "models" / IMAGENET_FILE) in message
    assert "weights=None" in message
    assert "Traceback" not in message


def test_imagenet_weights_need_three_channels():
    with pytest.raises(WeightsError, match="3 input channels"):
        _build(BY_KEY["deeplabv3plus"], input_shape=(64, 64, 1), weights="imagenet")


@pytest.mark.parametrize("case", [c for c in CASES if not c.resnet], ids=lambda c: c.key)
def test_dropout_and_no_batch_norm(case):
    from keras import layers

    model = _build(case, dropout=0.2, batch_norm=False)
    kinds = [type(layer) for layer in model.layers]
    assert layers.Dropout in kinds
    assert layers.BatchNormalization not in kinds
    _, y = _forward(model, case.tiny_shape)
    _check_output(y, case.tiny_shape, case.num_classes)


def test_stackwise_widths():
    from segsearch.architectures.resnet50_unet import validate_resnet50_unet

    model = _build(BY_KEY["unet"], stackwise_filters=(3, 5, 7))
    assert model.get_layer("enc2_conv1").filters == 5
    assert model.get_layer("bridge_conv2").filters == 7
    assert model.get_layer("dec1_up").filters == 3
    # decoder widths are given deepest level first, as the article writes them (512, 256, 128, 64)
    args = dict(
        input_shape=(64, 64, 3), num_classes=1, depth=3, filters=64,
        upsampling="transpose", dropout=0.0, batch_norm=True, weights=None, freeze="none",
        freeze_batch_norm=True, stackwise_decoder_filters=(32, 16, 8),
    )
    assert validate_resnet50_unet(args).widths == (8, 16, 32)
    args["stackwise_decoder_filters"] = None
    assert validate_resnet50_unet(args).widths == (64, 128, 256)
