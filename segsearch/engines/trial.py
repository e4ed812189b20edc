"""The one function every trial goes through, whichever engine proposed it: :func:`run_trial`.

``run_trial(context, build, task, reporter)`` builds the network (an infeasible configuration is
reported, not raised), trains it from ``task.initial_epoch`` to ``task.epochs`` while it reports
the objective each epoch (the reporter may stop it: pruning), stops a network that diverged (a NaN
or infinite loss or weight, huge weights, a loss risen a thousand-fold, saturated outputs: see
:func:`divergence`), keeps the weights and optimizer state of the best epoch (best by an
exponential moving average of the objective, :data:`segsearch.scores.EMA_ALPHA`, not one lucky
epoch; the trial's value is that average), writes ``history.csv`` (one row per epoch) and,
for a trial that completes, the checkpoint ``model.keras`` (the best epoch: weights and optimizer
state) and, when the best epoch was not the last, ``last.keras`` (the state after the last epoch,
which a continuation starts from, so no epoch of training is thrown away), and returns a
:class:`TrialOutcome`. The engines only turn the outcome
into their own bookkeeping (``study.tell`` / ``oracle.end_trial``).

A failed trial's outcome says why (``failure``: outside the configuration, the configuration, or
another error; see :data:`segsearch.records.FAILURES`) and carries the full traceback,
which is written to the trial's ``error.txt``. An exception raised inside the input pipeline is
reported as itself (``ModuleNotFoundError: No module named 'scipy'``), not as the error TensorFlow
wraps it in ("UnknownError ... Graph execution error").

Everything it needs is in its arguments (plain data and two small callables), so that it can
later run in a worker process: a worker rebuilds the :class:`TrainingContext` from the study folder
and the engine's trial from its storage.
"""

from __future__ import annotations

import csv
import errno
import functools
import importlib
import importlib.util
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

from segsearch import heap, scores
from segsearch.data.pipeline import producer_error
from segsearch.errors import (
    DISK_ERRNOS,
    ConfigError,
    InfeasibleError,
    SegsearchError,
    StudyError,
    os_error_message,
)
from segsearch.precision import policy_name
from segsearch.records import (
    CHECKPOINT_FILE,
    ERROR_FILE,
    HISTORY_FILE,
    LAST_CHECKPOINT_FILE,
    Objective,
)

__all__ = [
    "Objective",
    "TrainingContext",
    "TrialTask",
    "TrialOutcome",
    "Reporter",
    "run_trial",
    "release_memory",
    "save_checkpoint",
    "continuation",
    "smoothed_at_end",
    "adapt_batch_norm",
    "now_iso",
    "is_out_of_memory",
    "divergence",
    "DIVERGED_WEIGHT",
    "DIVERGED_LOSS_FACTOR",
    "DIVERGED_SATURATED",
    "failure_kind",
    "error_reason",
    "write_error_file",
]

