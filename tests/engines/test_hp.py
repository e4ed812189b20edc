"""The hp bridge: keras-tuner declarations answered by an Optuna trial."""

from __future__ import annotations

import keras_tuner
import optuna
import pytest

from segsearch.engines.hp import (
    OptunaHyperParameters,
    declare,
    neighbour_values,
    seed_neighbours,
    seed_values,
    space_signature,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _declare_all(hp):
    """Every hp type, a conditional scope, a name scope."""
    values = {
        "depth": hp.Int("depth", 2, 5, default=4),
        "filters": hp.Int("filters", 8, 64, step=2, sampling="log", default=16),
        "stride": hp.Int("stride", 1, 7, step=3, default=1),
        "lr": hp.Float("lr", 1e-5, 1e-2, sampling="log", default=1e-4),
        "dropout": hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.0),
        "optimizer": hp.Choice("optimizer", ["adam", "sgd"], default="adam"),
        "bn": hp.Boolean("bn", default=True),
        "act": hp.Fixed("act", "relu"),
    }
    with hp.conditional_scope("optimizer", ["sgd"]):
        values["momentum"] = hp.Float("momentum", 0.0, 0.99, default=0.9)
    with hp.name_scope("decoder"):
        values["decoder/up"] = hp.Choice("up", ["nearest", "bilinear"], default="nearest")
    return values


def test_every_type_maps_to_its_optuna_distribution():
    study = optuna.create_study()
    trial = study.ask()
    values = _declare_all(OptunaHyperParameters(trial))
    dists = trial.distributions
    assert isinstance(dists["depth"], optuna.distributions.IntDistribution)
    assert (dists["depth"].low, dists["depth"].high, dists["depth"].log) == (2, 5, False)
    # log with a factor step: keras-tuner's grid 8, 16, 32, 64
    assert dists["filters"].choices == (8, 16, 32, 64)
    assert (dists["stride"].low, dists["stride"].high, dists["stride"].step) == (1, 7, 3)
    assert dists["lr"].log and (dists["lr"].low, dists["lr"].high) == (1e-5, 1e-2)
    assert dists["dropout"].step == pytest.approx(0.1)
    assert dists["optimizer"].choices == ("adam", "sgd")
    assert dists["bn"].choices == (False, True)
    assert "act" not in dists and values["act"] == "relu"  # fixed: not suggested
    assert "decoder/up" in dists  # name scopes give the stored name
    for name, value in values.items():
        if name in dists:
            assert trial.params[name] == value


def test_conditional_hyperparameter_is_suggested_only_when_active():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        hp = OptunaHyperParameters(trial)
        values = _declare_all(hp)
        if values["optimizer"] == "sgd":
            assert 0.0 <= values["momentum"] <= 0.99 and "momentum" in trial.params
        else:
            assert values["momentum"] is None and "momentum" not in trial.params
            assert "momentum" not in hp.values
        assert any(p.name == "momentum" for p in hp.space)  # registered either way
        seen.add(values["optimizer"])
        study.tell(trial, 0.0)
    assert seen == {"adam", "sgd"}


def test_fixed_trial_builds_the_same_values_as_keras_tuner():
    kt_hp = keras_tuner.HyperParameters()
    kt_values = _declare_all(kt_hp)
    seeds = {name: value for name, value in kt_hp.values.items() if name != "act"}
    values = _declare_all(OptunaHyperParameters(optuna.trial.FixedTrial(seeds)))
    assert values == kt_values

    chosen = dict(seeds, optimizer="sgd", momentum=0.5, depth=3)
    values = _declare_all(OptunaHyperParameters(optuna.trial.FixedTrial(chosen)))
    assert (values["optimizer"], values["momentum"], values["depth"]) == ("sgd", 0.5, 3)


def test_same_name_declared_twice_keeps_its_value():
    trial = optuna.create_study().ask()
    hp = OptunaHyperParameters(trial)
    first = hp.Int("depth", 2, 5, default=4)
    assert hp.Int("depth", 2, 5, default=4) == first
    assert hp.get("depth") == first


class _Declaring(keras_tuner.HyperModel):
    def declare(self, hp):
        return _declare_all(hp)

    def build(self, hp):  # pragma: no cover - declare() means build is never needed
        raise AssertionError("declare() should be used instead of building")


def test_seed_values_are_the_defaults_of_the_tunable_active_hyperparameters():
    values = seed_values(_Declaring())
    assert values == {"depth": 4, "filters": 16, "stride": 1, "lr": 1e-4, "dropout": 0.0,
                      "optimizer": "adam", "bn": True, "decoder/up": "nearest"}
    study = optuna.create_study()
    study.enqueue_trial(values)
    trial = study.ask()
    assert _declare_all(OptunaHyperParameters(trial)) == _declare_all(keras_tuner.HyperParameters())


def test_space_signature_sees_a_changed_range_but_not_a_changed_default():
    base = space_signature(declare(_Declaring()))

    class Narrower(_Declaring):
        def declare(self, hp):
            hp.Int("depth", 2, 4, default=4)
            return _declare_all(hp)

    class OtherDefault(_Declaring):
        def declare(self, hp):
            hp.Int("depth", 2, 5, default=3)
            return _declare_all(hp)

    assert space_signature(declare(OtherDefault())) == base
    assert space_signature(declare(Narrower())) != base


def test_segsearch_hypermodel_builds_through_the_adapter():
    from segsearch import hypermodels

    hm = hypermodels.get("unet", (32, 32, 1), 1, space={"filters": [4, 8], "depth": {"max": 2}},
                         jit_compile=False)
    seeds = seed_values(hm)
    assert seeds == {k: v for k, v in hm.defaults().items() if k in seeds}
    trial = optuna.create_study().ask()
    model = hm.build(OptunaHyperParameters(trial))
    assert model.output_shape == (None, 32, 32, 1)
    assert set(trial.params) <= set(hm.names())


def test_multi_architecture_names_are_scoped_and_conditional():
    from segsearch import hypermodels

    hm = hypermodels.get_multi(["unet", "resunet"], (32, 32, 1), 1,
                               spaces={"unet": {"filters": 4}, "resunet": {"filters": 4}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(4):
        trial = study.ask()
        hp = OptunaHyperParameters(trial)
        arch, _ = hm.declare(hp)
        other = "resunet" if arch == "unet" else "unet"
        assert f"{arch}/depth" in trial.params and f"{other}/depth" not in trial.params
        study.tell(trial, 0.0)


def test_learning_rate_neighbours_of_the_seed():
    class WithRate(_Declaring):
        def declare(self, hp):
            values = _declare_all(hp)
            values["learning_rate"] = hp.Float("learning_rate", 1e-5, 5e-4, sampling="log",
                                               default=1e-4)
            return values

    seeds = seed_values(WithRate())
    first, second = seed_neighbours(WithRate())
    assert first == dict(seeds, learning_rate=pytest.approx(1e-4 * 10**0.5))
    assert second == dict(seeds, learning_rate=5e-4)  # 1e-3 clipped to the range's top
    assert "act" not in first  # fixed values are not enqueued
    # a factor that lands where another did gives nothing more; no learning rate, no neighbours
    assert len(neighbour_values(declare(WithRate()), (10.0, 20.0))) == 1
    assert neighbour_values(declare(_Declaring())) == []
