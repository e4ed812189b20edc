"""The Optuna engine's records, read without the engine (no TensorFlow: ``segsearch status``).

:func:`read_records` opens a study's Optuna storage read-only and turns every trial into a
:class:`segsearch.records.TrialRecord`; the engine (:mod:`segsearch.engines.optuna_engine`) reads
its live study through :func:`optuna_records` too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from segsearch.records import (
    STALE_FIX,
    TrialRecord,
    architecture_of,
    check_checkpoint,
    owner_gone,
)

__all__ = ["read_records", "optuna_records", "grace_period", "OPTUNA_RECORD_ATTR", "PARAMS_ATTR"]


def read_records(config: Any, study_dir: str | os.PathLike[str], *, storage_url: str,
                 state: Any) -> list[TrialRecord]:
    """Every trial of the study's Optuna storage, by number (opened read-only; nothing written).

    Args:
        config: the study's Config.
        study_dir: the study folder.
        storage_url: the resolved storage URL.
        state: what the storage holds (:class:`segsearch.engines.storage.StorageState`).
    """
    if not state.ok:
        return []  # nothing ran yet
    import optuna

    from segsearch.engines.storage import load_optuna_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_optuna_study(storage_url, config.study)
    return optuna_records(study, study_dir, tuple(config.architectures))


#: Optuna user attribute holding a trial's record (a dict).
OPTUNA_RECORD_ATTR = "segsearch"
#: Optuna user attribute holding a trial's values (fixed ones too) as soon as it starts.
PARAMS_ATTR = "segsearch_params"


def optuna_records(study: Any, study_dir: str | os.PathLike[str],
                   architectures: Sequence[str]) -> list[TrialRecord]:
    """Every trial of an Optuna study as a record (the storage decides the state).

    A trial's full record lives in its user attribute ``segsearch``; a trial without one (running,
    or cut off by a killed run) gets a record from its parameters. A RUNNING trial whose driver
    process is gone (it ran on this machine) or whose heartbeat is older than
    :func:`grace_period` is "stale".

    Args:
        study: the ``optuna.Study``.
        study_dir: the study folder (to check that checkpoints still exist).
        architectures: the study's architectures.
    """
    from optuna.trial import TrialState

    states = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
              TrialState.FAIL: "failed", TrialState.RUNNING: "running",
              TrialState.WAITING: "running"}
    silent = _silent_trials(study)
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue  # enqueued, not started
        stored = t.user_attrs.get(OPTUNA_RECORD_ATTR)
        if stored:
            record = TrialRecord.from_dict(stored)
        else:
            params = dict(t.user_attrs.get(PARAMS_ATTR) or t.params)
            record = TrialRecord(number=t.number, state="running", params=params,
                                 architecture=architecture_of(params, architectures),
                                 started=t.datetime_start.isoformat(timespec="seconds")
                                 if t.datetime_start else None)
        record.number = t.number
        state = states.get(t.state, "failed")
        if state == "failed" and t.user_attrs.get("infeasible"):
            state = "infeasible"
        record.state = state  # type: ignore[assignment]
        if state in ("failed", "infeasible") and t.user_attrs.get("reason"):
            record.reason = str(t.user_attrs["reason"])
        # not stored: failed by Optuna's heartbeat check, its process died
        elif state == "failed" and not stored:
            record.reason = "cut off: its process stopped sending heartbeats; it is run again"
        if state == "running":
            gone = owner_gone(t.user_attrs.get("host"), t.user_attrs.get("pid"))
            if gone is None and t.number in silent:
                gone = f"no heartbeat for more than {grace_period()} s"
            if gone is not None:
                record.state, record.reason = "stale", f"cut off: {gone}; {STALE_FIX}"
        check_checkpoint(record, study_dir)
        out.append(record)
    return out


def heartbeat_interval() -> int:
    """Seconds between heartbeats of a running Optuna trial (``SEGSEARCH_HEARTBEAT``; 10)."""
    return int(os.environ.get("SEGSEARCH_HEARTBEAT", "10"))


def grace_period() -> int:
    """Seconds without a heartbeat after which a running Optuna trial is stale and another worker
    re-runs it (``SEGSEARCH_GRACE_PERIOD``, default 3 heartbeats, at least 30)."""
    default = max(30, 3 * heartbeat_interval())
    return int(os.environ.get("SEGSEARCH_GRACE_PERIOD", str(default)))


def _silent_trials(study: Any) -> set[int]:
    """Numbers of the RUNNING trials whose heartbeat is older than :func:`grace_period` (read
    only; Optuna has no public query: :func:`segsearch.engines._optuna_compat.stale_trial_numbers`).
    """
    from segsearch.engines._optuna_compat import stale_trial_numbers

    return stale_trial_numbers(study, heartbeat_interval(), grace_period())
