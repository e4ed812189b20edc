"""train.mixed_precision: auto picks the policy by the GPU; trials build under it, head float32."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segsearch.architectures import build_unet
from segsearch.engines.trial import TrainingContext, TrialTask, run_trial
from segsearch.errors import ConfigError, InfeasibleError
from segsearch.losses import get as get_loss
from segsearch.precision import policy_name
from segsearch.spacefile import TrainConfig


def test_policy_names():
    assert policy_name("auto", None) == "float32"  # CPU: off
    assert policy_name("auto", (9, 0)) == "mixed_bfloat16"  # H100 / H200
    assert policy_name("auto", (8, 0)) == "mixed_bfloat16"  # A100
    assert policy_name("auto", (7, 5)) == "mixed_float16"  # T4: float16, loss scaling
    assert policy_name(True, (9, 0)) == "mixed_float16"  # true keeps its meaning
    assert policy_name(False, (9, 0)) == "float32"
    assert policy_name("mixed_bfloat16", None) == "mixed_bfloat16"
    assert policy_name("auto") == "float32"  # this machine has no GPU
    with pytest.raises(ValueError, match="mixed_precision"):
        policy_name("bf16", None)


def test_config_values():
    assert TrainConfig().mixed_precision == "auto"
    for value in (True, False, "auto", "mixed_bfloat16", "mixed_float16"):
        assert TrainConfig(mixed_precision=value).mixed_precision == value
    with pytest.raises(ConfigError, match="train.mixed_precision.*'bf16'.*mixed_bfloat16"):
        TrainConfig(mixed_precision="bf16")


@pytest.mark.parametrize("setting,compute", [("mixed_bfloat16", "bfloat16"),
                                             (True, "float16"), ("auto", "float32")])
def test_trial_builds_under_the_policy_with_a_float32_head(tmp_path, setting, compute):
    seen = {}

    def build():
        seen["policy"] = keras.mixed_precision.dtype_policy().name
        model = build_unet((32, 32, 1), 3, depth=2, filters=4)
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        seen["convs"] = {layer.compute_dtype for layer in convs[:-1]}
        seen["weights"] = {w.dtype for layer in convs for w in layer.weights}
        seen["head"] = (convs[-1].compute_dtype, model.get_layer("head_act").compute_dtype)
        out = model(np.zeros((1, 32, 32, 1), np.float32))
        seen["output"] = keras.backend.standardize_dtype(out.dtype)
        loss = get_loss("ce_dice", 3)(np.zeros((1, 32, 32, 1), np.float32), out)
        seen["loss"] = keras.backend.standardize_dtype(loss.dtype)
        raise InfeasibleError("checked: nothing to train")

    context = TrainingContext(train_data=None, val_data=None, study_dir=tmp_path,
                              mixed_precision=setting)
    before = keras.mixed_precision.dtype_policy().name
    outcome = run_trial(context, build, TrialTask(number=0, out_dir=tmp_path / "t", epochs=1))
    assert outcome.state == "infeasible"
    assert keras.mixed_precision.dtype_policy().name == before  # restored after the trial
    assert seen["convs"] == {compute}
    assert seen["weights"] == {"float32"}
    assert seen["head"] == ("float32", "float32")
    assert seen["output"] == seen["loss"] == "float32"
