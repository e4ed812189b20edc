"""One shared test case run on every architecture (keras applications / smp BaseModelTester style).

For each registry key: the default build is the network of its preset (the parameter count of
the registry's preset table at the preset's input), the space has the contract's names and
conditions,
tiny non-default configurations (every upsampling mode, several depths, heads) run a forward pass,
one of them trains one step, is saved to .keras and reloaded in safe mode with equal outputs, and
the errors (infeasible size before building, unknown space key) are the documented ones.
"""

from __future__ import annotations

import numpy as np
import pytest

kt = pytest.importorskip("keras_tuner")
keras = pytest.importorskip("keras")

from segsearch import hypermodels  # noqa: E402
from segsearch.blocks import FREEZE_MODES  # noqa: E402
from segsearch.errors import ConfigError, InfeasibleError  # noqa: E402
from segsearch.hypermodels.registry import PRESETS  # noqa: E402

from .conftest import tiny_batch  # noqa: E402

KEYS = ["unet", "resunet", "resnet50_unet", "deeplabv3plus", "resblock_unet"]

#: The preset of each architecture: its input, head and exact parameter count (weights=None).
SEED = {key: (p.input_shape, p.num_classes, p.parameters) for key, p in PRESETS.items()}

TRAINING = ["learning_rate", "optimizer", "weight_decay", "momentum", "loss", "focal_gamma",
            "tversky_alpha"]
NAMES = {
    "unet": ["depth", "filters", "upsampling", "dropout", "batch_norm"],
    "resunet": ["depth", "filters", "upsampling", "dropout", "batch_norm"],
    "resnet50_unet": ["depth", "filters", "upsampling", "dropout", "batch_norm", "encoder",
                      "freeze", "freeze_batch_norm"],
    "deeplabv3plus": ["depth", "aspp_rates", "aspp_filters", "aspp_pooling", "filters",
                      "upsampling", "dropout", "batch_norm", "encoder", "freeze",
                      "freeze_batch_norm"],
    "resblock_unet": ["depth", "filters", "blocks", "upsampling", "dropout", "batch_norm"],
}
DEPTH = {"unet": (2, 5, 4), "resunet": (2, 4, 3), "resnet50_unet": (2, 5, 4),
         "deeplabv3plus": (3, 4, 4), "resblock_unet": (2, 5, 4)}
UPSAMPLING = {"unet": "transpose", "resunet": "nearest", "resnet50_unet": "transpose",
              "deeplabv3plus": "bilinear", "resblock_unet": "nearest"}
CONDITIONS = {"weight_decay": ("optimizer", ["adamw"]), "momentum": ("optimizer", ["sgd"]),
              "focal_gamma": ("loss", ["focal"]), "tversky_alpha": ("loss", ["tversky"]),
              "freeze_batch_norm": ("freeze", [m for m in FREEZE_MODES if m != "none"])}

