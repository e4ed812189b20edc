"""ResBlockUNetHyperModel: the 3D variant and its upsampling choices."""

from __future__ import annotations

import pytest

kt = pytest.importorskip("keras_tuner")
keras = pytest.importorskip("keras")

from segsearch import hypermodels  # noqa: E402
from segsearch.errors import ConfigError  # noqa: E402

from .conftest import tiny_batch  # noqa: E402


def test_3d_input_builds_3d_network_without_bilinear():
    shape = (8, 16, 16, 1)
    hm = hypermodels.get("resblock_unet", shape, space={"depth": 2, "filters": 4})
    assert {p.name: p for p in hm.params()}["upsampling"].values == ("transpose", "nearest")
    model = hm.build(kt.HyperParameters())
    x, _ = tiny_batch(shape, 2)
    assert model(x).shape == (2, 8, 16, 16, 2)
    with pytest.raises(ConfigError, match="'bilinear' is not a valid value"):
        hypermodels.get("resblock_unet", shape, space={"upsampling": "bilinear"})


def test_blocks_range():
    hm = hypermodels.get("resblock_unet", (64, 64, 1))
    blocks = {p.name: p for p in hm.params()}["blocks"]
    assert (blocks.kind, blocks.min_value, blocks.max_value, blocks.default) == ("int", 1, 3, 1)
    hm = hypermodels.get("resblock_unet", (64, 64, 1), space={"blocks": {"max": 6}})
    assert {p.name: p for p in hm.params()}["blocks"].max_value == 6
