"""Registry and pre-build checks: no Keras import, no layer built, messages that say the fix."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from segsearch.architectures._checks import parse_rates
from segsearch.errors import ConfigError, InfeasibleError, WeightsError
from segsearch.hypermodels.registry import ARCHITECTURES, PRESETS, check_input_size, register, spec

BUILDERS = {key: s.builder for key, s in ARCHITECTURES.items()}


def test_registry_keys():
    assert list(BUILDERS) == ["unet", "resunet", "resnet50_unet", "deeplabv3plus", "resblock_unet"]
    for key, s in ARCHITECTURES.items():
        assert s.builder.__name__ == f"build_{key}" and s.validate.__name__ == f"validate_{key}"
        assert PRESETS[key] is s.preset and s.preset.architecture == key


def test_duplicate_key_is_an_error():
    before = dict(ARCHITECTURES)
    with pytest.raises(ConfigError, match="registered twice"):
        register(dataclasses.replace(ARCHITECTURES["unet"], title="another U-Net"))
    assert ARCHITECTURES == before


def test_unknown_architecture_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'resunet'"):
        spec("resunet50")
    with pytest.raises(ConfigError, match="Valid: deeplabv3plus, resblock_unet"):
        check_input_size("deeplab", (64, 64, 3))


def test_importing_builders_does_not_import_keras():
    code = (
        "import sys, segsearch.architectures, segsearch.blocks; "
        "bad = [m for m in ('keras', 'tensorflow', 'optuna', 'keras_tuner') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("key", list(PRESETS))
def test_preset_sizes_are_feasible_and_checked_once_into_a_frozen_object(key):
    args = check_input_size(key, PRESETS[key].input_shape)
    assert args.num_classes == PRESETS[key].num_classes  # the builder's default head
    with pytest.raises(dataclasses.FrozenInstanceError):
        args.depth = 1


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="did you mean 'depth'"):
        check_input_size("unet", (64, 64, 3), dept=3)
    with pytest.raises(ConfigError, match="unknown unet option 'encoder_depth'"):
        check_input_size("unet", (64, 64, 3), **{"encoder_depth": 3})  # renamed: depth


def test_size_not_divisible_message_says_the_fix():
    with pytest.raises(InfeasibleError) as info:
        check_input_size("unet", (100, 100, 3))
    message = str(info.value)
    assert "100x100" in message and "divisible by 16" in message and "depth=4" in message
    assert "such as 96 or 112" in message and "at most 2" in message


def test_size_smaller_than_the_stride():
    with pytest.raises(InfeasibleError, match="such as 32 or 64"):
        check_input_size("resnet50_unet", (16, 16, 3), depth=5)


def test_a_depth_no_sensible_size_allows_suggests_a_smaller_depth_not_a_size():
    expected = (r"smaller than the total stride 1099511627776 \(2\*\*depth with depth=40\); "
                r"use a smaller depth \(at most 5 for 32x32\)$")
    with pytest.raises(InfeasibleError, match=expected):
        check_input_size("unet", (32, 32, 1), depth=40)


def test_unknown_sizes_are_allowed_where_the_network_is_fully_convolutional():
    check_input_size("unet", (None, None, 3))
    check_input_size("resblock_unet", (None, 64, 64, 1))


def test_aspp_rates_larger_than_the_feature_map():
    # 64 / 16 = 4x4 at the ASPP input: rates 6, 12, 18 only ever read padding.
    with pytest.raises(InfeasibleError) as info:
        check_input_size("deeplabv3plus", (64, 64, 3))
    message = str(info.value)
    assert "rate(s) 6, 12, 18" in message and "4x4" in message
    assert "rates below 4" in message and "304x304" in message
    with pytest.raises(InfeasibleError, match=r"rate\(s\) 4 >="):
        check_input_size("deeplabv3plus", (64, 64, 3), aspp_rates="2,4")
    check_input_size("deeplabv3plus", (64, 64, 3), aspp_rates="1,2,3")
    check_input_size("deeplabv3plus", (64, 64, 3), aspp_rates=(1, 2, 4), depth=3)


def test_builder_raises_the_same_before_building():
    with pytest.raises(InfeasibleError, match="ASPP rate"):
        BUILDERS["deeplabv3plus"]((128, 128, 3), aspp_rates=(6, 12, 18))


def test_aspp_needs_a_fixed_size():
    with pytest.raises(InfeasibleError, match="fixed input size"):
        check_input_size("deeplabv3plus", (None, None, 3))


def test_image_pooling_on_a_map_smaller_than_one_pixel():
    from segsearch.architectures._checks import check_aspp

    with pytest.raises(InfeasibleError, match="smaller than 1x1"):
        check_aspp("deeplabv3plus", (8, 8), 4, (), True, min_depth=3)


def test_depth_ranges():
    with pytest.raises(ConfigError, match="depth must be 2..5"):
        check_input_size("resnet50_unet", (64, 64, 3), depth=6)
    with pytest.raises(ConfigError, match="depth must be 3..5"):
        check_input_size("deeplabv3plus", (64, 64, 3), depth=2)
    with pytest.raises(ConfigError, match=">= 1"):
        check_input_size("unet", (64, 64, 3), depth=0)


def test_dimensions():
    with pytest.raises(InfeasibleError, match="3D volumes .* resblock_unet"):
        check_input_size("unet", (16, 16, 16, 1))
    check_input_size("resblock_unet", (16, 16, 16, 1), depth=2)
    with pytest.raises(InfeasibleError, match="2D only"):
        check_input_size(
            "resblock_unet", (16, 16, 16, 1), depth=2, upsampling="bilinear"
        )
    with pytest.raises(ConfigError, match="channel count"):
        check_input_size("unet", (64, 64, None))


def test_bad_values():
    with pytest.raises(ConfigError, match="did you mean 'bilinear'"):
        check_input_size("unet", (64, 64, 3), upsampling="bilinera")
    with pytest.raises(ConfigError, match="freeze mode"):
        check_input_size("resnet50_unet", (64, 64, 3), freeze="stage9")
    with pytest.raises(ConfigError, match="unknown freeze mode 'stage5'"):  # "all" freezes 1..5
        check_input_size("resnet50_unet", (64, 64, 3), freeze="stage5")
    with pytest.raises(ConfigError, match="dropout"):
        check_input_size("unet", (64, 64, 3), dropout=1.5)
    with pytest.raises(ConfigError, match="num_classes"):
        check_input_size("unet", (64, 64, 3), num_classes=0)
    with pytest.raises(ConfigError, match="stackwise_filters needs 5"):
        check_input_size("unet", (64, 64, 3), stackwise_filters=[8, 16])
    with pytest.raises(WeightsError, match="not found"):
        check_input_size("deeplabv3plus", (512, 512, 3), weights="/nonexistent/r50.weights.h5")


def test_parse_rates():
    assert parse_rates("x", "6,12,18") == (6, 12, 18)
    assert parse_rates("x", " 1, 2 ") == (1, 2)
    assert parse_rates("x", "") == ()
    assert parse_rates("x", [3]) == (3,)
    for bad in ("6,a", "6,6", "0,1", [1.5]):
        with pytest.raises(ConfigError, match="aspp_rates"):
            parse_rates("x", bad)
