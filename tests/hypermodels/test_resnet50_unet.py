"""ResNet50UNetHyperModel: weights from a local file, every freeze mode, frozen layers stay put."""

from __future__ import annotations

import numpy as np
import pytest

kt = pytest.importorskip("keras_tuner")
keras = pytest.importorskip("keras")

from segsearch import hypermodels  # noqa: E402
from segsearch.blocks import encoder_stage  # noqa: E402
from segsearch.errors import ConfigError  # noqa: E402

from .conftest import tiny_batch  # noqa: E402

SHAPE = (32, 32, 3)


def frozen_stages(model) -> dict[int, set[bool]]:
    """stage -> set of `trainable` flags of its non-BN layers with weights."""
    out: dict[int, set[bool]] = {}
    for layer in model.layers:
        stage = encoder_stage(layer.name)
        if stage is None or not layer.weights or isinstance(layer,
                                                            keras.layers.BatchNormalization):
            continue
        out.setdefault(stage, set()).add(layer.trainable)
    return out


def test_weights_make_freeze_searchable(resnet50_weights):
    hm = hypermodels.get("resnet50_unet", SHAPE, weights=str(resnet50_weights))
    by_name = {p.name: p for p in hm.params()}
    assert by_name["freeze"].values == ("none", "all", "stage1", "stage2", "stage3", "stage4")
    assert by_name["freeze"].default == "none"
    assert by_name["freeze_batch_norm"].parent == "freeze"


@pytest.mark.parametrize("freeze,depth,last", [("all", 2, 5), ("stage3", 3, 3), ("stage4", 4, 4)])
def test_freeze_modes(resnet50_weights, resnet50_conv1_kernel, freeze, depth, last):
    hm = hypermodels.get("resnet50_unet", SHAPE, weights=str(resnet50_weights),
                         space={"depth": depth, "filters": 4, "freeze": freeze})
    hp = kt.HyperParameters()
    model = hm.build(hp)
    assert hp.values["freeze_batch_norm"] is True
    np.testing.assert_array_equal(np.array(model.get_layer("conv1_conv").kernel),
                                  resnet50_conv1_kernel)  # loaded from the file
    stages = frozen_stages(model)
    for stage, flags in stages.items():
        assert flags == ({False} if stage <= last else {True}), (stage, flags)
    assert max(stages) == depth  # the model holds the encoder up to its bridge stage
    assert all(layer.trainable for layer in model.layers if layer.name.startswith(("dec", "head")))
    x, _ = tiny_batch(SHAPE, 1)
    assert model(x).shape == (2, 32, 32, 1)


def test_stage1_batch_norm_free_one_step_keeps_frozen_weights(resnet50_weights):
    hm = hypermodels.get("resnet50_unet", SHAPE, weights=str(resnet50_weights), jit_compile=False,
                         space={"depth": 2, "filters": 4, "freeze": "stage1",
                                "freeze_batch_norm": False, "optimizer": "sgd",
                                "learning_rate": 0.1})
    model = hm.build(kt.HyperParameters())
    assert model.get_layer("conv1_bn").trainable is True  # freeze_batch_norm=False
    assert frozen_stages(model) == {1: {False}, 2: {True}}
    frozen = np.array(model.get_layer("conv1_conv").kernel)
    free = np.array(model.get_layer("conv2_block1_1_conv").kernel)
    x, y = tiny_batch(SHAPE, 1)
    model.run_eagerly = True
    model.train_on_batch(x, y)
    np.testing.assert_array_equal(np.array(model.get_layer("conv1_conv").kernel), frozen)
    assert not np.array_equal(np.array(model.get_layer("conv2_block1_1_conv").kernel), free)


def test_missing_weights_file_is_a_weights_error(tmp_path):
    from segsearch.errors import WeightsError

    # found when the hypermodel is made (load_config does that), before a study exists
    with pytest.raises(WeightsError, match="not found"):
        hypermodels.get("resnet50_unet", SHAPE, weights=str(tmp_path / "nope.weights.h5"),
                        space={"depth": 2, "filters": 4})


def test_a_space_makes_the_encoder_a_choice():
    hm = hypermodels.get("resnet50_unet", (64, 64, 3),
                         space={"encoder": ["resnet50", "mobilenetv3small"], "depth": 3,
                                "filters": 4})
    by_name = {p.name: p for p in hm.params()}
    assert by_name["encoder"].kind == "choice"
    assert by_name["encoder"].values == ("resnet50", "mobilenetv3small")
    assert by_name["encoder"].default == "resnet50"
    assert hypermodels.get("resnet50_unet", SHAPE).defaults()["encoder"] == "resnet50"
    model = hm.build_from_values({"encoder": "mobilenetv3small"})
    assert model.get_layer("expanded_conv_project")  # MobileNetV3's own layer names
    assert model.output_shape == (None, 64, 64, 1)
    with pytest.raises(ConfigError, match="efficientnetb0"):
        hypermodels.get("resnet50_unet", SHAPE, space={"encoder": ["efficientnet_b0"]})
