"""Failures inside a trial (in-process, the stand-in hypermodel): out of memory (recorded, retried
at half the batch size, not trained again when proposed again), failed trials in a row stopping
the study with their reasons, an error inside the input pipeline reported as itself (not as
TensorFlow's "Graph execution error"), a run whose first trials fail alike stopping at once, and
the resume running again the trials that failed for a reason outside their configuration and the
seed trials. Faults are injected with SEGSEARCH_FAULT (tests/_faults.py)."""

from __future__ import annotations

import optuna
import pytest

from segsearch.driver import Study
from segsearch.errors import StudyError
from segsearch.records import ERROR_FILE

#: trials train eagerly (tests/_faults.py): this file tests the engine's bookkeeping, not
#: graph-mode training (tests/test_driver.py's)
pytestmark = pytest.mark.usefixtures("eager_trials")


def test_out_of_memory_is_recorded_and_the_configuration_is_not_trained_again(
        make_config, standin, monkeypatch):
    monkeypatch.setenv("SEGSEARCH_FAULT", "0:oom")
    config = make_config(trials=1)
    first = Study(config).run()
    assert [r.state for r in first.trials] == ["failed", "complete"]
    assert "out of memory at batch size 4" in first.trials[0].reason
    assert "train.oom_retry" in first.trials[0].reason
    study = optuna.load_study(study_name=config.study,
                              storage=f"sqlite:///{config.study_dir / 'study.db'}")
    oom = study.trials[0]
    assert oom.user_attrs["oom"] is True and oom.state == optuna.trial.TrialState.FAIL
    study.enqueue_trial(dict(oom.params))  # the sampler proposes the same configuration again
    again = Study(make_config(trials=2)).run()
    assert again.trials[2].state == "infeasible" and again.trials[2].epochs == 0
    assert "ran out of memory in trial 0" in again.trials[2].reason
    assert sum(r.finished_ok for r in again.trials) == 2


def test_out_of_memory_retry_at_half_the_batch_size(make_config, standin, monkeypatch):
    monkeypatch.setenv("SEGSEARCH_FAULT", "0:oom")
    results = Study(make_config(trials=1, train={"oom_retry": True})).run()
    assert [r.state for r in results.trials] == ["complete"]
    assert "retried once at batch size 2" in results.trials[0].reason


def test_failed_trials_in_a_row_stop_the_study_with_the_last_reasons(make_config, standin,
                                                                     monkeypatch):
    # two different errors (the same one twice at the start stops at once: below)
    monkeypatch.setenv("SEGSEARCH_FAULT", "0:raise")
    standin(nan_builds=(2,))
    config = make_config(trials=3, search={"max_failures": 2})
    with pytest.raises(StudyError, match="2 trials in a row failed.*injected by SEGSEARCH_FAULT"):
        Study(config).run()


def test_a_diverged_trial_is_failed_and_never_the_best(make_config, standin):
    standin(diverge_builds=(1,))  # trial 0 trains with SGD at 1e6: weights blow up, loss finite
    config = make_config(trials=1)
    events = []
    results = Study(config).run(progress=events.append)
    assert [r.state for r in results.trials] == ["failed", "complete"]
    diverged = results.trials[0]
    assert diverged.reason.startswith("diverged: ") and diverged.checkpoint is None
    assert results.best_trial == 1
    ends = [e for e in events if e["event"] == "trial_end"]
    assert ends[0]["state"] == "failed" and ends[0]["reason"].startswith("diverged: ")


def test_a_real_network_at_learning_rate_1e6_diverges_and_nothing_is_exported(tmp_path):
    from segsearch.spacefile import load_config

    raw = {
        "study": "diverge", "architecture": "unet",
        "data": {"source": "sample", "sample_count": 12, "image_size": 32, "augment": 0},
        "train": {"epochs": 2, "batch_size": 4, "isolation": "none"},
        "search": {"trials": 1, "max_failures": 1, "pruner": "none"},
        "space": {"filters": 4, "depth": 1, "optimizer": "sgd", "learning_rate": 1e6},
        "export": {"enabled": True, "saved_model": False, "overlays": 0},
    }
    config = load_config(raw, study_dir=tmp_path / "diverge")
    with pytest.raises(StudyError, match="1 trials in a row failed: diverged: "):
        Study(config).run()
    (record,) = Study(config).trials()
    assert record.state == "failed" and record.reason.startswith("diverged: ")
    assert not (config.study_dir / "best").exists()
    assert not list(config.study_dir.glob("trials/*/model.keras"))


