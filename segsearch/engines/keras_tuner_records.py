"""The Keras Tuner engine's records, read without the engine (no TensorFlow: ``segsearch status``).

:func:`read_records` reads a study's keras-tuner project (``keras_tuner/trial_*/trial.json``) and
segsearch's own trial files into :class:`segsearch.records.TrialRecord`; the engine
(:mod:`segsearch.engines.keras_tuner_engine`) reads them through :func:`keras_tuner_records` too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segsearch.records import (
    OWNER_FILE,
    STALE_FIX,
    TrialRecord,
    architecture_of,
    check_checkpoint,
    owner_gone,
    read_trial_records,
    trial_dir,
)

__all__ = ["read_records", "keras_tuner_records"]


def read_records(config: Any, study_dir: str | os.PathLike[str], *, storage_url: str | None = None,
                 state: Any = None) -> list[TrialRecord]:
    """Every trial of the study's keras-tuner project, by number (reads files; writes nothing).

    Args:
        config: the study's Config.
        study_dir: the study folder.
        storage_url: unused (keras-tuner keeps its project in the study folder).
        state: unused (a missing or empty project holds no trial files).
    """
    return keras_tuner_records(study_dir, tuple(config.architectures))


_KT_STATES = {"COMPLETED": "complete", "FAILED": "failed", "INVALID": "failed",
              "RUNNING": "running", "IDLE": "running", "STOPPED": "failed"}
_KT_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")


def keras_tuner_records(study_dir: str | os.PathLike[str],
                        architectures: Sequence[str]) -> list[TrialRecord]:
    """Every trial of a keras-tuner project (``keras_tuner/trial_*/trial.json``) as a record.

    segsearch's own ``trials/<nnnn>/trial.json`` gives the record; keras-tuner's file gives the
    state of a trial that has none yet (running, or cut off and waiting to be retried).

    Args:
        study_dir: the study folder.
        architectures: the study's architectures.
    """
    study_dir = Path(study_dir)
    ours = {r.number: r for r in read_trial_records(study_dir)}
    out = []
    for path in study_dir.glob("keras_tuner/trial_*/trial.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        number = int(data["trial_id"])
        status = _KT_STATES.get(str(data.get("status")), "failed")
        record = ours.get(number)
        if record is None or (status == "running" and record.state != "running"):
            values = (data.get("hyperparameters") or {}).get("values") or {}
            params = {k: v for k, v in values.items() if k not in _KT_KEYS}
            record = TrialRecord(number=number, state="running", params=params,
                                 architecture=architecture_of(params, architectures))
        if status != "running" and record.state == "running":
            record.state = "failed"
            message = (data.get("message") or "").strip()
            record.reason = record.reason or (message.splitlines()[-1][:300] if message else None)
        if record.state == "running":
            owner = _read_json(trial_dir(study_dir, number) / OWNER_FILE)
            gone = owner_gone(owner.get("host"), owner.get("pid"))
            if gone is not None:
                record.state, record.reason = "stale", f"cut off: {gone}; {STALE_FIX}"
        check_checkpoint(record, study_dir)
        out.append(record)
    return sorted(out, key=lambda r: r.number)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

