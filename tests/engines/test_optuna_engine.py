"""The Optuna engine through the driver, on a stand-in hypermodel: resume, cut-off trials, pruning,
infeasible and NaN trials, the time limit."""

from __future__ import annotations

import json
import threading
import time

import optuna
import pytest

from segsearch.driver import Study
from segsearch.engines import optuna_engine
from segsearch.engines.hp import OptunaHyperParameters, declare
from segsearch.errors import StudyError
from segsearch.records import read_history, read_trials_csv, trial_dir

#: the stand-in hypermodel's defaults (its "seed network").
DEFAULTS = {"width": 4, "learning_rate": 1e-2, "optimizer": "adam", "bias": True}


#: trials train eagerly (tests/_faults.py): this file tests the engine's bookkeeping, not
#: graph-mode training (tests/test_driver.py's)
pytestmark = pytest.mark.usefixtures("eager_trials")


def _study(config):
    return optuna.load_study(study_name=config.study,
                             storage=f"sqlite:///{(config.study_dir / 'study.db').resolve()}")


def test_run_then_same_command_with_more_trials_adds_only_the_missing(make_config, standin):
    config = make_config(trials=2)
    results = Study(config).run()
    assert [r.state for r in results.trials] == ["complete", "complete"]
    seed = results.trials[0]
    assert {k: seed.params[k] for k in DEFAULTS} == DEFAULTS  # the seed network is trial 0
    assert seed.params["activation"] == "relu"  # fixed values are recorded too
    # then the seed with a larger learning rate (x sqrt(10), here clipped to the range's 3e-2)
    assert results.trials[1].params == dict(seed.params, learning_rate=3e-2)
    folder = trial_dir(config.study_dir, 0)
    assert (folder / "trial.json").exists() and (folder / "model.keras").exists()
    assert [row["epoch"] for row in read_history(folder / "history.csv")] == [1]
    assert len(read_trials_csv(config.study_dir / "trials.csv")) == 2
    assert json.loads((config.study_dir / "split.json").read_text())["val"]

    again = Study(make_config(trials=3)).run()
    assert [r.state for r in again.trials] == ["complete"] * 3
    for before, after in zip(results.trials, again.trials):
        assert (before.number, before.params, before.value) == (after.number, after.params,
                                                               after.value)
    stored = _study(config)
    assert len(stored.trials) == 3


def test_trial_cut_off_by_an_interrupt_is_run_again(make_config, standin, interrupt):
    config = make_config(trials=2, epochs=2)
    stop = interrupt(trial=1, epoch=1)
    with pytest.raises(KeyboardInterrupt):
        Study(config).run(progress=stop)
    # the interrupted run fails its own running trial ("cut off") and enqueues its values again
    assert _study(config).trials[1].state == optuna.trial.TrialState.FAIL
    assert "cut off" in _study(config).trials[1].user_attrs["reason"]
    cut_params = dict(_study(config).trials[1].params)

    results = Study(config).run()
    states = [(r.number, r.state) for r in results.trials]
    assert states == [(0, "complete"), (1, "failed"), (2, "complete")]
    assert "cut off" in results.trials[1].reason
    assert {k: results.trials[2].params[k] for k in cut_params} == cut_params
    assert sum(r.finished_ok for r in results.trials) == 2


def test_pruner_stops_a_trial_and_pruned_trials_count(make_config, standin, monkeypatch):
    class PruneAfterFirst(optuna.pruners.BasePruner):
        def prune(self, study, trial):  # every trial but the seed stops after epoch 1
            return trial.number > 0 and trial.last_step is not None and trial.last_step >= 1

    monkeypatch.setattr(optuna_engine, "make_pruner", lambda *a, **k: PruneAfterFirst())
    config = make_config(trials=2, epochs=3)
    results = Study(config).run()
    seed, pruned = results.trials
    assert (seed.state, seed.epochs) == ("complete", 3)
    assert (pruned.state, pruned.epochs) == ("pruned", 1)
    assert pruned.reason.startswith("pruned after epoch 1")
    assert not (trial_dir(results.study_dir, 1) / "model.keras").exists()
    assert _study(config).trials[1].state == optuna.trial.TrialState.PRUNED


