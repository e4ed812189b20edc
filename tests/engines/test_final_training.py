"""After the search the best configuration trains on from its checkpoint with the rest of the budget."""

from __future__ import annotations

import json

import keras
import pytest

from segsearch.driver import Study
from segsearch.engines.results import read_history


def test_best_trial_continues_from_its_checkpoint_with_the_rest_of_the_budget(make_config, standin):
    config = make_config(trials=2, epochs=2, train={"budget_epochs": 7})
    events = []
    results = Study(config).run(progress=events.append)
    used = sum(r.epochs for r in results.trials)
    best = next(r for r in results.trials if r.number == results.best_trial)
    final = json.loads((config.study_dir / "final" / "final.json").read_text())
    assert final["trial"] == best.number and final["planned_epochs"] == 7 - used
    # it goes on from where the trial stopped (its last epoch), not from its best epoch
    last = best.initial_epoch + best.epochs
    assert final["from_epoch"] == last and results.final_epochs == 7 - used
    history = read_history(config.study_dir / "final" / "history.csv")
    assert [row["epoch"] for row in history] == list(range(last + 1, last + 1 + 7 - used))
    assert results.best_value >= best.value  # the trial's best is kept unless an epoch beats it
    if results.best_value > best.value:
        assert results.best_model_path == config.study_dir / "final" / "model.keras"
    model = keras.saving.load_model(results.best_model_path)
    steps = 2  # 8 training images, batch 4: the optimizer went on counting from the checkpoint
    assert int(model.optimizer.iterations.numpy()) == steps * final["best_epoch"]
    kinds = [e["event"] for e in events]
    assert kinds.index("final_start") < kinds.index("final_epoch") < kinds.index("study_end")
    # the final training's own best and the trial's value are recorded; by the same rule (the
    # moving average) the final weights are kept only when their average beats the trial's
    assert final["trial_value"] == best.value
    finals = [e for e in events if e["event"] == "final_epoch"]
    assert final["final_best"] == pytest.approx(max(e["own_best"] for e in finals))
    kept_final = final["model"].startswith("final")
    assert kept_final == (final["final_best"] > best.value)
    # time left counts the final's own epochs: never ~0 while epochs remain
    assert all(e["eta_s"] > 0 for e in finals if e["epoch"] < e["epochs"])
    # the trivial baseline: computed once, stored, beside the objective in the events
    start = next(e for e in events if e["event"] == "study_start")
    stored = json.loads((config.study_dir / "baseline.json").read_text())
    assert start["baseline"] == stored["best"] and "val_dice" in stored["best"]
    end = next(e for e in events if e["event"] == "study_end")
    assert end["verdict"]["baseline"] == pytest.approx(stored["best"]["val_dice"], abs=1e-6)
    assert results.baseline == stored["best"] and results.verdict == end["verdict"]

    stamp = (config.study_dir / "final" / "final.json").stat().st_mtime_ns
    again = Study(config).run()  # nothing missing: neither the search nor the final training reruns
    assert (config.study_dir / "final" / "final.json").stat().st_mtime_ns == stamp
    assert again.best_value == results.best_value


def test_final_epochs_setting_and_zero(make_config, standin):
    results = Study(make_config(trials=1, epochs=1, train={"final_epochs": 2})).run()
    assert results.final_epochs == 2
    none = Study(make_config(trials=1, epochs=1, study="nofinal",
                             train={"final_epochs": 0})).run()
    assert none.final_epochs == 0
    assert none.best_model_path.name == "model.keras" and "trials" in none.best_model_path.parts
