"""The one trial function: batch norm statistics that keep up, checkpoints to continue from."""

from __future__ import annotations

import csv

import keras
import pytest

from segsearch.engines.trial import adapt_batch_norm, continuation


def _model_with_nested_batch_norm():
    inner_in = keras.Input((8, 8, 2))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(name="inner_bn")(inner_in),
                        name="inner")
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    h = keras.layers.BatchNormalization(name="outer_bn")(h)
    h = inner(h)
    slow = keras.layers.BatchNormalization(momentum=0.5, name="already_fast")(h)
    return keras.Model(inputs, slow)


def test_batch_norms_follow_within_a_few_dozen_batches():
    model = _model_with_nested_batch_norm()
    assert adapt_batch_norm(model) == 2  # outer and nested; 0.5 is already faster
    layers = {layer.name: layer for layer in model.layers}
    assert abs(layers["outer_bn"].momentum - 0.9) < 1e-9
    assert abs(layers["inner"].get_layer("inner_bn").momentum - 0.9) < 1e-9
    assert layers["already_fast"].momentum == 0.5

    built = _model_with_nested_batch_norm()
    assert built.get_layer("outer_bn").momentum == 0.99  # the seed's, until a search trains it
    assert adapt_batch_norm(built, momentum=0.95) == 2
    assert abs(built.get_layer("outer_bn").momentum - 0.95) < 1e-9


def test_continuation_prefers_the_last_epoch(tmp_path):
    assert continuation(tmp_path) is None
    (tmp_path / "model.keras").write_text("best")
    assert continuation(tmp_path).name == "model.keras"
    (tmp_path / "last.keras").write_text("last")
    assert continuation(tmp_path).name == "last.keras"


# ------------------------------------------------------------------ divergence
def _tiny_model(learning_rate: float = 1e-2):
    from segsearch import losses, metrics

    inputs = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
                  loss=losses.get("ce", 1), metrics=metrics.default_metrics(1), jit_compile=False)
    return model


def _context(tmp_path):
    import numpy as np
    import tensorflow as tf

    from segsearch.engines.trial import TrainingContext

    rng = np.random.default_rng(0)
    x = rng.random((12, 16, 16, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x[:8], y[:8])).batch(4)
    val = tf.data.Dataset.from_tensor_slices((x[8:], y[8:])).batch(4)
    return TrainingContext(train_data=data, val_data=val, study_dir=tmp_path)


def test_a_diverged_trial_fails_although_its_clipped_loss_stays_finite(tmp_path):
    from segsearch.engines.trial import TrialTask, run_trial

    task = TrialTask(number=0, out_dir=tmp_path / "trials" / "0000", epochs=3)
    outcome = run_trial(_context(tmp_path), lambda: _tiny_model(1e6), task)
    assert outcome.state == "failed" and outcome.diverged
    assert outcome.reason.startswith("diverged: ") and "in epoch 1" in outcome.reason
    assert "lower the learning rate" in outcome.reason
    # segsearch's cross-entropy clips the probabilities: the loss alone looked ordinary
    assert all(0 < row["loss"] < 20 for row in outcome.history)
    assert outcome.checkpoint is None and not (task.out_dir / "model.keras").exists()

    sane = TrialTask(number=1, out_dir=tmp_path / "trials" / "0001", epochs=2)
    healthy = run_trial(_context(tmp_path), lambda: _tiny_model(1e-2), sane)
    assert healthy.state == "complete" and not healthy.diverged and healthy.checkpoint.exists()


