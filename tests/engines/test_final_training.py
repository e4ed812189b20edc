"""After the search the best configuration trains on from its checkpoint with the rest of the
budget."""

from __future__ import annotations

import json

import keras
import pytest

from segsearch.driver import Study
from segsearch.records import read_history


def test_best_trial_continues_from_its_checkpoint_with_the_rest_of_the_budget(make_config, standin):
    config = make_config(trials=2, epochs=2, train={"budget_epochs": 7})
    events = []
    results = Study(config).run(progress=events.append)
    used = sum(r.epochs for r in results.trials)
    best = next(r for r in results.trials if r.number == results.best_trial)
    final = json.loads((config.study_dir / "final" / "final.json").read_text())
    assert final["trial"] == best.number and final["planned_epochs"] == 7 - used
    assert final["schedule"] == "cosine"  # train.final_schedule's default
    # it goes on from where the trial stopped (its last epoch), not from its best epoch
    last = best.initial_epoch + best.epochs
    assert final["from_epoch"] == last and results.final_epochs == 7 - used
    history = read_history(config.study_dir / "final" / "history.csv")
    assert [row["epoch"] for row in history] == list(range(last + 1, last + 1 + 7 - used))
    # the trial's best is kept unless an epoch beats it (by the moving average that chose it)
    assert results.selection_value >= best.value
    if results.selection_value > best.value:
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
    (end,) = [e for e in events if e["event"] == "final_end"]  # what the progress line says
    assert end["trial_kept"] is not kept_final and end["trial_value"] == best.value
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


def test_a_failed_final_training_exports_the_trial_and_the_next_run_retries_it(
        make_config, standin, monkeypatch):
    config = make_config(trials=1, epochs=1, train={"final_epochs": 1})
    monkeypatch.setenv("SEGSEARCH_FAULT", "-1:raise@2")  # the final training's first epoch (2)
    events = []
    failed = Study(config).run(progress=events.append)
    assert failed.final_retry and "injected by SEGSEARCH_FAULT" in failed.final_failed
    assert failed.best_model_path == config.study_dir / "trials" / "0000" / "model.keras"
    final = json.loads((config.study_dir / "final" / "final.json").read_text())
    assert final["final_state"] == "failed" and final["diverged"] is False
    (end,) = [e for e in events if e["event"] == "final_end"]
    assert end["state"] == "failed" and end["retry"] is True

    monkeypatch.delenv("SEGSEARCH_FAULT")
    events.clear()
    again = Study(config).run(progress=events.append)  # the search is done: only the final runs
    assert [e["event"] for e in events].count("trial_start") == 0
    assert [e["event"] for e in events].count("final_start") == 1
    assert again.final_failed is None and not again.final_retry and again.final_epochs == 1
    final = json.loads((config.study_dir / "final" / "final.json").read_text())
    assert final["final_state"] == "complete"
    assert [row["epoch"] for row in read_history(config.study_dir / "final" / "history.csv")] == [2]

    stamp = (config.study_dir / "final" / "final.json").stat().st_mtime_ns
    Study(config).run()  # done now: not trained a third time
    assert (config.study_dir / "final" / "final.json").stat().st_mtime_ns == stamp


def test_a_diverged_final_training_is_reported_but_not_retried():
    from segsearch.driver import _final_failed, _final_retry

    assert not _final_failed({"final_state": "complete"}) and not _final_retry({})
    assert _final_retry({"final_state": "failed", "diverged": False})
    assert _final_retry({"final_state": "failed"})  # final.json of an older segsearch
    diverged = {"final_state": "failed", "diverged": True}
    assert _final_failed(diverged) and not _final_retry(diverged)


def test_cli_exit_status_says_whether_the_final_training_failed(capsys):
    from pathlib import Path

    from segsearch.cli import EXIT_FINAL_FAILED, _final_training_status
    from segsearch.driver import Results

    def results(failed, retry):
        return Results(best_value=0.5, best_params={}, trials=[], study_dir=Path("s"),
                       best_model_path=Path("s/best/model.keras"), best_trial=3,
                       final_failed=failed, final_retry=retry)

    assert _final_training_status(results(None, False)) == 0
    assert capsys.readouterr().err == ""
    assert _final_training_status(results("the worker died\n(SIGKILL)", True)) == EXIT_FINAL_FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("segsearch: error: the final training of the "
                                                   "best configuration (trial #3) failed: the "
                                                   "worker died (SIGKILL). The best trial's")
    assert "run the same command again to retry the final training" in err
    assert _final_training_status(results("diverged: weight x reached 1e+09", False)) == 0
    err = capsys.readouterr().err
    assert err.startswith("segsearch: warning: ") and "not retried" in err
