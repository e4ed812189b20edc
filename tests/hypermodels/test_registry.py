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
    with pytest.raises(ConfigError, match="registered twice"):
        hypermodels.register("unet", "segsearch.hypermodels.resunet:ResUNetHyperModel")
    assert hypermodels.HYPERMODELS["unet"].endswith(":UNetHyperModel")


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
    with pytest.raises(ConfigError, match="unknown option 'jit_compil'; did you mean 'jit_compile'"):
        hypermodels.get("unet", (64, 64, 1), jit_compil=True)