class _Rates(keras.callbacks.Callback):
    """Records the optimizer's learning rate as each epoch trains (after the decay set it)."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_begin(self, batch, logs=None) -> None:
        if batch == 0:
            self.rates.append(float(self.model.optimizer.learning_rate.numpy()))


def test_a_cosine_schedule_decays_a_continued_network_over_its_own_epochs(tmp_path, monkeypatch):
    import math

    from segsearch.engines import trial
    from segsearch.engines.trial import TrialTask, run_trial

    first = run_trial(_context(tmp_path), lambda: _tiny_model(1e-2),
                      TrialTask(number=0, out_dir=tmp_path / "trial", epochs=2))
    rates = _Rates()
    monkeypatch.setattr(trial, "extra_callbacks", lambda task: [rates])
    task = TrialTask(number=-1, out_dir=tmp_path / "final", epochs=6, initial_epoch=2,
                     resume_from=first.checkpoint, phase="final", schedule="cosine")
    outcome = run_trial(_context(tmp_path), lambda: None, task)
    assert outcome.state == "complete" and [r["epoch"] for r in outcome.history] == [3, 4, 5, 6]
    # from the checkpoint's rate (the trial's constant 1e-2) down over these 4 epochs
    expected = [1e-2 * 0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(4)]
    assert rates.rates == pytest.approx(expected, rel=1e-5)
    assert rates.rates[-1] < 0.2 * rates.rates[0]
    # history.csv says the rate each epoch trained at
    with open(tmp_path / "final" / "history.csv", encoding="utf-8") as f:
        logged = [float(r["learning_rate"]) for r in csv.DictReader(f)]
    assert logged == pytest.approx(expected, rel=1e-5)

    rates.rates.clear()  # the default: the rate the network was compiled with, every epoch
    run_trial(_context(tmp_path), lambda: _tiny_model(1e-2),
              TrialTask(number=1, out_dir=tmp_path / "constant", epochs=3))
    assert rates.rates == pytest.approx([1e-2] * 3)


def test_a_cosine_schedule_leaves_an_optimizer_with_a_schedule_object_alone():
    from segsearch.engines.trial import CosineDecay

    model = _tiny_model()
    model.optimizer = keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(
        0.1, decay_steps=10, decay_rate=0.5))
    decay = CosineDecay(0, 4)
    decay.set_model(model)
    decay.on_train_begin()
    assert not decay.enabled
    decay.on_epoch_begin(2)  # nothing to set: no error


def test_divergence_rules():
    import numpy as np

    from segsearch.engines.trial import divergence

    model = _tiny_model()
    assert divergence(model, 0.7, 0.7) is None
    kernel = model.get_layer("conv").kernel
    original = kernel.numpy()
    kernel.assign(np.full(original.shape, 2e8, "float32"))
    assert divergence(model).startswith("weight conv/kernel reached 2e+08")
    kernel.assign(original)
    kernel.assign(np.where(np.arange(original.size).reshape(original.shape) == 0, np.nan,
                           original).astype("float32"))
    assert divergence(model) == "weight conv/kernel is not finite"
    kernel.assign(original)
    assert divergence(model, 15.0, 0.01).startswith("the loss rose from 0.01 in the first epoch")
    assert divergence(model, 5.0, 0.01) is None  # 500 times: not yet
    assert divergence(model, 5.0, 0.0) is None
    # the unclipped loss: a head pushed to probability 1 everywhere is sure of every background
    # pixel being foreground (its clipped loss is only ~8)
    x = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    assert divergence(model, batch=(x, y)) is None
    bias = model.get_layer("head").bias
    bias.assign(np.full(bias.shape, 1e3, "float32"))
    assert "of the pixels of a validation batch a probability of exactly 0" in divergence(
        model, batch=(x, y))
    assert divergence(model, batch=(x, np.ones_like(y))) is None  # and right about all of them


def _monitor(tmp_path, values, *, baseline=None, start=None, phase="trial"):
    """Feed an epoch monitor a given history of val_dice; return it, the events and reports."""
    from segsearch.engines.trial import TrainingContext, TrialTask, _EpochMonitor

    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    events, reports = [], []
    context = TrainingContext(train_data=None, val_data=None, study_dir=tmp_path,
                              progress=events.append, smoothing=0.6)
    task = TrialTask(number=0, out_dir=tmp_path, epochs=len(values), baseline=baseline,
                     smoothed_start=start, phase=phase)
    monitor = _EpochMonitor(task, context, lambda epoch, v: reports.append(v) or False)
    monitor.set_model(model)
    for i, v in enumerate(values):
        monitor.on_epoch_begin(i)
        monitor.on_epoch_end(i, {"loss": 0.3, "val_dice": v})
    return monitor, events, reports


def test_the_best_epoch_is_the_best_moving_average_not_the_lucky_one(tmp_path):
    from segsearch.engines.trial import smoothed_at_end
    from segsearch.records import read_history

    monitor, events, reports = _monitor(tmp_path, [0.80, 0.81, 0.60, 0.85, 0.55])
    assert monitor.best_epoch == 2  # not epoch 4, the isolated 0.85
    assert monitor.best_value == pytest.approx(0.6 * 0.81 + 0.4 * 0.80)
    assert monitor.best_logs["val_dice"] == 0.81  # the raw figures of the kept epoch
    assert reports[0] == 0.80 and reports[1] == pytest.approx(monitor.best_value)  # pruner: avg
    history = read_history(tmp_path / "history.csv")
    assert [round(r["val_dice_ema"], 4) for r in history][:3] == [0.8, 0.806, 0.6824]
    assert smoothed_at_end(tmp_path, "val_dice") == pytest.approx(history[-1]["val_dice_ema"])
    assert events[-1]["own_best"] == pytest.approx(monitor.best_value)


def test_a_continuation_goes_on_with_the_average_and_must_beat_the_trial(tmp_path):
    # the trial's average was 0.80; one raw 0.85 epoch averages 0.83 < 0.84, the trial's best
    monitor, events, _ = _monitor(tmp_path, [0.85], baseline=0.84, start=0.80, phase="final")
    assert monitor.best_epoch is None  # the trial's checkpoint stays
    assert events[0]["event"] == "final_epoch"
    assert events[0]["own_best"] == pytest.approx(0.83) and events[0]["trial_best"] == 0.84
    (tmp_path / "b").mkdir()
    monitor, _, _ = _monitor(tmp_path / "b", [0.9, 0.7], baseline=0.84, start=0.80)
    assert monitor.best_epoch == 1 and monitor.best_value == pytest.approx(0.86)


def test_a_trial_in_patch_mode_trains_on_patches_and_scores_whole_images(
        tmp_path, make_config, standin):
    """32x32 patches of 70x90 thin-line images: the epoch has train.steps_per_epoch steps, and the
    val_* figures in history.csv, the trial record and best/metrics.yaml are those of the whole
    validation images predicted through overlapping windows (recomputed from the checkpoint)."""
    import csv

    import numpy as np
    import yaml
    from _thin import thin_lines

    from segsearch.driver import Study
    from segsearch.sliding import part_images, score_images

    images, masks = thin_lines(6, (70, 90), seed=2, lines=3)
    source = tmp_path / "thin.npz"
    np.savez(source, images=np.stack(images)[..., None], masks=np.stack(masks)[..., None])
    config = make_config(trials=1, epochs=1, train={"final_epochs": 0, "steps_per_epoch": 3},
                         export={"enabled": True, "overlays": 0, "saved_model": False})
    data = {**config.data.to_dict(), "source": str(source), "image_size": [32, 32]}
    from segsearch.spacefile import load_config

    raw = {**config.to_dict(), "data": data}
    config = load_config(raw, study_dir=config.study_dir, check_space=False)
    assert config.data.resize == "auto"

    steps: list[int] = []
    study = Study(config)
    context = study.training_context()
    train = context.train_data(0)
    assert context.steps_per_epoch is None and context.epoch_steps == 3
    assert context.val_callback is not None
    steps.append(sum(1 for _ in train.take(10)))  # one pass = one epoch of exactly 3 batches
    assert steps == [3]

    results = Study(config).run()
    splits = study.workshop.load_data()
    assert splits.info["resize"] == "patch" and splits.train.item(0)[0].shape == (70, 90, 1)
    record = results.trials[0]
    assert record.state == "complete"
    trial_dir = config.study_dir / "trials" / "0000"
    with open(trial_dir / "history.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"val_dice", "val_loss", "val_mean_iou", "dice"} <= set(rows[0])
    import keras

    model = keras.saving.load_model(trial_dir / "model.keras")
    images_val, masks_val = part_images(splits.val)
    assert images_val[0].shape == (70, 90, 1)
    again = score_images(model, images_val, masks_val, overlap=config.data.overlap,
                         batch_size=config.train.batch_size)
    assert float(rows[0]["val_dice"]) == pytest.approx(again["dice"], abs=1e-5)
    assert float(rows[0]["val_loss"]) == pytest.approx(again["loss"], rel=1e-4)
    assert record.values["val_mean_iou"] == pytest.approx(again["mean_iou"], abs=1e-5)
    metrics = yaml.safe_load((config.study_dir / "best" / "metrics.yaml").read_text())
    assert metrics["validation"]["val_dice"] == pytest.approx(again["dice"], abs=1e-5)
    assert metrics["validation_images"] == len(splits.val.names)
    stored = yaml.safe_load((config.study_dir / "best" / "config.yaml").read_text())
    assert stored["data"]["resize"] == "patch"  # what predict must do, not "auto"


def test_extra_callbacks_come_from_the_function_the_hook_names(tmp_path, monkeypatch):
    from pathlib import Path

    from segsearch.engines.trial import CALLBACKS_ENV, TrialTask, extra_callbacks
    from segsearch.errors import ConfigError

    faults = Path(__file__).resolve().parents[1] / "_faults.py"
    monkeypatch.setenv(CALLBACKS_ENV, f"{faults}:callbacks")
    monkeypatch.setenv("SEGSEARCH_FAULT", "3:raise@2")
    chosen = extra_callbacks(TrialTask(number=3, out_dir=tmp_path, epochs=2))
    assert [(type(c).__name__, c.kind, c.epoch) for c in chosen] == [("Fault", "raise", 2)]
    assert extra_callbacks(TrialTask(number=2, out_dir=tmp_path, epochs=2)) == []
    monkeypatch.delenv(CALLBACKS_ENV)
    assert extra_callbacks(TrialTask(number=3, out_dir=tmp_path, epochs=2)) == []
    monkeypatch.setenv(CALLBACKS_ENV, "no_such_module_here:callbacks")
    with pytest.raises(ConfigError, match=f"{CALLBACKS_ENV}='no_such_module_here:callbacks': "
                                          "cannot load 'callbacks'.*fix: name a function"):
        extra_callbacks(TrialTask(number=3, out_dir=tmp_path, epochs=2))


def test_a_trial_cut_by_the_time_limit_counts_with_the_epochs_it_ran(tmp_path):
    """The user's budget ran out after epoch 1 of 3: the trial is complete with its checkpoint
    (a budget shorter than one trial still gives a model), and its reason says it was cut."""
    import dataclasses
    import time

    from segsearch.engines.trial import TrialTask, run_trial

    context = dataclasses.replace(_context(tmp_path), deadline=time.monotonic())
    task = TrialTask(number=0, out_dir=tmp_path / "trials" / "0000", epochs=3)
    outcome = run_trial(context, lambda: _tiny_model(1e-2), task)
    assert outcome.state == "complete" and outcome.epochs == 1
    assert outcome.reason == "search.time_limit reached after epoch 1 of 3"
    assert outcome.value is not None and outcome.checkpoint.exists()
