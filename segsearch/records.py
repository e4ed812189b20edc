"""The study's records: :class:`TrialRecord`, ``trials.csv`` and the files of each trial.

Every trial, whichever engine ran it, ends as a :class:`TrialRecord` written to
``trials/<nnnn>/trial.json`` in the study folder (beside ``history.csv``, its metrics per epoch),
and the study's ``trials.csv`` holds one row per trial::

    number,state,architecture,value,epochs,initial_epoch,duration_s,started,finished,reason,
    params_<name>...,metrics_<name>...

What an engine's own storage holds (Optuna's database, keras-tuner's project) each engine reads
into these records itself (``read_records`` in :data:`segsearch.engines.RECORD_READERS`). This
module imports no engine, nor TensorFlow, Optuna or keras-tuner (``segsearch status`` stays fast).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from segsearch.jsonable import jsonable

__all__ = [
    "TrialRecord",
    "Objective",
    "State",
    "STATES",
    "sort_best",
    "write_trials_csv",
    "read_trials_csv",
    "read_history",
    "read_trial_records",
    "architecture_of",
    "atomic_write_text",
    "write_owner",
    "owner_gone",
    "check_checkpoint",
    "trial_dir",
    "TRIAL_FILE",
    "HISTORY_FILE",
    "ERROR_FILE",
    "FAILURES",
    "CHECKPOINT_FILE",
    "LAST_CHECKPOINT_FILE",
    "OWNER_FILE",
    "STALE_FIX",
]

State = Literal["complete", "pruned", "running", "stale", "infeasible", "failed"]
#: every state, in the order ``segsearch status`` counts them.
STATES: tuple[str, ...] = ("complete", "pruned", "running", "stale", "infeasible", "failed")
#: states a requested trial count counts (``search.trials``).
FINISHED_STATES: tuple[str, ...] = ("complete", "pruned")

TRIAL_FILE = "trial.json"
HISTORY_FILE = "history.csv"
#: a failed trial's full traceback (or, when there is none, its reason).
ERROR_FILE = "error.txt"
#: why a trial failed, as far as the resume is concerned: "environment" (outside the
#: configuration: an import error, a missing file, a full disk, a killed worker; run again on
#: resume), "configuration" (infeasible, out of memory, a NaN loss; never run again), "error"
#: (anything else; run again on resume only for the seed trials).
FAILURES: tuple[str, ...] = ("environment", "configuration", "error")
CHECKPOINT_FILE = "model.keras"
#: the state after a trial's last epoch, when its best epoch came earlier (training continues
#: from it).
LAST_CHECKPOINT_FILE = "last.keras"

_FIXED_COLUMNS = ("number", "state", "architecture", "value", "epochs", "initial_epoch",
                  "duration_s", "started", "finished", "reason")


@dataclass
class TrialRecord:
    """One trial as both engines report it.

    Args:
        number: the trial's number in the study, from 0.
        state: "complete", "pruned" (stopped early by the pruner or the algorithm), "failed"
            (an error, a NaN loss, an interrupted run), "infeasible" (the configuration cannot
            work at this input size; not counted, not retried), "running", or "stale" (running in
            the records, but the process that ran it is gone: cut off by a kill; the next run
            runs it again).
        architecture: the architecture's registry key.
        params: the hyperparameter values (active ones, fixed ones included).
        value: the objective at the best epoch (the first objective when there are several).
        values: all validation metrics at the best epoch, e.g. {"val_dice": 0.81, "val_loss": 0.3}.
        epochs: the epochs this trial trained (an epoch inherited from a promoted trial excluded).
        duration_s: wall time of the trial in seconds.
        reason: why a trial was pruned, failed or infeasible.
        started: ISO time the trial started.
        finished: ISO time the trial ended.
        initial_epoch: the epoch training started from (> 0 for a trial continuing a checkpoint).
        best_epoch: the epoch (1-based, counted from 0 of the network) of ``value``.
        objectives: every objective's value at the best epoch (several-objective studies).
        checkpoint: the trial's checkpoint file, relative to the study folder, while it is kept.
        failure: for a failed or infeasible trial, one of :data:`FAILURES` (None otherwise, and
            for records of earlier versions).
        timings: where the trial's seconds went, by phase (setup, build, data, first_step,
            first_epoch, epoch, checkpoint, ...: ``segsearch.engines.trial.PHASES``).
        batch_size: the batch size the trial trained at when it was not ``train.batch_size``
            (the out-of-memory retry's half); None otherwise.
    """

    number: int
    state: State
    architecture: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    value: float | None = None
    values: dict[str, float] = field(default_factory=dict)
    epochs: int = 0
    duration_s: float | None = None
    reason: str | None = None
    started: str | None = None
    finished: str | None = None
    initial_epoch: int = 0
    best_epoch: int | None = None
    objectives: list[float] | None = None
    checkpoint: str | None = None
    failure: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    batch_size: int | None = None

    @property
    def finished_ok(self) -> bool:
        """Whether the trial counts towards ``search.trials`` (complete or pruned)."""
        return self.state in FINISHED_STATES

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN and infinities become None)."""
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        """Rebuild a record from :meth:`to_dict` output (unknown keys are ignored).

        Args:
            data: the dict.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the record as JSON, atomically.

        Args:
            path: the file, usually ``trials/<nnnn>/trial.json``.
        """
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrialRecord:
        """Read a record written by :meth:`save`.

        Args:
            path: the JSON file.
        """
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_row(self) -> dict[str, Any]:
        """A flat dict for ``trials.csv``: fixed columns, ``params_<name>``, ``metrics_<name>``."""
        row: dict[str, Any] = {name: getattr(self, name) for name in _FIXED_COLUMNS}
        for name, value in self.params.items():
            row[f"params_{name}"] = value
        for name, value in self.values.items():
            row[f"metrics_{name}"] = value
        return jsonable(row)


@dataclass(frozen=True)
class Objective:
    """The metric(s) a search optimises.

    Args:
        names: the metrics, e.g. ("val_dice",); the first decides the best epoch and trial.
        directions: "maximize" or "minimize", one per name.
    """

    names: tuple[str, ...] = ("val_dice",)
    directions: tuple[str, ...] = ("maximize",)

    @property
    def name(self) -> str:
        """The first (deciding) objective."""
        return self.names[0]

    @property
    def direction(self) -> str:
        """The direction of the first objective."""
        return self.directions[0]

    def better(self, value: float | None, than: float | None) -> bool:
        """Whether ``value`` improves on ``than`` for the first objective (None/NaN never does).

        Args:
            value: the candidate.
            than: the value so far (None: anything finite is better).
        """
        if value is None or not math.isfinite(value):
            return False
        if than is None or not math.isfinite(than):
            return True
        return value > than if self.direction == "maximize" else value < than

    def worst(self) -> float:
        """The worst possible value of the first objective."""
        return -math.inf if self.direction == "maximize" else math.inf


def trial_dir(study_dir: str | os.PathLike[str], number: int) -> Path:
    """The folder of trial ``number`` in a study: ``trials/<nnnn>``.

    Args:
        study_dir: the study folder.
        number: the trial number.
    """
    return Path(study_dir) / "trials" / f"{int(number):04d}"


def sort_best(
    records: Iterable[TrialRecord], direction: str = "maximize"
) -> list[TrialRecord]:
    """Records best first: complete trials by value, then pruned ones by value, then the rest by
    number.

    A pruned trial's value is its best epoch before it was stopped, often early and by luck (an
    untrained network that marks every pixel can score well at epoch 1); the best configuration,
    trained further and exported, is chosen among complete trials, so it heads the list.

    Args:
        records: the trials.
        direction: "maximize" or "minimize" (of the first objective).
    """
    sign = -1.0 if direction == "maximize" else 1.0
    scored = [r for r in records if r.value is not None and r.finished_ok]
    others = [r for r in records if r not in scored]
    scored.sort(key=lambda r: (r.state != "complete", sign * r.value, r.number))
    others.sort(key=lambda r: r.number)
    return scored + others


def write_trials_csv(records: Sequence[TrialRecord], path: str | os.PathLike[str]) -> Path:
    """Write ``trials.csv`` (one row per trial, by number), atomically.

    Args:
        records: the trials.
        path: the CSV file.
    """
    rows = [r.to_row() for r in sorted(records, key=lambda r: r.number)]
    params = sorted({k for row in rows for k in row if k.startswith("params_")})
    metrics = sorted({k for row in rows for k in row if k.startswith("metrics_")})
    columns = list(_FIXED_COLUMNS) + params + metrics
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def read_trials_csv(path: str | os.PathLike[str]) -> list[TrialRecord]:
    """Read the records back from ``trials.csv`` (values parsed to numbers, booleans, None).

    Args:
        path: the CSV file.
    """
    records = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            data: dict[str, Any] = {"params": {}, "values": {}}
            for key, text in row.items():
                value = _parse_cell(text)
                if key.startswith("params_"):
                    if text != "":
                        data["params"][key[len("params_"):]] = value
                elif key.startswith("metrics_"):
                    if text != "":
                        data["values"][key[len("metrics_"):]] = value
                else:
                    data[key] = value
            data["number"] = int(data["number"])
            data["state"] = str(data["state"])
            for key in ("epochs", "initial_epoch"):
                data[key] = int(data.get(key) or 0)
            if data.get("architecture") is not None:
                data["architecture"] = str(data["architecture"])
            for key in ("reason", "started", "finished"):
                if data.get(key) is not None:
                    data[key] = str(data[key])
            records.append(TrialRecord.from_dict(data))
    return records


def read_history(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Read a trial's ``history.csv`` (one row per epoch: epoch, loss, val_loss, val_dice, ...).

    Args:
        path: the CSV file.
    """
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


def architecture_of(params: Mapping[str, Any], architectures: Sequence[str]) -> str | None:
    """The architecture a trial's values select (the only one, or the "architecture" value).

    Args:
        params: the trial's hyperparameter values.
        architectures: the study's architectures.
    """
    if len(architectures) == 1:
        return str(architectures[0])
    value = params.get("architecture")
    return None if value is None else str(value)


def read_trial_records(study_dir: str | os.PathLike[str]) -> list[TrialRecord]:
    """The records the trials wrote (``trials/<nnnn>/trial.json``), by number.

    Args:
        study_dir: the study folder.
    """
    out = []
    for path in sorted(Path(study_dir).glob(f"trials/*/{TRIAL_FILE}")):
        try:
            out.append(TrialRecord.load(path))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(out, key=lambda r: r.number)


#: what a stale trial's reason says to do.
STALE_FIX = "the next run runs it again"
#: the file in a trial's folder that names the process running it (host, pid).
OWNER_FILE = "owner.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def owner_gone(host: Any, pid: Any) -> str | None:
    """Why a running trial's process is known to be gone (it ran on this machine and its pid is
    not alive), or None."""
    if host != socket.gethostname() or pid is None:
        return None
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return None
    return None if _pid_alive(pid) else f"process {pid} on {host} is gone"


def write_owner(folder: str | os.PathLike[str]) -> None:
    """Name this process as the one running the trial of ``folder`` (``owner.json``: host, pid),
    so that ``segsearch status`` can tell a trial whose process is gone (stale).

    Args:
        folder: the trial's folder.
    """
    atomic_write_text(Path(folder) / OWNER_FILE,
                      json.dumps({"host": socket.gethostname(), "pid": os.getpid()}) + "\n")


def check_checkpoint(record: TrialRecord, study_dir: str | os.PathLike[str]) -> None:
    if record.checkpoint and not (Path(study_dir) / record.checkpoint).exists():
        record.checkpoint = None


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename (never half a file).

    Args:
        path: the destination.
        text: the content.

    Raises:
        OSError: the write failed (the disk is full, ...); the error names ``path`` and no
            temporary file is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, str(tmp)):
            # a failed write names no file (or the temporary one): name the file it was for
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def _parse_cell(text: str | None) -> Any:
    if text is None or text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text