#: A trainable weight larger than this in magnitude means the training diverged (see divergence).
DIVERGED_WEIGHT = 1e8
#: An epoch loss this many times the first epoch's means the training diverged (see divergence).
DIVERGED_LOSS_FACTOR = 1e3
#: The share of a validation batch's pixels whose true class has probability exactly 0 (where the
#: unclipped cross-entropy is infinite) that means the training diverged (see divergence).
DIVERGED_SATURATED = 0.01


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
        mixed_precision: ``train.mixed_precision``: "auto" (bfloat16 on a GPU that has it,
            float16 on an older one, float32 on a CPU), True ("mixed_float16"), False (float32),
            or a policy name (see ``segsearch.precision``); picked where the trial trains.
        jit_compile: XLA: True, False, or "auto" (the model's compile decides).
        verbose: Keras' own fit output.
        seed: base random seed; trial n trains with seed + n.
        progress: called with each "epoch" / "final_epoch" event (a dict).
        deadline: a ``time.monotonic()`` value after which training stops at the next epoch end.
        epoch_steps: training batches per epoch; with it (a search's training), batch norms whose
            moving statistics would lag behind are made to follow (:func:`adapt_batch_norm`).
            None: left as built.
        smoothing: weight of the newest epoch in the moving average of the objective that picks
            the best epoch (1: the raw best epoch).
        val_callback: returns a Keras callback that puts the ``val_*`` metrics into each epoch's
            logs (patch mode: whole validation images scored through sliding windows, see
            ``segsearch.sliding``); with it, ``val_data`` is not passed to ``model.fit``.
        latency_batches: timed batches whose median is a trial's ``latency_ms`` (when it is an
            objective; see :mod:`segsearch.cost`).
        latency_batch_size: images per batch for ``latency_ms``.
        tensorboard_dir: where each training writes its TensorBoard run
            (:mod:`segsearch.tensorboard_logs`, ``export.tensorboard``); None: none is written.
    """

    train_data: Any
    val_data: Any
    study_dir: Path
    objective: Objective = field(default_factory=Objective)
    steps_per_epoch: int | None = None
    mixed_precision: bool | str = False
    jit_compile: bool | str = "auto"
    verbose: int = 0
    seed: int = 0
    progress: Callable[[dict[str, Any]], None] | None = None
    deadline: float | None = None
    epoch_steps: int | None = None
    smoothing: float = scores.EMA_ALPHA
    val_callback: Callable[[], Any] | None = None
    latency_batches: int = 20
    latency_batch_size: int = 1
    tensorboard_dir: Path | None = None


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
        baseline: the best objective value the continued network already had; an epoch must beat
            it to count (the final training writes no checkpoint when none does, and the trial's
            own best stays the best).
        phase: "trial", "final" or "refit" (names the progress events: "epoch" / "final_epoch" /
            "refit_epoch").
        save_checkpoint: write ``model.keras`` for a trial that completes.
        batch_size: the batch size to train with (None: ``train.batch_size``; the out-of-memory
            retry halves it).
        smoothed_start: the moving average of the objective the continued network ended with
            (a continuation carries its average on); None: the first epoch starts it.
        fold: the cross-validation fold a "refit" trains on (``segsearch.folds``); None: the
            study's own split.
        hparams: the trial's hyperparameter values (its TensorBoard HParams); None: unknown.
        schedule: the learning rate over this training's epochs: "constant" (the compiled or
            checkpointed rate) or "cosine" (:class:`CosineDecay`: from that rate down to nearly 0
            by the last epoch; ``train.final_schedule`` for the final training).
    """

    number: int
    out_dir: Path
    epochs: int
    initial_epoch: int = 0
    resume_from: Path | None = None
    baseline: float | None = None
    phase: str = "trial"
    save_checkpoint: bool = True
    batch_size: int | None = None
    smoothed_start: float | None = None
    fold: int | None = None
    hparams: dict[str, Any] | None = None
    schedule: str = "constant"


@dataclass
class TrialOutcome:
    """What one trial produced.

    Args:
        state: "complete", "pruned", "failed" or "infeasible".
        value: the moving average of the first objective at the best epoch.
        objectives: every objective at the best epoch (a cost objective, ``params``, ``flops`` or
            ``latency_ms``, measured on the trained model).
        values: every validation metric (and the loss) at the best epoch, and the costs measured.
        epochs: epochs trained by this call.
        best_epoch: the best epoch, counted from the network's first epoch.
        reason: why it was pruned, failed or infeasible.
        duration_s: wall time in seconds.
        started: ISO start time.
        finished: ISO end time.
        history: one dict per epoch.
        checkpoint: the checkpoint written, if any.
        oom: the trial failed because it ran out of (accelerator) memory.
        crashed: the trial's worker process died.
        diverged: the trial failed because its training diverged (reason "diverged: ..."): a
            property of the configuration, so it is not worth running again.
        failure: why a failed or infeasible trial failed: "environment", "configuration" or
            "error" (see :data:`segsearch.records.FAILURES`).
        error: the full traceback of a failed trial (its ``error.txt``).
        timings: where the trial's seconds went (:data:`PHASES`).
        batch_size: the batch size it trained at, when not ``train.batch_size`` (the
            out-of-memory retry's half).
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
    oom: bool = False
    crashed: bool = False
    diverged: bool = False
    failure: str | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    batch_size: int | None = None


#: the phases of a trial's wall time, in seconds, as ``TrialOutcome.timings`` records them:
#: ``setup`` (the previous trial's memory released, seeds), ``build`` (the network built and
#: compiled, or its checkpoint loaded), ``data`` (the trial's input pipelines made),
#: ``first_step`` (``model.fit`` called until the first training step ended: tracing and XLA
#: compilation), ``first_epoch`` (the whole first epoch, its validation included),
#: ``first_validation`` (the first epoch's validation: its compilation), ``epoch`` (the mean
#: of the later epochs), ``validation`` (the mean of their validations), ``checkpoint`` (the
#: checkpoints written), ``total`` (the whole of run_trial); the driver adds ``worker_start``
#: (a worker process started for this trial) and ``driver_total`` (the trial as the driver saw
#: it).
PHASES = ("setup", "build", "data", "first_step", "first_epoch", "first_validation", "epoch",
          "validation", "checkpoint", "total", "worker_start", "driver_total")


def now_iso() -> str:
    """The current time, ISO 8601 with the UTC offset, to the second."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def divergence(model: Any, loss: float | None = None, first_loss: float | None = None,
               batch: tuple[Any, Any] | None = None) -> str | None:
    """Why a network's training diverged, or None while it has not.

    The losses segsearch trains with are bounded (cross-entropy and focal clip the probabilities
    to [1e-7, 1 - 1e-7], so they never exceed about 16; dice and tversky never exceed 1). A network
    whose weights blow up therefore keeps a finite, ordinary-looking loss: its outputs saturate, the
    clipped loss sits at its ceiling, its gradients vanish and nothing can bring it back (SGD at a
    learning rate of 1e6 reaches weights of 1e28 with a loss of 8). The loss alone cannot tell, so
    the weights and the unclipped loss are looked at too. The rules, each far from any healthy
    training:

    - a weight (any variable: kernels, biases, batch-norm statistics) is NaN or infinite: the
      network computes NaN from now on;
    - a trainable weight exceeds :data:`DIVERGED_WEIGHT` (1e8) in magnitude: initializers scale
      weights by 1/sqrt(fan_in), and a training that works keeps them within a few units (a few
      hundred at most); 1e8 is six orders of magnitude above that and far below float32's overflow
      (3e38), so divergence is caught long before the weights turn infinite, and float16 activations
      (mixed precision) would overflow at 65504 well before;
    - the epoch's loss exceeds :data:`DIVERGED_LOSS_FACTOR` (1e3) times the first epoch's: noise
      and a bad learning-rate step move a loss by a factor of a few, not a thousand;
    - the unclipped cross-entropy is infinite on at least :data:`DIVERGED_SATURATED` (1 %) of the
      pixels of a validation batch (:func:`segsearch.losses.unclipped_infinite`): the network gives
      their true class a probability of exactly 0, a logit beyond about 17 the wrong way. A network
      that blew up does so on every pixel it gets wrong (a third or more); a healthy one is not
      that certain of that many wrong pixels (one stray pixel is not enough, so label noise at a
      border does not count).

    Args:
        model: the Keras model (its outputs are probabilities, as every segsearch model's).
        loss: this epoch's training loss (None: not checked).
        first_loss: the first epoch's training loss of this training run.
        batch: (images, masks) of one validation batch for the unclipped loss (None: not checked).

    Returns:
        One line saying what diverged (without the "diverged: " prefix), or None.
    """
    ops = keras.ops
    variables = [v for v in model.weights
                 if "float" in str(v.dtype) and all(int(d or 0) > 0 for d in v.shape)]
    if variables:
        finite = ops.convert_to_numpy(ops.stack([ops.all(ops.isfinite(v.value))
                                                 for v in variables]))
        for variable, ok in zip(variables, finite):
            if not ok:
                return f"weight {_variable_name(variable)} is not finite"
    trainable = {id(v) for v in model.trainable_weights}
    variables = [v for v in variables if id(v) in trainable]
    if variables:
        largest = ops.convert_to_numpy(ops.stack([ops.cast(ops.max(ops.abs(v.value)), "float32")
                                                  for v in variables]))
        index = int(largest.argmax())
        if float(largest[index]) > DIVERGED_WEIGHT:
            return (f"weight {_variable_name(variables[index])} reached "
                    f"{float(largest[index]):.3g} (more than {DIVERGED_WEIGHT:.0e})")
    if loss is not None and first_loss is not None and math.isfinite(loss) and first_loss > 0 \
            and loss > DIVERGED_LOSS_FACTOR * first_loss:
        return (f"the loss rose from {first_loss:.4g} in the first epoch to {loss:.4g} (more than "
                f"{DIVERGED_LOSS_FACTOR:.0e} times)")
    if batch is not None:
        from segsearch.losses import unclipped_infinite

        outputs = model(batch[0], training=False)
        if isinstance(outputs, (list, tuple)) or len(outputs.shape) != len(batch[1].shape):
            return None  # not a segsearch model's single probability map
        share = unclipped_infinite(batch[1], outputs)
        if share >= DIVERGED_SATURATED:
            return (f"the network gives {share:.0%} of the pixels of a validation batch a "
                    "probability of exactly 0 for their true class (an infinite unclipped loss)")
    return None


