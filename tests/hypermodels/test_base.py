"""SegmentationHyperModel and MultiArchitectureHyperModel: training params, compile, spaces,
freezing without weights, mixed precision, keras-tuner embedding, multi-architecture search."""

from __future__ import annotations

import numpy as np
import pytest

kt = pytest.importorskip("keras_tuner")
keras = pytest.importorskip("keras")

from segsearch import hypermodels, losses  # noqa: E402
from segsearch.errors import ConfigError  # noqa: E402
from segsearch.hypermodels.base import make_loss, make_optimizer, training_params  # noqa: E402

from .conftest import tiny_batch  # noqa: E402

TINY = {"depth": 2, "filters": 4}


def test_training_params_defaults_and_conditions():
    by_name = {p.name: p for p in training_params()}
    assert by_name["learning_rate"].describe() == "float 1e-05..0.01 (log)"
    assert by_name["learning_rate"].default == 1e-4
    assert by_name["optimizer"].values == ("adam", "adamw", "sgd", "rmsprop")
    assert by_name["momentum"].parent_values == ("sgd",)
    assert by_name["weight_decay"].parent_values == ("adamw",)
    assert by_name["focal_gamma"].parent_values == ("focal",)
    assert by_name["tversky_alpha"].parent_values == ("tversky",)


def test_make_optimizer_and_loss():
    opt = make_optimizer("sgd", 0.01, momentum=0.5)
    assert isinstance(opt, keras.optimizers.SGD) and opt.momentum == 0.5
    opt = make_optimizer("adamw", 0.01, weight_decay=0.02)
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == 0.02
    assert isinstance(make_optimizer("rmsprop", 0.01), keras.optimizers.RMSprop)
    with pytest.raises(ConfigError, match="did you mean 'adam'"):
        make_optimizer("adm", 0.1)
    loss = make_loss("tversky", 1, tversky_alpha=0.2)
    assert isinstance(loss, losses.TverskyLoss) and (loss.alpha, loss.beta) == (0.2, 0.8)
    loss = make_loss("focal", 3, focal_gamma=1.5)
    assert isinstance(loss, losses.FocalLoss) and loss.gamma == 1.5 and loss.num_classes == 3


def test_space_overrides_training_params_and_defaults():
    hm = hypermodels.get("unet", (32, 32, 1), space={
        "learning_rate": {"min": "1e-4", "max": 1e-3}, "optimizer": ["sgd", "adam"],
        "momentum": {"min": 0.8, "max": 0.95}, "loss": "dice", "filters": [4, 8]})
    by_name = {p.name: p for p in hm.params()}
    assert (by_name["learning_rate"].min_value, by_name["learning_rate"].default) == (1e-4, 1e-4)
    assert by_name["optimizer"].default == "adam"  # the seed default, still a choice
    assert by_name["loss"].kind == "fixed"
    assert by_name["filters"].default == 4  # 64 is no longer a choice: the first value
    assert hm.defaults()["filters"] == 4 and "momentum" not in hm.defaults()
    hp = kt.HyperParameters()
    hp.Fixed("optimizer", "sgd")  # pre-populated by an engine: momentum becomes active
    model = hm.build(hp)
    assert hp.values["momentum"] == pytest.approx(0.9)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.loss.name == "dice"


@pytest.mark.parametrize("key", ["resnet50_unet", "deeplabv3plus"])
def test_freeze_without_weights_is_refused(key):
    with pytest.raises(ConfigError, match=r"^space\.freeze: freezing the encoder needs pretrained"):
        hypermodels.get(key, (64, 64, 3), space={"freeze": "stage2"})
    with pytest.raises(ConfigError, match="weights='imagenet'"):
        hypermodels.get(key, (64, 64, 3), space={"freeze": ["none", "all"]})
    # a freeze value forced on the hp (e.g. by a pre-populated space) is refused at build time
    hm = hypermodels.get(key, (64, 64, 3))
    hp = kt.HyperParameters()
    hp.Fixed("freeze", "all")
    with pytest.raises(ConfigError, match="freeze='all' needs pretrained weights"):
        hm.build(hp)


def test_weights_only_for_resnet_encoders():
    with pytest.raises(ConfigError, match="unet has no pretrained encoder"):
        hypermodels.get("unet", (32, 32, 1), weights="imagenet")


def test_input_shape_and_num_classes_checked_when_made():
    with pytest.raises(ConfigError, match=r"^space: unet needs input_shape \(H, W, C\)"):
        hypermodels.get("unet", (8, 32, 32, 1))
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 1"):
        hypermodels.get("unet", (32, 32, 1), 0)


def test_mixed_precision_head_float32():
    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        hm = hypermodels.get("unet", (32, 32, 1), space=TINY, jit_compile=False)
        model = hm.build(kt.HyperParameters())
        x, y = tiny_batch((32, 32, 1), 1)
        assert model.get_layer("enc1_conv1").compute_dtype == "float16"
        out = model(x, training=False)
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        model.run_eagerly = True
        logs = model.train_on_batch(x, y, return_dict=True)
        assert np.isfinite(logs["loss"]) and np.isfinite(logs["dice"])
    finally:
        keras.mixed_precision.set_dtype_policy(policy)


# ------------------------------------------------------------------ multi-architecture
@pytest.fixture(scope="module")
def multi():
    return hypermodels.get_multi(
        ["unet", "resblock_unet"], (32, 32, 1), 1,
        spaces={"unet": {"depth": 2, "filters": 4}, "resblock_unet": {"depth": 2, "filters": 4}})


