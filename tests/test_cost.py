"""segsearch.cost: parameters, FLOPs counted by hand on tiny models, latency as a median."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segsearch import cost

L = keras.layers


def _tiny() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Activation("relu", name="relu")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    up = L.Conv2DTranspose(2, 2, strides=2, use_bias=False, name="up")(x)
    dw = L.DepthwiseConv2D(3, padding="same", name="dw")(up)
    x = L.Add(name="add")([up, dw])
    x = L.Conv2D(4, 1, groups=2, name="grouped")(x)
    x = L.Concatenate(name="cat")([x, up])
    outputs = L.Dense(1, name="head")(x)
    return keras.Model(inputs, outputs)


def test_flops_match_a_hand_count() -> None:
    expected = {
        "conv": 8 * 8 * 4 * (2 * 3 * 3 * 3 + 1),  # output elements * (2 * k*k*c_in + bias)
        "bn": 2 * 8 * 8 * 4,                      # scale and shift per element
        "relu": 0,
        "pool": 4 * 4 * 4 * (2 * 2),              # the 2x2 window per output element
        "up": 2 * (2 * 2) * 4 * 2 * (4 * 4),      # 2 * k*k * c_in * filters per input position
        "dw": 8 * 8 * 2 * (2 * 3 * 3 + 1),        # 2 * k*k per output element + bias
        "add": 8 * 8 * 2,                         # one add per output element
        "grouped": 8 * 8 * 4 * (2 * 1 * 1 + 1),   # c_in / groups = 1 input channel per output
        "cat": 0,
        "head": 8 * 8 * 1 * (2 * 6 + 1),          # 2 * input features + bias per output element
    }
    assert cost.count_flops(_tiny()) == sum(expected.values()) == 20032


def test_flops_of_separable_and_1d_layers() -> None:
    model = keras.Sequential([keras.Input((8, 8, 2)), L.SeparableConv2D(3, 3)])
    # depthwise 2*9 per element of 6x6x2, pointwise 2*2 per output of 6x6x3, bias 6x6x3
    assert cost.count_flops(model) == 2 * 9 * 6 * 6 * 2 + 2 * 2 * 6 * 6 * 3 + 6 * 6 * 3
    model = keras.Sequential([keras.Input((10, 2)), L.Conv1D(3, 3, use_bias=False),
                              L.GlobalAveragePooling1D()])
    assert cost.count_flops(model) == 8 * 3 * 2 * 3 * 2 + 8 * 3


def test_flops_of_a_nested_model_count_its_layers() -> None:
    inner = keras.Sequential([keras.Input((4, 4, 1)), L.Conv2D(2, 1, use_bias=False)],
                             name="inner")
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, L.Dense(1, use_bias=False)(inner(inputs)))
    assert cost.count_flops(model) == 16 * 2 * 2 * 1 + 16 * 2 * 2


def test_a_weighted_layer_without_a_rule_is_an_error_not_free() -> None:
    model = keras.Sequential([keras.Input((4, 3)), L.LayerNormalization(name="ln")])
    with pytest.raises(ValueError, match="'ln' \\(LayerNormalization\\) holds weights"):
        cost.count_flops(model)


def test_unknown_size_is_an_error() -> None:
    model = keras.Sequential([keras.Input((None, None, 1)), L.Conv2D(1, 1)])
    with pytest.raises(ValueError, match="unknown size"):
        cost.count_flops(model)


def test_params_count_every_weight() -> None:
    model = _tiny()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert frozen == 8  # the batch norm's moving mean and variance
    assert cost.count_params(model) == trainable + frozen


class _Clocked:
    """A model whose predict_on_batch advances a fake clock by the next of ``steps`` seconds."""

    def __init__(self, steps: list[float]) -> None:
        self.input_shape = (None, 4, 4, 1)
        self.steps = list(steps)
        self.now = 0.0
        self.calls = 0
        self.batches: list[int] = []

    def clock(self) -> float:
        return self.now

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.batches.append(len(x))
        self.now += self.steps.pop(0)
        return np.zeros((len(x), 1))


def test_latency_is_the_median_of_the_timed_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # three warm-up batches (slow: compiling) are not timed; then 5, 1, 3, 9, 2 ms
    model = _Clocked([1.0, 1.0, 1.0, 0.005, 0.001, 0.003, 0.009, 0.002])
    monkeypatch.setattr(cost.time, "perf_counter", model.clock)
    assert cost.measure_latency(model, batches=5, batch_size=2) == pytest.approx(3.0)
    assert model.calls == cost.LATENCY_WARMUP + 5 and set(model.batches) == {2}


def test_latency_of_a_real_model_is_positive_and_measure_names_what_it_gave() -> None:
    model = _tiny()
    ms = cost.measure_latency(model, batches=3)
    assert 0 < ms < 10_000
    with pytest.raises(ValueError, match="must be >= 1"):
        cost.measure_latency(model, batches=0)
    out = cost.measure(model, ["val_dice", "params", "flops", "latency_ms"], latency_batches=2)
    assert sorted(out) == ["flops", "latency_ms", "params"]
    assert out["params"] == cost.count_params(model) and out["flops"] == 20032


# ----------------------------------------------------------------------------------- in a trial
def _trial_model(extra: keras.layers.Layer | None = None) -> keras.Model:
    from segsearch import losses, metrics

    inputs = keras.Input((16, 16, 1))
    h = L.Conv2D(4, 3, padding="same")(inputs)
    if extra is not None:
        h = extra(h)
    outputs = L.Conv2D(1, 1, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=losses.get("ce", 1),
                  metrics=metrics.default_metrics(1), jit_compile=False)
    return model


def _context(tmp_path, names: tuple[str, ...]):
    import tensorflow as tf

    from segsearch.engines.trial import TrainingContext
    from segsearch.records import Objective

    rng = np.random.default_rng(0)
    x = rng.random((8, 16, 16, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x[:4], y[:4])).batch(4)
    val = tf.data.Dataset.from_tensor_slices((x[4:], y[4:])).batch(4)
    directions = ("maximize",) + ("minimize",) * (len(names) - 1)
    return TrainingContext(train_data=data, val_data=val, study_dir=tmp_path,
                           objective=Objective(names, directions), latency_batches=2)


def test_a_trial_reports_its_costs_with_the_metric(tmp_path) -> None:
    from segsearch.engines.trial import TrialTask, run_trial

    names = ("val_dice", "params", "flops", "latency_ms")
    task = TrialTask(number=0, out_dir=tmp_path / "trials" / "0000", epochs=1)
    built: list[keras.Model] = []
    outcome = run_trial(_context(tmp_path, names), lambda: built.append(_trial_model()) or
                        built[-1], task)
    assert outcome.state == "complete", outcome.reason
    dice, params, flops, latency = outcome.objectives
    assert dice == outcome.value
    assert params == cost.count_params(built[0]) and flops == cost.count_flops(built[0])
    assert latency > 0
    assert {k: outcome.values[k] for k in names[1:]} == dict(zip(names[1:], [params, flops,
                                                                             latency]))
    single = run_trial(_context(tmp_path, ("val_dice",)), _trial_model,
                       TrialTask(number=1, out_dir=tmp_path / "trials" / "0001", epochs=1))
    assert "params" not in single.values  # costs are measured only when they are objectives


def test_a_cost_that_cannot_be_measured_fails_the_trial(tmp_path) -> None:
    from segsearch.engines.trial import TrialTask, run_trial

    task = TrialTask(number=0, out_dir=tmp_path / "trials" / "0000", epochs=1)
    outcome = run_trial(_context(tmp_path, ("val_dice", "flops")),
                        lambda: _trial_model(L.LayerNormalization(name="ln")), task)
    assert outcome.state == "failed" and outcome.checkpoint is None
    assert outcome.reason.startswith("ValueError while measuring its costs")
    assert "'ln' (LayerNormalization) holds weights" in outcome.reason
