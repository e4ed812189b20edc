"""The one function every trial goes through, whichever engine proposed it: :func:`run_trial`.

``run_trial(context, build, task, reporter)`` builds the network (an infeasible configuration is
reported, not raised), trains it from ``task.initial_epoch`` to ``task.epochs`` while it reports
the objective each epoch (the reporter may stop it: pruning), stops on a NaN or infinite loss, keeps
the weights and optimizer state of the best epoch, writes ``history.csv`` (one row per epoch) and,
for a trial that completes, the checkpoint ``model.keras`` (weights and optimizer state, so the
trial can be continued), and returns a :class:`TrialOutcome`. The engines only turn the outcome
into their own bookkeeping (``study.tell`` / ``oracle.end_trial``).

Everything it needs is in its arguments (plain data and two small callables), so that it can
later run in a worker process: a worker rebuilds the :class:`TrainingContext` from the study folder
and the engine's trial from its storage.
"""

from __future__ import annotations

import csv
import math
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import keras

from segsearch.engines.results import CHECKPOINT_FILE, HISTORY_FILE, Objective
from segsearch.errors import ConfigError, InfeasibleError, SegsearchError

__all__ = [
    "Objective",
    "TrainingContext",
    "TrialTask",
    "TrialOutcome",
    "Reporter",
    "run_trial",
    "release_memory",
    "save_checkpoint",
    "now_iso",
]


class Reporter(Protocol):
    """What a trial reports to its engine each epoch; True asks the trial to stop (prune)."""

    def __call__(self, epoch: int, value: float) -> bool: ...


@dataclass
class TrainingContext:
    """What every trial of a study shares: data, training settings, objective, progress, deadline.

    Args:
        train_data: the training data ``model.fit`` takes (a tf.data.Dataset or PyDataset), or a
            function of the trial's seed returning it (fresh batches, seeded per trial).
        val_data: the validation data, in the same form (or a function of the seed).
        study_dir: the study folder (trials write into ``trials/<nnnn>/``).
        objective: the metric(s) optimised.
        steps_per_epoch: batches per epoch, None for one pass.
        mixed_precision: train under the "mixed_float16" dtype policy.
        jit_compile: XLA: True, False, or "auto" (the model's compile decides).
        verbose: Keras' own fit output.
        seed: base random seed; trial n trains with seed + n.
        progress: called with each "epoch" / "final_epoch" event (a dict).
        deadline: a ``time.monotonic()`` value after which training stops at the next epoch end.
    """

    train_data: Any
    val_data: Any
    study_dir: Path
    objective: Objective = field(default_factory=Objective)
    steps_per_epoch: int | None = None
    mixed_precision: bool = False
    jit_compile: bool | str = "auto"
    verbose: int = 0
    seed: int = 0
    progress: Callable[[dict[str, Any]], None] | None = None
    deadline: float | None = None


@dataclass
class TrialTask:
    """One unit of training.

    Args:
        number: the trial number (the folder ``trials/<nnnn>``), or -1 for the final training.
        out_dir: where history.csv and model.keras go.
        epochs: the epoch to train up to (``model.fit``'s ``epochs``, counted from the network's
            first epoch).
        initial_epoch: the epoch to start from (> 0 when continuing a checkpoint).
        resume_from: a checkpoint (.keras, with optimizer state) to continue instead of building.
        baseline: the objective value the continued network already had (the final training keeps
            the checkpoint unless an epoch beats it).
        phase: "trial" or "final" (names the progress events: "epoch" / "final_epoch").
        save_checkpoint: write ``model.keras`` for a trial that completes.
    """

    number: int
    out_dir: Path
    epochs: int
    initial_epoch: int = 0
    resume_from: Path | None = None
    baseline: float | None = None
    phase: str = "trial"
    save_checkpoint: bool = True


@dataclass
class TrialOutcome:
    """What one trial produced.

    Args:
        state: "complete", "pruned", "failed" or "infeasible".
        value: the first objective at the best epoch.
        objectives: every objective at the best epoch.
        values: every validation metric (and the loss) at the best epoch.
        epochs: epochs trained by this call.
        best_epoch: the best epoch, counted from the network's first epoch.
        reason: why it was pruned, failed or infeasible.
        duration_s: wall time in seconds.
        started: ISO start time.
        finished: ISO end time.
        history: one dict per epoch.
        checkpoint: the checkpoint written, if any.
    """

    state: str
    value: float | None = None
    objectives: list[float] | None = None
    values: dict[str, float] = field(default_factory=dict)
    epochs: int = 0
    best_epoch: int | None = None
    reason: str | None = None
    duration_s: float = 0.0
    started: str | None = None
    finished: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None


