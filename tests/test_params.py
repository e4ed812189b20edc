"""Param: declaration on keras-tuner HyperParameters, overrides from YAML entries, to_dict."""

from __future__ import annotations

import subprocess
import sys

import pytest

from segsearch.errors import ConfigError
from segsearch.params import Domain, Param, active_defaults

DEPTH = Param.Int("depth", 2, 5, default=4, help="number of poolings")
LR = Param.Float("learning_rate", 1e-5, 1e-2, default=1e-4, sampling="log")
UPS = Param.Choice("upsampling", ["transpose", "nearest", "bilinear"], default="transpose",
                   closed=True)
FILTERS = Param.Choice("filters", [16, 32, 64], default=64)
BN = Param.Boolean("batch_norm", default=True)
OPT = Param.Choice("optimizer", ["adam", "sgd"], default="adam", closed=True)
MOM = Param.Float("momentum", 0.0, 0.99, default=0.9, parent="optimizer", parent_values=["sgd"])
W = "spaces/unet.yaml: space.x"


def test_import_is_cheap():
    code = (
        "import sys, segsearch.params; "
        "print(any(m in sys.modules for m in ('tensorflow', 'keras', 'keras_tuner', 'optuna')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_declare_on_keras_tuner_with_condition():
    kt = pytest.importorskip("keras_tuner")
    hp = kt.HyperParameters()
    assert DEPTH.declare(hp) == 4
    assert LR.declare(hp) == pytest.approx(1e-4)
    assert UPS.declare(hp) == "transpose"
    assert FILTERS.declare(hp) == 64
    assert BN.declare(hp) is True
    assert Param.Fixed("x", 3).declare(hp) == 3
    assert OPT.declare(hp) == "adam"
    assert MOM.declare(hp) is None  # inactive: optimizer is adam
    names = [h.name for h in hp.space]
    assert names == ["depth", "learning_rate", "upsampling", "filters", "batch_norm", "x",
                     "optimizer", "momentum"]
    mom = hp.space[-1]
    assert mom.conditions[0].name == "optimizer" and mom.conditions[0].values == ["sgd"]
    # the same param declared again is the same hyperparameter (name + conditions)
    hp.values.update(optimizer="sgd", momentum=0.5)  # what an oracle does for a new trial
    assert MOM.declare(hp) == pytest.approx(0.5)
    assert len(hp.space) == 8
    # name scopes apply to the parent as well
    hp2 = kt.HyperParameters()
    with hp2.name_scope("unet"):
        OPT.declare(hp2)
        MOM.declare(hp2)
    assert [h.name for h in hp2.space] == ["unet/optimizer", "unet/momentum"]
    assert hp2.space[1].conditions[0].name == "unet/optimizer"


def test_declared_space_types():
    kt = pytest.importorskip("keras_tuner")
    hp = kt.HyperParameters()
    for p in (DEPTH, LR, UPS, BN):
        p.declare(hp)
    d, lr, u, b = hp.space
    assert isinstance(d, kt.engine.hyperparameters.Int) and (d.min_value, d.max_value) == (2, 5)
    assert isinstance(lr, kt.engine.hyperparameters.Float) and lr.sampling == "log"
    assert isinstance(u, kt.engine.hyperparameters.Choice) and list(u.values) == list(UPS.values)
    assert isinstance(b, kt.engine.hyperparameters.Boolean)


def test_active_defaults():
    assert active_defaults([OPT, MOM, DEPTH]) == {"optimizer": "adam", "depth": 4}
    assert MOM.is_active({"optimizer": "sgd"}) and not MOM.is_active({"optimizer": "adam"})


# ------------------------------------------------------------------ overrides
def test_scalar_fixes():
    p = DEPTH.override(3, W)
    assert (p.kind, p.default) == ("fixed", 3)
    assert UPS.override("nearest", W).default == "nearest"
    assert LR.override("1e-3", W).default == pytest.approx(1e-3)  # YAML reads 1e-3 as a string
    assert LR.override(1, W).default == 1.0 and isinstance(LR.override(1, W).default, float)
    assert BN.override(False, W).default is False
    assert DEPTH.override({"fixed": 2}, W).default == 2


def test_list_gives_choices():
    p = DEPTH.override([2, 3], W)
    assert (p.kind, p.values, p.default) == ("choice", (2, 3), 2)
    p = UPS.override(["nearest", "transpose"], W)
    assert p.values == ("nearest", "transpose") and p.default == "transpose"  # seed kept
    assert UPS.override(["bilinear"], W).kind == "fixed"
    assert BN.override([True, False], W).kind == "boolean"
    p = DEPTH.override({"values": [3, 5], "default": 5}, W)
    assert p.values == (3, 5) and p.default == 5


def test_range_narrow_widen():
    p = DEPTH.override({"min": 2, "max": 3}, W)
    assert (p.kind, p.min_value, p.max_value, p.default) == ("int", 2, 3, 3)  # nearest to seed
    p = DEPTH.override({"low": 3, "high": 6, "default": 5}, W)
    assert (p.min_value, p.max_value, p.default) == (3, 6, 5)
    p = LR.override({"min": "1e-4", "max": 0.1}, W)
    assert p.sampling == "log" and p.min_value == pytest.approx(1e-4)
    p = FILTERS.override({"min": 8, "max": 128, "step": 8}, W)
    assert (p.kind, p.min_value, p.max_value, p.step, p.default) == ("int", 8, 128, 8, 64)
    assert DEPTH.override({"default": 3}, W).default == 3
    assert DEPTH.override({"min": 3, "max": 3}, W).kind == "fixed"


@pytest.mark.parametrize(
    "param,entry,match",
    [
        (DEPTH, {"min": 5, "max": 3}, "min must be <= max, got min=5, max=3"),
        (DEPTH, {"min": 2, "max": 3, "default": 4}, r"default 4 is outside \[2, 3\]"),
        (LR, {"min": 0.0, "max": 1e-2}, "log sampling needs min > 0"),
        (LR, {"min": 1e-5, "max": 1e-2, "sampling": "loggy"}, "sampling must be"),
        (DEPTH, 2.5, "must be an integer, got 2.5"),
        (DEPTH, "four", "must be an integer, got 'four'"),
        (DEPTH, True, "must be an integer, got true"),
        (UPS, "nearst", "did you mean 'nearest'"),
        (UPS, ["nearest", "cubic"], "'cubic' is not a valid value"),
        (UPS, {"min": 1, "max": 2}, "only apply to numbers"),
        (DEPTH, [], "empty list"),
        (DEPTH, [2, 2], "duplicates"),
        (DEPTH, {"values": [2, 3], "default": 4}, "default 4 is not one of the values"),
        (DEPTH, {"maximum": 3}, "unknown key 'maximum'; did you mean 'max'"),
        (DEPTH, {"fixed": 3, "min": 2}, "'fixed' stands alone"),
        (DEPTH, {"min": 2, "low": 2}, "either 'min' or 'low'"),
        (DEPTH, {"values": [2], "min": 1}, "either values or a range"),
        (DEPTH, {"step": 0}, "step must be > 0"),
        (BN, "yes", "must be true or false"),
        (FILTERS, ["a", "b"], "must be an integer"),
        (DEPTH, {}, "empty mapping"),
    ],
)
def test_override_errors_name_where_and_value(param, entry, match):
    with pytest.raises(ConfigError, match=match) as info:
        param.override(entry, W)
    assert str(info.value).startswith(W + ":")


def test_domain_bounds_every_override_and_the_declaration():
    rate = Param.Float("dropout", 0.0, 0.5, default=0.0, domain=Domain(0.0, 1.0, high_open=True))
    assert rate.override(0.9, W).default == 0.9  # wider than the declared range, inside the domain
    assert rate.override({"max": 0.99}, W).max_value == 0.99
    for entry, label in ((1.0, "1.0"), ([0.1, 1.5], "1.5"), ({"min": -0.1}, "min -0.1"),
                         ({"values": [0.2, 2.0]}, "2.0"), ({"fixed": 3}, "3.0")):
        with pytest.raises(ConfigError, match=r"must be in \[0, 1\); ") as info:
            rate.override(entry, W)
        assert str(info.value).startswith(f"{W}: {label} is out of range: dropout"), info.value
    lr = Param.Float("lr", 1e-5, 1e-2, default=1e-4, sampling="log",
                     domain=Domain(0.0, low_open=True))
    with pytest.raises(ConfigError, match="lr must be > 0"):
        lr.override({"min": 0.0, "max": 0.1, "sampling": "linear"}, W)
    filters = Param.Choice("filters", [8, 16], default=8, domain=Domain(1))
    assert filters.override({"min": 1, "max": 4}, W).kind == "int"
    with pytest.raises(ConfigError, match="filters must be >= 1"):
        filters.override(-4, W)
    with pytest.raises(ConfigError, match="must be in \\[2, 5\\]"):  # a declaration outside it
        Param.Int("depth", 1, 4, default=2, domain=Domain(2, 5))
    assert Domain(0.0, low_open=True).describe() == "> 0" and Domain(1).describe() == ">= 1"
    assert not Domain(0.0, 1.0, high_open=True).contains(1.0) and Domain(0.0, 1.0).contains(1.0)


def test_override_keeps_condition_and_name():
    p = MOM.override({"min": 0.5, "max": 0.95}, W)
    assert (p.name, p.parent, p.parent_values) == ("momentum", "optimizer", ("sgd",))


def test_invalid_specs_refused():
    with pytest.raises(ConfigError):
        Param.Int("d", 5, 2, default=3)
    with pytest.raises(ConfigError):
        Param.Choice("c", ["a", 1], default="a")
    with pytest.raises(ConfigError):
        Param("p", "int", 1, 0, 2, parent="x")  # parent without parent_values


def test_to_dict():
    assert DEPTH.to_dict() == {"name": "depth", "kind": "int", "default": 4, "min_value": 2,
                               "max_value": 5, "step": None, "sampling": "linear",
                               "help": "number of poolings"}
    assert MOM.to_dict()["parent_values"] == ["sgd"]
    assert UPS.to_dict()["values"] == ["transpose", "nearest", "bilinear"]
    assert BN.to_dict()["values"] == [False, True]
    assert Param.Fixed("x", 3).to_dict() == {"name": "x", "kind": "fixed", "default": 3}