# ------------------------------------------------------------------ recycling the worker
class _Process:
    """Stands in for a worker's multiprocessing.Process (this test process's own pid)."""

    def __init__(self) -> None:
        import os

        self.pid = os.getpid()
        self.joined = False

    def join(self, timeout=None) -> None:
        self.joined = True

    def is_alive(self) -> bool:
        return False


def test_the_worker_is_recycled_after_max_trials_or_memory_growth(make_config):
    from segsearch.engines.worker import TrialWorker, process_rss_mib

    rss = process_rss_mib(_Process().pid)
    assert rss is not None and rss > 10  # Linux: read from /proc
    events = []
    worker = TrialWorker(make_config(train={"worker_max_trials": 3}), on_event=events.append)
    assert (worker.max_trials, worker.max_growth_mb) == (3, 1024)  # the growth default
    worker.process, worker.ready_rss_mib = _Process(), rss
    worker._after_trial()
    worker._after_trial()
    assert worker.process is not None and [e["event"] for e in events] == ["worker_memory"] * 2
    assert events[-1]["trials"] == 2 and events[-1]["rss_mib"] > 10
    worker._after_trial()
    assert worker.process is None  # closed: the next trial starts a fresh one
    assert events[-1]["event"] == "worker_recycle"
    assert events[-1]["reason"] == "it trained 3 trials (train.worker_max_trials)"

    events.clear()
    grown = TrialWorker(make_config(train={"worker_max_trials": None, "worker_max_growth_mb": 50}),
                        on_event=events.append)
    grown.process, grown.ready_rss_mib = _Process(), rss - 49  # 49 MiB more than when ready
    grown._after_trial()
    assert grown.process is not None
    grown.ready_rss_mib = rss - 60
    grown._after_trial()
    assert grown.process is None and events[-1]["event"] == "worker_recycle"
    assert "its memory grew by" in events[-1]["reason"] and events[-1]["growth_mib"] >= 50