def _first_batch(data: Any) -> tuple[Any, Any] | None:
    """(images, masks) of the first batch of a tf.data.Dataset or PyDataset; None otherwise."""
    try:
        if hasattr(data, "take") and hasattr(data, "element_spec"):
            item = next(iter(data.take(1)))
        elif hasattr(data, "__getitem__") and hasattr(data, "num_batches"):
            item = data[0]
        else:
            return None
    except Exception:  # noqa: BLE001 - an empty or unusual dataset: the check is skipped
        return None
    if isinstance(item, (list, tuple)) and len(item) >= 2:
        return item[0], item[1]
    return None


def _variable_name(variable: Any) -> str:
    return str(getattr(variable, "path", None) or getattr(variable, "name", "?"))


def release_memory() -> None:
    """Free the models, graphs and memory a finished trial held (Keras' session and the garbage).

    One full collection per trial (each walks every object Python tracks: 0.4 s and more once
    TensorFlow is imported). In a process segsearch owns (``python -m segsearch``, a trial
    worker), the first call, before the first trial, freezes what survives it (the imported
    modules, the data, the study): later calls walk only the objects made since, which include
    all of every trial's, so the previous trial's memory is still released
    (:func:`segsearch.heap.collect`).
    """
    keras.backend.clear_session(free_memory=False)
    heap.collect()


