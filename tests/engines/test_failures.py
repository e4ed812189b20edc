"""Failures inside a trial (in-process, the stand-in hypermodel): out of memory (recorded, retried
at half the batch size, not trained again when proposed again) and failed trials in a row stopping
the study with their reasons. Faults are injected with SEGSEARCH_FAULT (segsearch.engines.trial)."""

from __future__ import annotations

import optuna
import pytest

from segsearch.driver import Study
from segsearch.errors import StudyError


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
    monkeypatch.setenv("SEGSEARCH_FAULT", "0:raise,1:raise")
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
    from segsearch.config import load_config

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