# ------------------------------------------------------------------ errors inside the pipeline
def _plant_missing_module(monkeypatch):
    """Make building every batch fail as an import of a missing module would; returns the undo."""
    from segsearch.data import pipeline

    original = pipeline.transform

    def transform(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'scipy'", name="scipy")

    monkeypatch.setattr(pipeline, "transform", transform)
    return lambda: monkeypatch.setattr(pipeline, "transform", original)


def test_an_error_inside_the_input_pipeline_is_reported_as_itself(make_config, standin,
                                                                  monkeypatch):
    _plant_missing_module(monkeypatch)
    config = make_config(trials=3)
    events = []
    with pytest.raises(StudyError) as caught:
        Study(config).run(progress=events.append)
    message = str(caught.value)
    # the run stops after the first two trials, which failed with the same error
    assert message.startswith("the first 2 trials of this run failed with the same error: "
                              "ModuleNotFoundError while reading the data at test_failures.py:")
    assert "No module named 'scipy'; install it: pip install scipy." in message
    assert "run the same command again" in message and "runs the failed trials again" in message
    assert "Graph execution error" not in message and "UnknownError" not in message
    ends = [e for e in events if e["event"] == "trial_end"]
    assert [e["trial"] for e in ends] == [0, 1]
    for end in ends:
        assert end["state"] == "failed"
        assert end["reason"].startswith("ModuleNotFoundError while reading the data")
        assert "Graph execution error" not in end["reason"]
    records = Study.open(config.study_dir).trials()
    assert [(r.number, r.state, r.failure) for r in records] == [(0, "failed", "environment"),
                                                                 (1, "failed", "environment")]
    assert "No module named 'scipy'" in records[0].reason
    # the full traceback is kept: the original first, then what TensorFlow made of it
    text = (config.study_dir / "trials" / "0000" / ERROR_FILE).read_text()
    assert text.startswith(records[0].reason + "\n")
    assert "Traceback (most recent call last)" in text and "in transform" in text
    assert "ModuleNotFoundError: No module named 'scipy'" in text


# ------------------------------------------------------------------ resume runs failures again
def _optuna(config):
    return optuna.load_study(study_name=config.study,
                             storage=f"sqlite:///{config.study_dir / 'study.db'}")


def test_resume_runs_again_environment_failures_and_seed_trials_not_configuration_failures(
        make_config, standin, monkeypatch):
    # the stand-in's seed trials: 0 (the seed network) and 1 (its one learning-rate neighbour)
    # 0: seed, a RuntimeError (error) | 1: seed, NaN loss (configuration) | 2: a missing module
    # (environment) | 3: complete | 4: a RuntimeError, not a seed (error) | 5: complete
    monkeypatch.setenv("SEGSEARCH_FAULT", "0:raise,2:missing,4:raise")
    standin(nan_builds=(2,))
    first = Study(make_config(trials=2, search={"max_failures": 9})).run()
    assert [(r.number, r.state, r.failure) for r in first.trials] == [
        (0, "failed", "error"), (1, "failed", "configuration"), (2, "failed", "environment"),
        (3, "complete", None), (4, "failed", "error"), (5, "complete", None)]
    for number in (0, 1, 2, 4):
        assert (first.study_dir / "trials" / f"{number:04d}" / ERROR_FILE).is_file()
    assert not (first.study_dir / "trials" / "0003" / ERROR_FILE).exists()
    assert "pip install scipy" in first.trials[2].reason

    monkeypatch.delenv("SEGSEARCH_FAULT")
    standin(nan_builds=())
    config = make_config(trials=4)
    again = Study(config).run()
    assert len(again.trials) == 8 and sum(r.finished_ok for r in again.trials) == 4
    study = _optuna(config)
    retries = {t.number: t.user_attrs.get("retry_of") for t in study.trials if t.number >= 6}
    assert retries == {6: 0, 7: 2}  # not 1 (NaN) nor 4 (not a seed); the seed first
    for number, old in retries.items():
        assert study.trials[number].params == study.trials[old].params
        assert again.trials[number].state == "complete"
    assert study.trials[6].user_attrs.get("seed_network") is True
    # each failure runs again once: with more trials asked for, the sampler proposes the rest
    config = make_config(trials=5)
    last = Study(config).run()
    assert len(last.trials) == 9 and _optuna(config).trials[8].user_attrs.get("retry_of") is None


def test_the_failed_seed_trials_run_first_after_the_cause_is_fixed(make_config, standin,
                                                                   monkeypatch):
    fix = _plant_missing_module(monkeypatch)
    config = make_config(trials=3)
    with pytest.raises(StudyError, match="the first 2 trials"):
        Study(config).run()
    fix()
    results = Study(config).run()
    study = _optuna(config)
    # the stand-in has two seed trials (its learning rate has one neighbour in range): both run
    # again first, as trials 2 and 3, then the sampler's own
    assert [t.user_attrs.get("retry_of") for t in study.trials[2:]] == [0, 1, None]
    assert study.trials[2].params == study.trials[0].params  # the seed network, trained
    assert study.trials[2].user_attrs.get("seed_network") is True
    assert study.trials[3].user_attrs.get("seed_neighbour") is True
    assert [(r.number, r.state) for r in results.trials] == [
        (0, "failed"), (1, "failed"), (2, "complete"), (3, "complete"), (4, "complete")]


def test_keras_tuner_runs_failed_trials_again_under_their_numbers(make_config, standin,
                                                                  monkeypatch):
    monkeypatch.setenv("SEGSEARCH_FAULT", "0:missing,1:missing")
    config = make_config("keras-tuner", trials=2, search={"algorithm": "random"})
    with pytest.raises(StudyError, match="the first 2 trials.*No module named 'scipy'"):
        Study(config).run()
    monkeypatch.delenv("SEGSEARCH_FAULT")
    results = Study(config).run()
    assert [(r.number, r.state) for r in results.trials] == [(0, "complete"), (1, "complete")]
    folder = config.study_dir / "trials" / "0000"
    assert not (folder / ERROR_FILE).exists()  # this time it completed
    assert "No module named 'scipy'" in (folder / "error-1.txt").read_text()  # the earlier failure