#: the epoch event of each phase of a TrialTask ("epoch" for a trial).
_EPOCH_EVENTS = {"final": "final_epoch", "refit": "refit_epoch"}


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
        self.smoothed: float | None = task.smoothed_start
        self.own_best: float | None = None  # the best average of this call's own epochs
        self.best_epoch: int | None = None
        self.best_logs: dict[str, float] = {}
        self.best_is_current = False
        self.snapshot: tuple[list[Any], list[Any]] | None = None
        self.history: list[dict[str, float]] = []
        self.stop_state: str | None = None  # "pruned" / "failed" when training was stopped
        self.stop_reason: str | None = None
        self.diverged = False
        self.probe: tuple[Any, Any] | None = None  # a validation batch for the divergence check
        self._first_loss: float | None = None
        self._history_path = task.out_dir / HISTORY_FILE
        self._columns: list[str] | None = None
        self._last_epoch_time = time.monotonic()
        self._epoch_number = task.initial_epoch
        self.fit_started: float | None = None  # set just before model.fit
        self.first_step_s: float | None = None
        self.first_epoch_s: float | None = None
        self._test_started: float | None = None
        self.validation_s: list[float] = []

    def on_test_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._test_started = time.monotonic()

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._test_started is not None:
            self.validation_s.append(time.monotonic() - self._test_started)
            self._test_started = None

    def timings(self) -> dict[str, float]:
        """The epochs' part of the trial's timings (see :data:`PHASES`)."""
        out: dict[str, float] = {}
        seconds = [row["time_s"] for row in self.history if "time_s" in row]
        if self.first_step_s is not None:
            out["first_step"] = self.first_step_s
        if self.first_epoch_s is not None:
            out["first_epoch"] = self.first_epoch_s
        elif seconds:
            out["first_epoch"] = seconds[0]
        if len(seconds) > 1:
            out["epoch"] = sum(seconds[1:]) / (len(seconds) - 1)
        if self.validation_s:
            out["first_validation"] = self.validation_s[0]
        if len(self.validation_s) > 1:
            out["validation"] = sum(self.validation_s[1:]) / (len(self.validation_s) - 1)
        return {k: round(v, 3) for k, v in out.items()}

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
        """Put the best epoch's weights and optimizer state back; False when no epoch was best."""
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

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch_number = epoch + 1
        if self.best_is_current:
            self._take_snapshot()  # the best epoch's state is about to change

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.first_step_s is None and self.fit_started is not None:
            self.first_step_s = time.monotonic() - self.fit_started
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._diverged(f"the loss became {float(loss)} in epoch {self._epoch_number} "
                           f"(batch {batch + 1})")

    def _diverged(self, what: str) -> None:
        self.model.stop_training = True
        self.stop_state = "failed"
        self.diverged = True
        self.stop_reason = f"diverged: {what}; lower the learning rate or narrow its range"

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        number = epoch + 1
        row = {"epoch": number}
        for key, value in (logs or {}).items():
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                continue
        name = self.objective.name
        if name in row:
            smoothed = scores.smooth([row[name]], self.context.smoothing, self.smoothed)[0]
            self.smoothed = smoothed if math.isfinite(smoothed) else self.smoothed
            row[f"{name}_ema"] = smoothed
        now = time.monotonic()
        if self.first_epoch_s is None and self.fit_started is not None:
            self.first_epoch_s = now - self.fit_started
        row["time_s"] = round(now - self._last_epoch_time, 3)
        self._last_epoch_time = now
        self.history.append(row)
        # history.csv also has the rate this epoch trained at (the final training's schedule)
        self._write_row({**row, "learning_rate": _learning_rate(self.model)})
        if self.stop_state == "failed":
            return
        loss = row.get("loss")
        if self._first_loss is None:
            self._first_loss = loss
        what = divergence(self.model, loss, self._first_loss, self.probe)
        if what is not None:
            self._diverged(f"{what} in epoch {number}")
            return
        if name not in row:
            reported = ", ".join(sorted(k for k in row if k not in ("epoch", "time_s")))
            raise ConfigError(
                f"search.objective: the model reports no {name!r}; it reports {reported}. "
                "Set search.objective to one of these"
            )
        raw = row[name]
        value = self.smoothed if self.smoothed is not None and math.isfinite(raw) else raw
        if self.objective.better(value, self.own_best):
            self.own_best = value
        if self.objective.better(value, self.best_value):
            self.best_value = value
            self.best_epoch = number
            self.best_logs = {k: v for k, v in row.items() if k not in ("epoch", "time_s")}
            self.best_is_current = True
        event = {
            "event": _EPOCH_EVENTS.get(self.task.phase, "epoch"),
            "trial": self.task.number,
            "epoch": number,
            "epochs": self.task.epochs,
            "metrics": {k: v for k, v in row.items() if k != "epoch"},
            "trial_best": self.best_value,
            "own_best": self.own_best,
        }
        if self.context.progress is not None:
            self.context.progress(event)
        last = number >= self.task.epochs  # stopping after the last epoch would save nothing
        if self.reporter is not None and math.isfinite(value) and self.reporter(number, value) \
                and not last:
            self.model.stop_training = True
            self.stop_state = "pruned"
            self.stop_reason = (f"pruned after epoch {number} ({name} {raw:.4g}, "
                                f"average {value:.4g})")
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


