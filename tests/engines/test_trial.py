"""The one trial function: batch norm statistics that keep up, checkpoints to continue from."""

from __future__ import annotations

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


def test_batch_norm_window_follows_the_epoch_length():
    model = _model_with_nested_batch_norm()
    assert adapt_batch_norm(model, epoch_steps=3) == 2  # outer and nested; 0.5 is already faster
    layers = {layer.name: layer for layer in model.layers}
    assert abs(layers["outer_bn"].momentum - 0.9) < 1e-9
    assert abs(layers["inner"].get_layer("inner_bn").momentum - 0.9) < 1e-9
    assert layers["already_fast"].momentum == 0.5

    big = _model_with_nested_batch_norm()
    assert adapt_batch_norm(big, epoch_steps=500) == 0  # 0.99 keeps up with 500 steps an epoch
    assert big.get_layer("outer_bn").momentum == 0.99


def test_continuation_prefers_the_last_epoch(tmp_path):
    assert continuation(tmp_path) is None
    (tmp_path / "model.keras").write_text("best")
    assert continuation(tmp_path).name == "model.keras"
    (tmp_path / "last.keras").write_text("last")
    assert continuation(tmp_path).name == "last.keras"


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
    from segsearch.config import load_config

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
    splits = study._load_data()
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