def test_multi_default_builds_first_architecture(multi):
    hp = kt.HyperParameters()
    model = multi.build(hp)
    assert model.name == "unet" and model.output_shape == (None, 32, 32, 1)
    assert hp.values["architecture"] == "unet"
    assert hp.values == multi.defaults()
    names = [h.name for h in hp.space]
    assert names[0] == "architecture"
    assert "unet/depth" in names and "resblock_unet/blocks" in names
    assert "resblock_unet/blocks" not in hp.values  # inactive
    by_name = {h.name: h for h in hp.space}
    assert [(c.name, c.values) for c in by_name["unet/upsampling"].conditions] == [
        ("architecture", ["unet"])]
    assert [(c.name, c.values) for c in by_name["resblock_unet/momentum"].conditions] == [
        ("architecture", ["resblock_unet"]), ("resblock_unet/optimizer", ["sgd"])]
    assert {p.name for p in multi.params()} == set(names)


def test_multi_builds_the_chosen_architecture(multi):
    hp = kt.HyperParameters()
    hp.Fixed("architecture", "resblock_unet")
    model = multi.build(hp)
    assert model.name == "resblock_unet"
    assert model.output_shape == (None, 32, 32, 1)  # num_classes=1 for every architecture
    assert hp.values["resblock_unet/blocks"] == 1
    assert not any(k.startswith("unet/") for k in hp.values)
    x, _ = tiny_batch((32, 32, 1), 1)
    assert model(x).shape == (2, 32, 32, 1)


def test_multi_space_populates_a_tuner(multi, tmp_path):
    tuner = kt.RandomSearch(multi, objective=kt.Objective("val_dice", "max"), max_trials=3,
                            seed=1, directory=str(tmp_path), project_name="multi")
    space = {h.name for h in tuner.oracle.get_space().space}
    assert {"architecture", "unet/filters", "resblock_unet/blocks",
            "resblock_unet/tversky_alpha"} <= space
    trial = tuner.oracle.create_trial("tuner0")
    arch = trial.hyperparameters.values["architecture"]
    assert all(k == "architecture" or k.startswith(arch + "/")
               for k in trial.hyperparameters.values)


def test_multi_errors():
    with pytest.raises(ConfigError, match="did you mean 'unet'"):
        hypermodels.get_multi(["unet", "unte"], (32, 32, 1))
    with pytest.raises(ConfigError, match=r"architecture in spaces 'resunet'"):
        hypermodels.get_multi(["unet"], (32, 32, 1), spaces={"resunet": {}})
    with pytest.raises(ConfigError, match=r"^space\.unet: unknown hyperparameter"):
        hypermodels.get_multi(["unet"], (32, 32, 1), spaces={"unet": {"dept": 2}})


def test_feasibility_of_the_seed_and_of_the_space():
    # 40x40: the seed's depth 4 (stride 16) cannot be built, depth 3 (stride 8) can
    hm = hypermodels.get("unet", (40, 40, 1), space={"depth": [2, 3, 4], "filters": 4})
    assert "not divisible by 16" in hm.seed_feasibility()
    assert hm.feasibility() is None
    fits = hypermodels.get("unet", (48, 48, 1), space={"depth": [3, 4]})
    assert fits.seed_feasibility() is None and fits.feasibility() is None
    never = hypermodels.get("unet", (32, 32, 1), space={"depth": 40})
    assert "smaller than the total stride" in never.feasibility()
    multi = hypermodels.get_multi(["unet", "resunet"], (40, 40, 1),
                                  spaces={"unet": {"depth": 4}, "resunet": {"depth": [2, 3]}})
    assert multi.seed_feasibility() is not None and multi.feasibility() is None


# ------------------------------------------------------------------------------ class weights
def test_class_weights_is_declared_only_when_used_and_searched_like_the_loss():
    assert "class_weights" not in hypermodels.get("unet", (32, 32, 1), 1, space=TINY).names()
    hm = hypermodels.get("unet", (32, 32, 1), 1, space={**TINY, "class_weights": ["none", "auto"]},
                         class_weights={"default": "none", "auto": [0.5, 2.0], "given": None})
    param = {p.name: p for p in hm.params()}["class_weights"]
    assert param.kind == "choice" and param.values == ("none", "auto") and param.default == "none"
    hp = kt.HyperParameters()
    hp.Fixed("class_weights", "auto")
    model = hm.build(hp)
    assert model.loss.class_weights == (0.5, 2.0)
    assert hm.build(kt.HyperParameters()).loss.class_weights is None  # the default: none
    given = hypermodels.get("unet", (32, 32, 1), 2, space=TINY, class_weights=[1, 4])
    assert given.defaults()["class_weights"] == "given"
    assert given.build(kt.HyperParameters()).loss.class_weights == (1.0, 4.0)


def test_class_weights_auto_without_its_weights_and_given_without_a_list():
    hm = hypermodels.get("unet", (32, 32, 1), 1, space=TINY, class_weights="auto")
    with pytest.raises(ConfigError, match="class_weights 'auto': the weights are not known"):
        hm.build(kt.HyperParameters())
    with pytest.raises(ConfigError, match="'given' needs train.class_weights"):
        hypermodels.get("unet", (32, 32, 1), 1, space={**TINY, "class_weights": "given"})
    with pytest.raises(ConfigError, match="class_weights: 3 weights but binary masks"):
        hypermodels.get("unet", (32, 32, 1), 1, space=TINY,
                        class_weights=[1, 2, 3]).build(kt.HyperParameters())