# (input_shape, num_classes, space): tiny, non-default. The first case of each key trains one step
# and is saved; together they cover every upsampling mode, several depths, both heads, every
# optimizer and every loss.
CASES = {
    "unet": [
        ((32, 32, 1), 1, {"depth": 2, "filters": 4, "upsampling": "nearest", "dropout": 0.2,
                          "batch_norm": False, "optimizer": "sgd", "momentum": 0.5,
                          "loss": "dice"}),
        ((32, 32, 1), 3, {"depth": 3, "filters": 4, "upsampling": "bilinear"}),
        ((32, 32, 2), 1, {"depth": 5, "filters": 4}),
    ],
    "resunet": [
        ((32, 32, 3), 2, {"depth": 2, "filters": 4, "upsampling": "transpose",
                          "optimizer": "rmsprop", "loss": "ce_dice"}),
        ((32, 32, 3), 1, {"depth": 4, "filters": 4, "upsampling": "bilinear",
                          "batch_norm": False}),
    ],
    "resnet50_unet": [
        ((32, 32, 3), 1, {"depth": 2, "filters": 4, "upsampling": "bilinear", "dropout": 0.1,
                          "optimizer": "adamw", "weight_decay": 1e-3, "loss": "focal",
                          "focal_gamma": 1.0}),
        ((32, 32, 3), 3, {"depth": 3, "filters": 4, "upsampling": "nearest",
                          "batch_norm": False}),
    ],
    "deeplabv3plus": [
        ((32, 32, 3), 1, {"depth": 3, "aspp_rates": "1,2,3", "aspp_filters": 8,
                          "aspp_pooling": False, "filters": 8, "upsampling": "nearest",
                          "loss": "tversky", "tversky_alpha": 0.6}),
        ((64, 64, 3), 2, {"depth": 3, "aspp_rates": "2,4,6", "aspp_filters": 8, "filters": 8,
                          "upsampling": "transpose", "dropout": 0.1}),
    ],
    "resblock_unet": [
        ((32, 32, 1), 2, {"depth": 2, "filters": 4, "blocks": 2, "upsampling": "transpose",
                          "loss": "ce"}),
        ((32, 32, 1), 1, {"depth": 3, "filters": 4, "blocks": 3, "upsampling": "bilinear"}),
    ],
}
# An input size no depth of the space can handle at this config (not divisible by 2**depth).
INFEASIBLE = {"unet": (36, 36, 1), "resunet": (36, 36, 3), "resnet50_unet": (36, 36, 3),
              "deeplabv3plus": (36, 36, 3), "resblock_unet": (36, 36, 1)}


@pytest.fixture(scope="module", params=KEYS)
def key(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def seed_build(key):
    """The hypermodel at its seed's reference input, built with HyperParameters() once per key."""
    shape, num_classes, _ = SEED[key]
    hm = hypermodels.get(key, shape)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    yield hm, hp, model
    del model
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def trained(key):
    """The first tiny case of ``key``, after one training step (eager, to skip tracing)."""
    shape, num_classes, space = CASES[key][0]
    hm = hypermodels.get(key, shape, num_classes, space=space, jit_compile=False)
    model = hm.build(kt.HyperParameters())
    x, y = tiny_batch(shape, num_classes)
    before = [np.array(w) for w in model.trainable_weights]
    model.run_eagerly = True
    logs = model.train_on_batch(x, y, return_dict=True)
    return hm, model, x, y, before, logs


def test_default_build_is_the_seed(key, seed_build):
    hm, hp, model = seed_build
    shape, num_classes, count = SEED[key]
    assert model.count_params() == count
    assert model.output_shape == (None, *shape[:2], num_classes)
    assert model.name == key
    assert hm.num_classes == num_classes
    head = model.get_layer("head_act")
    assert head.dtype_policy.compute_dtype == "float32"
    # every declared value is the documented default; the active set is what defaults() says
    assert hp.values == hm.defaults()
    assert hp.values["depth"] == DEPTH[key][2]
    assert hp.values["upsampling"] == UPSAMPLING[key]
    assert hp.values["learning_rate"] == pytest.approx(1e-4)
    assert (hp.values["optimizer"], hp.values["loss"], hp.values["dropout"],
            hp.values["batch_norm"]) == ("adam", "ce", 0.0, True)
    # compiled as the contract says
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert model.loss.name == "ce"
    metrics = model.get_compile_config()["metrics"]
    assert [m["config"]["name"] for m in metrics] == ["dice", "iou", "mean_iou", "pixel_accuracy"]
    assert {m["config"]["num_classes"] for m in metrics} == {num_classes}


def test_space_names_ranges_and_conditions(key, seed_build):
    hm, hp, _ = seed_build
    expected = NAMES[key] + TRAINING
    assert hm.names() == expected
    assert [h.name for h in hp.space] == expected  # declared once each, in order
    by_name = {h.name: h for h in hp.space}
    lo, hi, default = DEPTH[key]
    assert (by_name["depth"].min_value, by_name["depth"].max_value) == (lo, hi)
    assert list(by_name["upsampling"].values) == ["transpose", "nearest", "bilinear"]
    lr = by_name["learning_rate"]
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-5, 1e-2, "log")
    assert list(by_name["optimizer"].values) == ["adam", "adamw", "sgd", "rmsprop"]
    assert list(by_name["loss"].values) == ["ce", "dice", "ce_dice", "focal", "tversky"]
    for name, h in by_name.items():
        if name in CONDITIONS:
            parent, values = CONDITIONS[name]
            assert [(c.name, c.values) for c in h.conditions] == [(parent, values)], name
        else:
            assert not h.conditions, name
    if "freeze" in by_name:  # weights=None: freezing is not part of the space
        assert isinstance(by_name["freeze"], kt.engine.hyperparameters.Fixed)
        assert by_name["freeze"].value == "none"
    for p in hm.params():
        assert p.to_dict()["name"] == p.name