def now_iso() -> str:
    """The current time, ISO 8601 with the UTC offset, to the second."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def release_memory() -> None:
    """Free the models, graphs and memory a finished trial held (Keras' session and the garbage).

    ``keras.backend.clear_session`` collects the garbage itself; one call per trial is enough (each
    costs a quarter of a second or more once TensorFlow holds many objects).
    """
    keras.backend.clear_session(free_memory=True)


class _EpochMonitor(keras.callbacks.Callback):
    """Tracks the objective, keeps the best epoch's state, writes history.csv, reports, stops.

    Its NaN check (keras.callbacks.TerminateOnNaN's, with the reason recorded) runs on every batch.
    A callback with a batch hook makes Keras wait for every step to finish before the next starts,
    unless it is ``async_safe``: then Keras runs the hook on a worker thread and the input pipeline
    keeps overlapping the training steps (measured: +5 s wall time over 3 epochs without it). The
    hook only reads the loss and sets flags, and Keras flushes the hooks before ``on_epoch_end``.
    """

    async_safe = True

    def __init__(
        self,
        task: TrialTask,
        context: TrainingContext,
        reporter: Reporter | None,
    ) -> None:
        super().__init__()
        self.task = task
        self.context = context
        self.objective = context.objective
        self.reporter = reporter
        self.best_value = task.baseline
        self.best_epoch: int | None = task.initial_epoch if task.baseline is not None else None
        self.best_logs: dict[str, float] = {}
        self.best_is_current = task.baseline is not None
        self.snapshot: tuple[list[Any], list[Any]] | None = None
        self.history: list[dict[str, float]] = []
        self.stop_state: str | None = None  # "pruned" / "failed" when training was stopped
        self.stop_reason: str | None = None
        self._history_path = task.out_dir / HISTORY_FILE
        self._columns: list[str] | None = None
        self._last_epoch_time = time.monotonic()
        self._epoch_number = task.initial_epoch

    # --- best-state bookkeeping: copy the weights only when an improved epoch is about to change
    def _take_snapshot(self) -> None:
        model = self.model
        optimizer_vars = list(getattr(model.optimizer, "variables", []) or [])
        self.snapshot = (
            model.get_weights(),
            [keras.ops.convert_to_numpy(v.value) for v in optimizer_vars],
        )
        self.best_is_current = False

    def restore_best(self) -> bool:
        """Put the best epoch's weights and optimizer state back; False when nothing to restore."""
        if self.best_is_current:
            return True
        if self.snapshot is None:
            return False
        weights, optimizer_values = self.snapshot
        self.model.set_weights(weights)
        for variable, value in zip(self.model.optimizer.variables, optimizer_values):
            variable.assign(value)
        self.best_is_current = True
        return True

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.best_is_current:
            self._take_snapshot()  # the checkpoint we continue is the value to beat

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch_number = epoch + 1
        if self.best_is_current:
            self._take_snapshot()  # the best epoch's state is about to change

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            self.stop_state = "failed"
            self.stop_reason = (
                f"the loss became {float(loss)} in epoch {self._epoch_number} (batch {batch + 1}); "
                "lower the learning rate or narrow its range"
            )

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        number = epoch + 1
        row = {"epoch": number}
        for key, value in (logs or {}).items():
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                continue
        now = time.monotonic()
        row["time_s"] = round(now - self._last_epoch_time, 3)
        self._last_epoch_time = now
        self.history.append(row)
        self._write_row(row)
        if self.stop_state == "failed":
            return
        name = self.objective.name
        if name not in row:
            reported = ", ".join(sorted(k for k in row if k not in ("epoch", "time_s")))
            raise ConfigError(
                f"search.objective: the model reports no {name!r}; it reports {reported}. "
                "Set search.objective to one of these"
            )
        value = row[name]
        if self.objective.better(value, self.best_value):
            self.best_value = value
            self.best_epoch = number
            self.best_logs = {k: v for k, v in row.items() if k not in ("epoch", "time_s")}
            self.best_is_current = True
        event = {
            "event": "final_epoch" if self.task.phase == "final" else "epoch",
            "trial": self.task.number,
            "epoch": number,
            "epochs": self.task.epochs,
            "metrics": {k: v for k, v in row.items() if k != "epoch"},
            "trial_best": self.best_value,
        }
        if self.context.progress is not None:
            self.context.progress(event)
        last = number >= self.task.epochs  # stopping after the last epoch would save nothing
        if self.reporter is not None and math.isfinite(value) and self.reporter(number, value) \
                and not last:
            self.model.stop_training = True
            self.stop_state = "pruned"
            self.stop_reason = f"pruned after epoch {number} ({name} {value:.4g})"
            return
        deadline = self.context.deadline
        if deadline is not None and time.monotonic() >= deadline and number < self.task.epochs:
            self.model.stop_training = True
            self.stop_state = "time_limit"
            self.stop_reason = f"search.time_limit reached after epoch {number}"

    def _write_row(self, row: Mapping[str, float]) -> None:
        new = self._columns is None
        if new:
            self._columns = list(row)
        with open(self._history_path, "w" if new else "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore",
                                    lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow(row)


def save_checkpoint(model: Any, path: Path) -> Path:
    """Save a model (weights and optimizer state) to ``path`` through a temporary file and a rename.

    Args:
        model: the Keras model.
        path: the .keras file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return path


def run_trial(
    context: TrainingContext,
    build: Callable[[], Any],
    task: TrialTask,
    reporter: Reporter | None = None,
) -> TrialOutcome:
    """Build, train and checkpoint one trial; never raises for a trial-level failure.

    Args:
        context: what the study's trials share (data, settings, objective, progress, deadline).
        build: returns the compiled model (``lambda: hypermodel.build(hp)``); may raise
            InfeasibleError, which becomes an "infeasible" outcome. Unused when
            ``task.resume_from`` is set.
        task: the epochs to train, where to write, what to continue.
        reporter: called with (epoch, objective value) after every epoch; True stops the trial as
            "pruned".

    Returns:
        The outcome: "complete", "pruned", "failed" (NaN loss, an error in training, the time limit)
        or "infeasible".

    Raises:
        ConfigError, WeightsError, StudyError: a problem with the configuration itself, which no
            other trial would escape either.
        KeyboardInterrupt: the run was interrupted; the trial is left for the engine to re-run.
    """
    previous_policy = keras.mixed_precision.dtype_policy()
    policy = "mixed_float16" if context.mixed_precision else "float32"
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        return _run_trial(context, build, task, reporter)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _run_trial(
    context: TrainingContext,
    build: Callable[[], Any],
    task: TrialTask,
    reporter: Reporter | None,
) -> TrialOutcome:
    started = now_iso()
    t0 = time.monotonic()
    task.out_dir.mkdir(parents=True, exist_ok=True)
    release_memory()
    seed = context.seed + max(task.number, 0)
    keras.utils.set_random_seed(seed)

    def finish(outcome: TrialOutcome) -> TrialOutcome:
        outcome.started = started
        outcome.finished = now_iso()
        outcome.duration_s = round(time.monotonic() - t0, 3)
        return outcome

    try:
        if task.resume_from is not None:
            model = keras.saving.load_model(task.resume_from)
        else:
            model = build()
    except InfeasibleError as e:
        return finish(TrialOutcome(state="infeasible", reason=str(e)))
    except SegsearchError:
        raise
    except Exception as e:  # noqa: BLE001 - a trial that cannot be built fails alone
        return finish(TrialOutcome(state="failed", reason=_error_reason("building the model", e)))

    if context.jit_compile != "auto":
        model.jit_compile = bool(context.jit_compile)
    monitor = _EpochMonitor(task, context, reporter)
    callbacks = [monitor]
    train_data, val_data = context.train_data, context.val_data
    if callable(train_data):
        train_data = train_data(seed)
    if callable(val_data):
        val_data = val_data(seed)
    try:
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=task.epochs,
            initial_epoch=task.initial_epoch,
            steps_per_epoch=context.steps_per_epoch,
            shuffle=not _is_dataset(train_data),
            callbacks=callbacks,
            verbose=context.verbose,
        )
    except SegsearchError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - e.g. out of memory: this trial fails, the study goes on
        outcome = TrialOutcome(state="failed", reason=_error_reason("training", e),
                               history=monitor.history, epochs=len(monitor.history))
        del model  # released when the next trial starts
        return finish(outcome)

    epochs_run = len(monitor.history)
    outcome = TrialOutcome(
        state="complete",
        value=monitor.best_value,
        values=dict(monitor.best_logs),
        epochs=epochs_run,
        best_epoch=monitor.best_epoch,
        history=monitor.history,
    )
    if monitor.best_logs:
        outcome.objectives = [monitor.best_logs.get(n) for n in context.objective.names]
    if monitor.stop_state == "failed":
        outcome.state, outcome.reason = "failed", monitor.stop_reason
    elif monitor.stop_state == "pruned":
        outcome.state, outcome.reason = "pruned", monitor.stop_reason
    elif monitor.stop_state == "time_limit" and task.phase == "trial":
        outcome.state, outcome.reason = "failed", monitor.stop_reason
    elif outcome.value is None and task.baseline is None:
        outcome.state = "failed"
        outcome.reason = f"{context.objective.name} was never finite"

    if outcome.state == "complete" and task.save_checkpoint:
        monitor.restore_best()
        outcome.checkpoint = save_checkpoint(model, task.out_dir / CHECKPOINT_FILE)
    del model  # released when the next trial starts
    return finish(outcome)


def _is_dataset(data: Any) -> bool:
    """Whether ``data`` shuffles itself (tf.data or a PyDataset) rather than being arrays."""
    return not isinstance(data, (tuple, list)) and not hasattr(data, "__array__")


def _error_reason(doing: str, error: BaseException) -> str:
    """One line for a record: the error type and message, and where in the code it came from."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__} while {doing}{where}: {message}"[:500]