def test_infeasible_and_nan_trials_are_recorded_not_counted_not_retried(make_config, standin):
    standin(infeasible_builds=(2,), nan_builds=(3,))
    config = make_config(trials=2, epochs=2)
    results = Study(config).run()
    assert [r.state for r in results.trials] == ["complete", "infeasible", "failed", "complete"]
    infeasible, nan = results.trials[1], results.trials[2]
    assert "cannot work" in infeasible.reason and infeasible.epochs == 0
    assert "loss became nan" in nan.reason and nan.epochs == 1  # stopped in its first epoch
    frozen = _study(config).trials
    assert frozen[1].state == optuna.trial.TrialState.FAIL and frozen[1].user_attrs["infeasible"]
    assert frozen[2].state == optuna.trial.TrialState.FAIL
    assert "infeasible" not in frozen[2].user_attrs
    again = Study(config).run()  # the same command: nothing is missing, nothing is retried
    assert [(r.number, r.state) for r in again.trials] == [(r.number, r.state)
                                                           for r in results.trials]


def test_space_where_nothing_is_feasible_stops_with_a_clear_message(make_config, standin,
                                                                     monkeypatch):
    from segsearch.engines.base import BaseEngine

    standin(infeasible_builds=tuple(range(1, 50)))
    monkeypatch.setattr(BaseEngine, "max_infeasible_in_a_row", 3)
    with pytest.raises(StudyError, match="3 configurations in a row cannot work.*Narrow the space"):
        Study(make_config(trials=2)).run()


def test_time_limit_stops_starting_trials(make_config, standin):
    results = Study(make_config(trials=5, search={"time_limit": 0.5})).run()
    assert [r.state for r in results.trials] == ["complete"]
    assert results.best_trial == 0


def test_fresh_moves_the_old_study_aside(make_config, standin):
    config = make_config(trials=1)
    Study(config).run()
    changed = make_config(trials=1, search={"objective": "val_loss"})
    with pytest.raises(StudyError, match="objective.*--fresh"):
        Study(changed).run()
    study = Study(changed, fresh=True)
    results = study.run()
    old = study.moved_aside
    assert old is not None and old.name.startswith("tiny.old-") and results.moved_aside == old
    assert (old / "study.db").exists() and (old / "trials" / "0000" / "trial.json").exists()
    assert [r.state for r in results.trials] == ["complete"]
    assert json.loads((config.study_dir / "study.json").read_text())["fingerprint"]["objective"] \
        == ["val_loss"]


def test_a_dead_workers_trial_is_failed_after_the_grace_period_and_run_again(
        make_config, standin, monkeypatch):
    # a worker on another machine holds a RUNNING trial and beats; while it beats nobody takes the
    # trial, once it stops (the machine died) the others fail it after the grace period and re-run
    monkeypatch.setattr(optuna_engine, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(optuna_engine, "GRACE_PERIOD", 2)
    Study(make_config(trials=1)).run()
    config = make_config(trials=3, search={"time_limit": 120})  # a broken check fails, not hangs
    storage = optuna_engine.make_storage(f"sqlite:///{(config.study_dir / 'study.db').resolve()}")
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna's note that ask() is manual
        theirs = optuna.load_study(study_name=config.study, storage=storage).ask()
    declare(Study(config).hypermodel(), OptunaHyperParameters(theirs), build=False)
    theirs.set_user_attr("host", "gpu-node-that-dies")
    theirs.set_user_attr("pid", 4242)
    dead = threading.Event()
    died_at: list[float] = []

    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(config.study), theirs.number)

    def beat() -> None:
        while not dead.is_set():
            storage.record_heartbeat(trial_id)
            time.sleep(0.25)
        died_at.append(time.time())

    beating = threading.Thread(target=beat, daemon=True)
    beating.start()

    def progress(event):
        if event["event"] == "trial_end":  # our first trial is done: the other machine dies
            dead.set()

    try:
        results = Study(config).run(progress=progress)
    finally:
        dead.set()
        beating.join(5)
    states = [(r.number, r.state) for r in results.trials]
    assert states == [(0, "complete"), (1, "failed"), (2, "complete"), (3, "complete")]
    assert "cut off" in results.trials[1].reason
    stored = _study(config).trials
    # failed only once its heartbeat had stopped, and its values trained again by this worker
    assert stored[1].datetime_complete.timestamp() >= died_at[0] - 1.0
    assert stored[3].user_attrs["retry_of"] == 1
    assert stored[3].params == stored[1].params and stored[1].params