def _learning_rate(model: Any) -> float:
    """The optimizer's current learning rate (NaN when it has none that reads as a number)."""
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return math.nan


class CosineDecay(keras.callbacks.Callback):
    """Half a cosine wave of the learning rate over epochs ``start`` .. ``end`` - 1, set at each
    epoch's start: the rate the optimizer holds when training begins (the compiled one, or a
    checkpoint's) at ``start``, ``rate * (1 + cos(pi * i / n)) / 2`` at the i-th of the n epochs
    (SGDR, Loshchilov & Hutter 2017, without restarts; nnU-Net's poly schedule has the same
    shape). Epoch-wise as ``keras.callbacks.LearningRateScheduler``, but relative to the epochs
    this call trains, so a continued network decays over its own continuation.

    An optimizer built with a ``LearningRateSchedule`` keeps that schedule: its rate cannot be
    set (``enabled`` is then False).
    """

    def __init__(self, start: int, end: int) -> None:
        super().__init__()
        self.start, self.end = int(start), int(end)
        self.initial: float | None = None
        self.enabled = True

    def rate(self, epoch: int) -> float:
        """The rate for epoch ``epoch`` (0-based, as Keras counts) of a network whose rate was
        ``self.initial`` at ``self.start``."""
        n = max(1, self.end - self.start)
        i = min(max(epoch - self.start, 0), n)
        return float(self.initial or 0.0) * 0.5 * (1.0 + math.cos(math.pi * i / n))

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        optimizer = getattr(self.model, "optimizer", None)
        try:
            self.initial = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            optimizer.learning_rate = self.initial  # settable? (not with a schedule object)
        except (AttributeError, TypeError, ValueError):
            self.enabled = False

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.enabled:
            self.model.optimizer.learning_rate = self.rate(epoch)


#: the batch norms' momentum during a search (PyTorch's default, a window of about 10 batches).
SEARCH_BN_MOMENTUM = 0.9


def adapt_batch_norm(model: Any, momentum: float = SEARCH_BN_MOMENTUM) -> int:
    """Let the batch norms' moving statistics follow the weights within a few dozen batches.

    A batch norm trains on each batch's own statistics; its moving mean and variance, which
    validation and inference use, are an exponential average with the layer's ``momentum`` (Keras:
    0.99, a window of ~100 batches). A search's trials train for a few dozen to a few hundred
    batches, so with 0.99 the statistics trail the weights and the validation metric of a network
    that is learning stays at the level of a trivial one (measured on the ISBI slices: val mean IoU
    0.39 at epoch 30 with the lagging statistics, 0.53 with statistics recomputed for the same
    weights; on 1-3 px lines at 584x565 with 40 batches an epoch: val Dice 0.0 at epochs 1-2 with
    a 40-batch window, 0.78 with the statistics re-estimated). Slower momenta are lowered to
    ``momentum`` at training time; the networks are built as their seeds (Keras' 0.99), and the
    gradients never use these statistics, so training itself is unchanged.

    Args:
        model: the Keras model (nested models included).
        momentum: the momentum to use where a layer's is higher (slower).

    Returns:
        How many batch norm layers were changed.
    """
    target = float(momentum)
    changed = 0
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        stack.extend(getattr(layer, "layers", []) or [])
        if isinstance(layer, keras.layers.BatchNormalization) and layer.momentum > target:
            layer.momentum = target
            changed += 1
    return changed


