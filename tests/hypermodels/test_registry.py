"""The registry in segsearch.hypermodels: names, get, unknown keys, duplicates, cheap import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from segsearch import hypermodels
from segsearch.errors import ConfigError

KEYS = ["deeplabv3plus", "resblock_unet", "resnet50_unet", "resunet", "unet"]


def test_names_sorted():
    assert hypermodels.names() == KEYS


def test_import_is_cheap():
    code = ("import sys, segsearch.hypermodels as h; h.names(); "
            "print(any(m in sys.modules for m in ('tensorflow', 'keras', 'keras_tuner')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_architecture_lists_keys_and_closest():
    with pytest.raises(ConfigError) as info:
        hypermodels.get("resunet50", (64, 64, 3), where="spaces/a.yaml: architecture")
    msg = str(info.value)
    assert msg.startswith("spaces/a.yaml: architecture: unknown architecture 'resunet50'")
    assert "did you mean" in msg and ", ".join(KEYS) in msg


def test_duplicate_key_is_an_error():
    from dataclasses import replace

    resunet = hypermodels.ARCHITECTURES["resunet"]
    with pytest.raises(ConfigError, match="key 'resunet' registered twice"):
        hypermodels.register(replace(resunet, title="another"))
    with pytest.raises(ConfigError, match="preset 'resunet' registered twice"):
        hypermodels.register(replace(resunet, key="resunet2",
                                     preset=replace(resunet.preset, architecture="resunet2")))
    assert hypermodels.ARCHITECTURES["unet"].hypermodel.endswith(":UNetHyperModel")
    assert "resunet2" not in hypermodels.ARCHITECTURES


def test_one_table_of_presets():
    """Each architecture has one preset (its article's network); the tests read the table."""
    assert sorted(hypermodels.PRESETS) == KEYS
    for key, preset in hypermodels.PRESETS.items():
        assert preset.architecture == key and preset.parameters > 0
        assert preset.source and "seeds/" not in preset.source  # the article's title
        assert hypermodels.ARCHITECTURES[key].preset is preset


def test_hyperparameters_are_the_builders_keyword_arguments():
    """One name per knob: every architecture hyperparameter is a keyword argument of its builder,
    and its default is the builder's default (so the default build is the preset)."""
    import inspect

    for key, spec in hypermodels.ARCHITECTURES.items():
        signature = inspect.signature(spec.builder).parameters
        weights = "imagenet" if spec.takes_weights else None
        for p in spec.params((64, 64, 3), weights):
            assert p.name in signature, (key, p.name)
            default = signature[p.name].default
            if p.name == "aspp_rates":
                default = ",".join(map(str, default))
            assert p.default == default, (key, p.name)


def test_one_list_of_upsampling_and_freeze_values():
    from segsearch.blocks import FREEZE_MODES, UPSAMPLING_MODES

    assert UPSAMPLING_MODES == ("transpose", "nearest", "bilinear")
    assert FREEZE_MODES == ("none", "all", "stage1", "stage2", "stage3", "stage4")
    by_name = {p.name: p for p in hypermodels.ARCHITECTURES["deeplabv3plus"].params(
        (64, 64, 3), "imagenet")}
    assert by_name["upsampling"].allowed == UPSAMPLING_MODES
    assert by_name["freeze"].values == FREEZE_MODES


def test_classes_keys_and_lazy_attributes():
    pytest.importorskip("keras_tuner")
    for key in KEYS:
        cls = hypermodels.get_class(key)
        assert cls.key == key
        assert getattr(hypermodels, cls.__name__) is cls
    assert hypermodels.SegmentationHyperModel.__name__ == "SegmentationHyperModel"
    with pytest.raises(AttributeError):
        hypermodels.NoSuchHyperModel  # noqa: B018


def test_unknown_option():
    pytest.importorskip("keras_tuner")
    expected = "unknown option 'jit_compil'; did you mean 'jit_compile'"
    with pytest.raises(ConfigError, match=expected):
        hypermodels.get("unet", (64, 64, 1), jit_compil=True)