def test_tiny_configurations_forward(key):
    for shape, num_classes, space in CASES[key][1:]:
        hm = hypermodels.get(key, shape, num_classes, space=space)
        model = hm.build(kt.HyperParameters())
        x, _ = tiny_batch(shape, num_classes)
        out = keras.ops.convert_to_numpy(model(x, training=False))
        assert out.shape == (2, *shape[:-1], num_classes), space
        assert out.dtype == np.float32
        assert np.all((out >= 0) & (out <= 1))
        if num_classes > 1:
            np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-4)
        # fixed space values reached the builder: the space is all fixed where given
        assert {p.name: p.kind for p in hm.params() if p.name in space} == \
            {n: "fixed" for n in space}
        keras.backend.clear_session()


def test_one_training_step(key, trained):
    hm, model, x, y, before, logs = trained
    assert np.isfinite(logs["loss"])
    assert {"dice", "iou", "mean_iou", "pixel_accuracy"} <= set(logs)
    after = [np.array(w) for w in model.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    values = dict(CASES[key][0][2])
    opt = {"sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop,
           "adamw": keras.optimizers.AdamW}.get(values.get("optimizer"), keras.optimizers.Adam)
    assert type(model.optimizer) is opt
    assert model.loss.name == values.get("loss", "ce")


def test_save_and_reload_in_safe_mode(key, trained, tmp_path):
    hm, model, x, y, _, _ = trained
    path = tmp_path / f"{key}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # no custom_objects
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)), rtol=1e-5, atol=1e-6)
    assert type(loaded.loss) is type(model.loss)
    assert loaded.loss.get_config() == model.loss.get_config()


def test_infeasible_size_raises_before_building(key, monkeypatch):
    def must_not_build(*args, **kwargs):  # pragma: no cover - the point is that it is not called
        raise AssertionError("a layer was made before the size check")

    monkeypatch.setattr(keras, "Input", must_not_build)  # every builder starts with keras.Input
    hm = hypermodels.get(key, INFEASIBLE[key])
    with pytest.raises(InfeasibleError, match="36"):
        hm.build(kt.HyperParameters())


def test_unknown_space_key_names_the_closest(key):
    with pytest.raises(ConfigError) as info:
        hypermodels.get(key, SEED[key][0], space={"dpeth": 3}, where="spaces/x.yaml: space")
    msg = str(info.value)
    assert msg.startswith("spaces/x.yaml: space: unknown hyperparameter")
    assert "did you mean 'depth'" in msg and "learning_rate" in msg


def test_bad_space_value_names_where(key):
    with pytest.raises(ConfigError, match=r"^space\.upsampling: 'bicubic' is not a valid value"):
        hypermodels.get(key, SEED[key][0], space={"upsampling": "bicubic"})
    with pytest.raises(ConfigError, match=r"^space\.depth: min must be <= max"):
        hypermodels.get(key, SEED[key][0], space={"depth": {"min": 4, "max": 2}})
