"""The Keras Tuner engine through the driver, on a stand-in hypermodel: the seed first, Hyperband
promotions continuing their checkpoint, resume after an interrupt, infeasible trials."""

from __future__ import annotations

import json

import keras
import pytest

from segsearch.driver import Study
from segsearch.records import read_history, trial_dir

DEFAULTS = {"width": 4, "learning_rate": 1e-2, "optimizer": "adam", "bias": True}


def test_hyperband_seed_first_and_promotion_continues_the_checkpoint(make_config, standin):
    # max_epochs 3, factor 3: bracket 1 runs three 1-epoch trials, then promotes the best to 3
    config = make_config("keras-tuner", trials=4, epochs=3)
    results = Study(config).run()
    assert [r.state for r in results.trials] == ["complete"] * 4
    assert {k: results.trials[0].params[k] for k in DEFAULTS} == DEFAULTS
    promoted = results.trials[3]
    assert promoted.initial_epoch == 1 and promoted.epochs == 2
    assert [row["epoch"] for row in read_history(trial_dir(config.study_dir, 3) / "history.csv")] \
        == [2, 3]
    values = json.loads((config.study_dir / "keras_tuner" / "trial_3" / "trial.json").read_text())
    source = int(values["hyperparameters"]["values"]["tuner/trial_id"])
    assert results.trials[source].params == promoted.params
    # the promoted trial continued the earlier optimizer state: its step counter went on from there
    steps_per_epoch = 2  # 8 training images, batch 4
    checkpoint = keras.saving.load_model(trial_dir(config.study_dir, 3) / "model.keras")
    assert int(checkpoint.optimizer.iterations.numpy()) == steps_per_epoch * promoted.best_epoch


def test_interrupted_trial_is_retried_on_resume(make_config, standin, interrupt):
    config = make_config("keras-tuner", trials=2, epochs=2, search={"algorithm": "random"})
    with pytest.raises(KeyboardInterrupt):
        Study(config).run(progress=interrupt(trial=1, epoch=1))
    assert [r.state for r in Study.open(config.study_dir).trials()] == ["complete", "running"]
    results = Study(config).run()
    assert [(r.number, r.state) for r in results.trials] == [(0, "complete"), (1, "complete")]
    assert results.trials[1].epochs == 2

    more = Study(make_config("keras-tuner", trials=3, epochs=2,
                             search={"algorithm": "random"})).run()
    assert [r.state for r in more.trials] == ["complete"] * 3
    assert more.trials[:2] == results.trials


def test_infeasible_trial_is_recorded_and_not_counted(make_config, standin):
    standin(infeasible_builds=(2,))
    results = Study(make_config("keras-tuner", trials=2, search={"algorithm": "random"})).run()
    assert [r.state for r in results.trials] == ["complete", "infeasible", "complete"]
    assert "cannot work" in results.trials[1].reason