def continuation(folder: Path) -> Path | None:
    """The checkpoint a trial continues from: its last epoch's state (or None when none is kept).

    Args:
        folder: the trial's folder.
    """
    for name in (LAST_CHECKPOINT_FILE, CHECKPOINT_FILE):
        if (folder / name).is_file():
            return folder / name
    return None


def smoothed_at_end(folder: Path, objective: str) -> float | None:
    """The moving average of ``objective`` after the last epoch in a trial's ``history.csv``.

    A continuation starts its own average from it (None: no history, or none recorded).

    Args:
        folder: the trial's folder.
        objective: the objective's name (the column is ``<objective>_ema``).
    """
    try:
        with open(folder / HISTORY_FILE, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return None
    for row in reversed(rows):
        try:
            value = float(row.get(f"{objective}_ema") or "nan")
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return None


def save_checkpoint(model: Any, path: Path) -> Path:
    """Save a model (weights and optimizer state) to ``path`` through a temporary file and a rename.

    Args:
        model: the Keras model.
        path: the .keras file.

    Raises:
        OSError: the checkpoint could not be written (the temporary file is removed).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never a stray half-written checkpoint
        raise
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
        The outcome: "complete", "pruned", "failed" (diverged, an error in training, the time
        limit) or "infeasible".

    Raises:
        ConfigError, WeightsError, StudyError: a problem with the configuration itself, which no
            other trial would escape either.
        KeyboardInterrupt: the run was interrupted; the trial is left for the engine to re-run.
    """
    previous_policy = keras.mixed_precision.dtype_policy()
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
    timings: dict[str, float] = {}
    clock = [t0]

    def lap(phase: str) -> None:
        now = time.monotonic()
        timings[phase] = round(timings.get(phase, 0.0) + now - clock[0], 3)
        clock[0] = now

    task.out_dir.mkdir(parents=True, exist_ok=True)
    release_memory()
    # after clear_session, which resets the dtype policy to float32: set before it, the policy
    # never reached a trial's layers (train.mixed_precision: true trained in float32)
    keras.mixed_precision.set_dtype_policy(policy_name(context.mixed_precision))
    seed = context.seed + max(task.number, 0)
    keras.utils.set_random_seed(seed)
    lap("setup")
    monitor: _EpochMonitor | None = None

    def finish(outcome: TrialOutcome) -> TrialOutcome:
        outcome.started = started
        outcome.finished = now_iso()
        outcome.duration_s = round(time.monotonic() - t0, 3)
        outcome.batch_size = task.batch_size
        outcome.timings = {**timings, **(monitor.timings() if monitor is not None else {}),
                           "total": outcome.duration_s}
        if outcome.state == "failed":
            write_error_file(task.out_dir, outcome)
        return outcome

    try:
        if task.resume_from is not None:
            model = keras.saving.load_model(task.resume_from)
        else:
            model = build()
        lap("build")
    except InfeasibleError as e:
        return finish(TrialOutcome(state="infeasible", reason=str(e), failure="configuration"))
    except SegsearchError:
        raise
    except Exception as e:  # noqa: BLE001 - a trial that cannot be built fails alone
        return finish(TrialOutcome(state="failed", reason=error_reason("building the model", e),
                                   oom=is_out_of_memory(e), failure=failure_kind(e),
                                   error=_traceback_text(e)))

    if context.jit_compile != "auto":
        model.jit_compile = bool(context.jit_compile)
    if context.epoch_steps:
        adapt_batch_norm(model)
    monitor = _EpochMonitor(task, context, reporter)
    callbacks: list[Any] = [monitor]
    if task.schedule == "cosine":
        callbacks.insert(0, CosineDecay(task.initial_epoch, task.epochs))
    callbacks.extend(extra_callbacks(task))
    board = None
    if context.tensorboard_dir is not None:  # export.tensorboard: after the monitor, read it
        from segsearch.tensorboard_logs import TensorBoardLog, run_name

        board = TensorBoardLog(Path(context.tensorboard_dir) / run_name(task.number),
                               task.hparams or {}, context.objective.name, monitor)
        callbacks.append(board)
    train_data, val_data = context.train_data, context.val_data
    sized = {} if task.batch_size is None else {"batch_size": task.batch_size}
    if callable(train_data):
        train_data = train_data(seed, **sized)
    if context.val_callback is not None:  # first: the callbacks after it read its val_* logs
        callbacks.insert(0, context.val_callback())
        val_data = None
    if callable(val_data):
        val_data = val_data(seed, **sized)
    monitor.probe = _first_batch(val_data)
    lap("data")
    monitor.fit_started = time.monotonic()
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
        _raise_if_disk(e, task)
        # an exception inside the input pipeline reaches here wrapped by tf.data ("UnknownError
        # ... Graph execution error"); the producer kept the original
        held = producer_error(train_data) or producer_error(val_data)
        cause: BaseException = e
        doing, error_text = "training", _traceback_text(e)
        if held is not None and held.error is not None:
            if isinstance(held.error, SegsearchError):  # e.g. a DataError: no trial escapes it
                raise held.error from None
            cause, doing = held.error, "reading the data"
            if held.error is not e:
                error_text = (f"{held.traceback}\nThe training loop reported it as "
                              f"{type(e).__name__}:\n{error_text}")
        outcome = TrialOutcome(state="failed", reason=error_reason(doing, cause),
                               history=monitor.history, epochs=len(monitor.history),
                               oom=is_out_of_memory(cause), failure=failure_kind(cause),
                               error=error_text)
        del model  # released when the next trial starts
        return finish(outcome)
    finally:
        if board is not None:
            board.close()

    clock[0] = time.monotonic()
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
        outcome.objectives[0] = monitor.best_value  # the average that chose the epoch
    if monitor.stop_state == "failed":  # diverged: a NaN or infinite loss, huge weights, ...
        outcome.state, outcome.reason = "failed", monitor.stop_reason
        outcome.diverged = monitor.diverged
        outcome.failure = "configuration"
    elif monitor.stop_state == "pruned":
        outcome.state, outcome.reason = "pruned", monitor.stop_reason
    elif monitor.best_epoch is None and task.baseline is None:
        outcome.state = "failed"
        outcome.reason = f"{context.objective.name} was never finite"
        outcome.failure = "configuration"

    if outcome.state == "complete" and task.phase == "trial":
        _measure_costs(model, context, outcome)
    if outcome.state == "complete" and monitor.stop_state == "time_limit":
        # the user's budget ran out: the trial counts with the epochs it ran, as its reason says
        outcome.reason = f"{monitor.stop_reason} of {task.epochs}"
    if outcome.state == "complete" and task.save_checkpoint and monitor.best_epoch is not None:
        target = task.out_dir / CHECKPOINT_FILE
        try:
            if not monitor.best_is_current:  # the best epoch came earlier: keep the last state
                target = task.out_dir / LAST_CHECKPOINT_FILE
                save_checkpoint(model, target)
            monitor.restore_best()
            target = task.out_dir / CHECKPOINT_FILE
            outcome.checkpoint = save_checkpoint(model, target)
            lap("checkpoint")
        except OSError as e:
            # the study folder cannot be written: no other trial would fare better
            raise StudyError(os_error_message(
                e, target, f"writing the checkpoint of {_which(task)}")) from None
    del model  # released when the next trial starts
    return finish(outcome)


def _measure_costs(model: Any, context: TrainingContext, outcome: TrialOutcome) -> None:
    """Put the cost objectives (params, flops, latency_ms) of a complete trial into its outcome's
    objectives and values; a measurement that fails fails the trial."""
    from segsearch.cost import COSTS, measure

    names = context.objective.names
    if not any(name in COSTS for name in names):
        return
    try:
        costs = measure(model, names, latency_batches=context.latency_batches,
                        latency_batch_size=context.latency_batch_size)
    except SegsearchError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. out of memory while timing: this trial fails
        outcome.state, outcome.reason = "failed", error_reason("measuring its costs", e)
        outcome.oom, outcome.failure = is_out_of_memory(e), failure_kind(e)
        outcome.error = _traceback_text(e)
        return
    outcome.values.update(costs)
    outcome.objectives = [costs.get(n, v) for n, v in
                          zip(names, outcome.objectives or [None] * len(names))]


def _which(task: TrialTask) -> str:
    return "the final training" if task.phase == "final" else f"trial {task.number}"


def _raise_if_disk(error: BaseException, task: TrialTask) -> None:
    """Raise a StudyError when ``error`` (or its cause) means the study folder cannot be written
    (a full disk, a read-only or forbidden folder, a file size limit): no trial would escape it.

    Args:
        error: the error training raised.
        task: the trial (its history.csv is named when the error names no file: it is what
            training writes).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_ERRNOS:
            raise StudyError(os_error_message(current, task.out_dir / HISTORY_FILE,
                                              f"training {_which(task)}")) from None
        current = current.__cause__ or current.__context__


def _is_dataset(data: Any) -> bool:
    """Whether ``data`` shuffles itself (tf.data or a PyDataset) rather than being arrays."""
    return not isinstance(data, (tuple, list)) and not hasattr(data, "__array__")


def error_reason(doing: str, error: BaseException) -> str:
    """One line for a record: the error type and message, where in the code it came from, and the
    fix for an error outside the configuration (a missing module, file or disk space).

    Args:
        doing: what failed, e.g. "training" ("<type> while training at <file>:<line>: ...").
        error: the exception.
    """
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    reason = f"{type(error).__name__} while {doing}{where}: {message}"[:400]
    hint = _fix_hint(error)
    return f"{reason}; {hint}" if hint else reason


def _traceback_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


#: pip's name of the package of a module, where the two differ.
_PIP_NAMES = {"PIL": "Pillow", "cv2": "opencv-python", "yaml": "PyYAML",
              "skimage": "scikit-image", "sklearn": "scikit-learn"}


def _fix_hint(error: BaseException) -> str:
    """What to do about an error from outside the configuration ("" for other errors)."""
    if isinstance(error, ImportError):
        name = str(getattr(error, "name", None) or "").split(".")[0]
        if name:
            return f"install it: pip install {_PIP_NAMES.get(name, name)}"
        return "install the missing package"
    if isinstance(error, OSError):
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        if error.errno == errno.ENOSPC:
            return "the disk is full: free some space"
        if isinstance(error, FileNotFoundError):
            return f"put the file{where} back, or point the study at files that exist"
        if isinstance(error, PermissionError):
            return f"give this user access to{where or ' the file'}"
        return f"fix the file or device{where}"
    return ""


def failure_kind(error: BaseException) -> str:
    """Why an error failed a trial: "configuration" (out of memory), "environment" (an import error,
    a missing file, a full disk or another OSError, in the error or its causes) or "error".

    Args:
        error: the exception that failed the trial.
    """
    if is_out_of_memory(error):
        return "configuration"
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ImportError, OSError)):
            return "environment"
        current = current.__cause__ or current.__context__
    return "error"


def write_error_file(folder: Path, outcome: TrialOutcome) -> Path:
    """Write a failed trial's ``error.txt``: its reason, then the full traceback (when it has one).

    Args:
        folder: the trial's folder.
        outcome: the failed outcome.
    """
    reason = outcome.reason or "no reason recorded"
    text = f"{reason}\n"
    if outcome.error:
        text += f"\n{outcome.error.rstrip()}\n"
    path = Path(folder) / ERROR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


_OOM_TYPES = ("ResourceExhaustedError", "OutOfMemoryError", "MemoryError")
_OOM_WORDS = ("out of memory", "oom when allocating", "resource_exhausted", "resource exhausted",
              "failed to allocate")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an error means the trial ran out of (accelerator) memory.

    TensorFlow raises ``ResourceExhaustedError`` ("OOM when allocating tensor ..."), JAX an
    ``XlaRuntimeError`` saying "RESOURCE_EXHAUSTED: Out of memory", PyTorch
    ``torch.cuda.OutOfMemoryError``; the type name or the message tells.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in _OOM_TYPES:
            return True
        text = str(current).lower()
        if any(word in text for word in _OOM_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


# ---------------------------------------------------------------------------------- extra callbacks
#: environment variable naming a function that gives every fit of :func:`run_trial` (the trials
#: and the final training) extra Keras callbacks: "MODULE:FUNCTION" or "PATH/FILE.py:FUNCTION".
#: The function takes the :class:`TrialTask` and returns a list of ``keras.callbacks.Callback``
#: (empty for none). It is read in the process that trains, so worker processes and child
#: processes that inherit the environment use it too. The test-suite sets it
#: (``tests/_faults.py`` makes chosen trials fail on purpose); a run leaves it unset.
CALLBACKS_ENV = "SEGSEARCH_TRIAL_CALLBACKS"


def extra_callbacks(task: TrialTask) -> list[Any]:
    """The callbacks that the function named by :data:`CALLBACKS_ENV` gives this task ([] unset).

    Args:
        task: the trial (or the final training, number -1) about to train.

    Raises:
        ConfigError: the variable names no function that can be loaded.
    """
    spec = os.environ.get(CALLBACKS_ENV)
    if not spec:
        return []
    return list(_load_callbacks_function(spec)(task) or [])


@functools.lru_cache(maxsize=4)
def _load_callbacks_function(spec: str) -> Callable[[TrialTask], Any]:
    where, _, name = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            module_spec = importlib.util.spec_from_file_location(Path(where).stem, where)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"no Python file at {where}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        function = getattr(module, name)
    except (ImportError, OSError, AttributeError, ValueError) as e:
        raise ConfigError(f"{CALLBACKS_ENV}={spec!r}: cannot load {name!r} from {where!r} ({e}); "
                          "fix: name a function as MODULE:FUNCTION or PATH/FILE.py:FUNCTION, or "
                          f"unset {CALLBACKS_ENV}") from None
    if not callable(function):
        raise ConfigError(f"{CALLBACKS_ENV}={spec!r}: {name!r} is not a function; fix: name a "
                          f"function as MODULE:FUNCTION, or unset {CALLBACKS_ENV}")
    return function
