"""DeepLabV3PlusHyperModel: ASPP-rate entries, infeasible rates, freezing with weights."""

from __future__ import annotations

import pytest

kt = pytest.importorskip("keras_tuner")
keras = pytest.importorskip("keras")

from segsearch import hypermodels  # noqa: E402
from segsearch.errors import ConfigError, InfeasibleError  # noqa: E402

from .conftest import tiny_batch  # noqa: E402

TINY = {"depth": 3, "aspp_filters": 8, "filters": 8}


def test_aspp_rates_choices_and_entries():
    hm = hypermodels.get("deeplabv3plus", (64, 64, 3))
    rates = {p.name: p for p in hm.params()}["aspp_rates"]
    assert rates.values == ("6,12,18", "12,24,36", "3,6,9", "2,4,6")
    assert rates.default == "6,12,18"
    hm = hypermodels.get("deeplabv3plus", (64, 64, 3),
                         space={"aspp_rates": [[1, 2, 3], "2,4,6", [4, 8]]})
    assert {p.name: p for p in hm.params()}["aspp_rates"].values == ("1,2,3", "2,4,6", "4,8")
    hm = hypermodels.get("deeplabv3plus", (64, 64, 3), space={"aspp_rates": {"fixed": [1, 2]}})
    assert {p.name: p for p in hm.params()}["aspp_rates"].default == "1,2"


@pytest.mark.parametrize("entry,match", [
    ([6, 12, 18], "a list gives the choices"),
    ("6;12;x", "comma-separated positive integers"),
    (["6,6,12"], "distinct"),
    ("0,1", "comma-separated positive integers|>= 1"),
])
def test_bad_aspp_rates(entry, match):
    with pytest.raises(ConfigError, match=match) as info:
        hypermodels.get("deeplabv3plus", (64, 64, 3), space={"aspp_rates": entry})
    assert str(info.value).startswith("space.aspp_rates: ")


def test_rates_too_large_for_the_feature_map_are_infeasible():
    # 32x32 input, depth 3 (stride 8): a 4x4 map, so the seed's rates 6, 12, 18 cannot work
    hm = hypermodels.get("deeplabv3plus", (32, 32, 3), space=TINY)
    with pytest.raises(InfeasibleError, match="ASPP rate"):
        hm.build(kt.HyperParameters())


def test_freeze_stage2_with_weights(resnet50_weights):
    hm = hypermodels.get("deeplabv3plus", (32, 32, 3), weights=str(resnet50_weights),
                         space={**TINY, "aspp_rates": "1,2,3", "freeze": "stage2",
                                "freeze_batch_norm": False})
    model = hm.build(kt.HyperParameters())
    assert model.get_layer("conv2_block2_1_conv").trainable is False
    assert model.get_layer("conv2_block2_1_bn").trainable is True
    assert model.get_layer("conv3_block1_1_conv").trainable is True
    x, _ = tiny_batch((32, 32, 3), 1)
    assert model(x).shape == (2, 32, 32, 1)
