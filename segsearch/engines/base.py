"""What both engines share: the search session they get and the bookkeeping of a finished trial.

An engine (``segsearch.engines.optuna_engine.Engine``,
``segsearch.engines.keras_tuner_engine.Engine``) is made from a :class:`SearchSession` and offers:

- ``run()``: run trials (each through :func:`segsearch.engines.trial.run_trial`) until
  ``search.trials`` trials are finished (complete or pruned), the time limit passes, or too many
  trials in a row fail;
- ``records()``: every trial as a :class:`~segsearch.records.TrialRecord`;
- ``rebuild(records)``: its records made again from the trial folders (``--rebuild-storage``);
- ``fingerprint(config, hypermodel)`` (a class method): what the stored study fixes and a later
  run must not change.

:class:`BaseEngine` writes ``trials/<nnnn>/trial.json``, refreshes ``trials.csv``, keeps only the
best few checkpoints, stops a search whose trials keep failing, and sends the "trial_start" /
"trial_end" progress events. A run whose first trials all fail with the same error (one from
outside the configuration, or any error but a NaN loss or running out of memory) stops after the
second with that error, rather than after ``search.max_failures``: nothing would go otherwise.
A failed trial's ``error.txt`` (its traceback) is kept when the trial runs again in the same
folder (keras-tuner's retries, the out-of-memory retry), as ``error-1.txt``, ``error-2.txt``, ...
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segsearch.engines.trial import TrainingContext, TrialOutcome, TrialTask, run_trial
from segsearch.errors import StudyError
from segsearch.records import (
    CHECKPOINT_FILE,
    ERROR_FILE,
    LAST_CHECKPOINT_FILE,
    TRIAL_FILE,
    TrialRecord,
    architecture_of,
    sort_best,
    trial_dir,
    write_owner,
    write_trials_csv,
)

__all__ = ["SearchSession", "BaseEngine", "KEEP_CHECKPOINTS"]

#: checkpoints (trials/<nnnn>/model.keras) kept: the best few complete trials (and any an engine
#: still needs, such as keras-tuner Hyperband trials that may be promoted).
KEEP_CHECKPOINTS = 3


@dataclass
class SearchSession:
    """What the driver hands an engine.

    Args:
        config: the study's :class:`segsearch.spacefile.Config`.
        study_dir: the study folder.
        hypermodel: the keras-tuner HyperModel of the study (one architecture or several).
        context: the training context every trial shares.
        emit: the driver's progress callback (it adds the study-wide fields).
        storage: the Optuna storage URL.
        deadline: ``time.monotonic()`` after which no trial starts.
        prepare: ``prepare(config, progress) -> (hypermodel, context)``, what a trial worker
            process (``train.isolation: process``) builds its trials with; a module-level function
            (the worker unpickles it), :func:`segsearch.workshop.prepare_trials` from the driver.
        callbacks: called with ``(optuna.Study, FrozenTrial)`` after each trial
            (:class:`segsearch.callbacks.NamedCallback`; the Optuna engine calls them).
    """

    config: Any
    study_dir: Path
    hypermodel: Any
    context: TrainingContext
    emit: Callable[[dict[str, Any]], None] = lambda event: None
    storage: str | None = None
    deadline: float | None = None
    prepare: Callable[[Any, Any], tuple[Any, Any]] | None = None
    callbacks: list[Any] = field(default_factory=list)

    def start_clock(self, seconds: float) -> float:
        """Set the deadline ``seconds`` from now, for the engine and the trials; return it.

        Args:
            seconds: ``search.time_limit``.
        """
        self.deadline = time.monotonic() + float(seconds)
        self.context.deadline = self.deadline
        return self.deadline


class BaseEngine:
    """Bookkeeping both engines share; subclasses implement ``run``, ``records``, ``fingerprint``.

    Args:
        session: the search session.
    """

    #: name of the engine (``search.engine``).
    name = "base"
    #: infeasible trials in a row that stop the search (they cost nothing, so the cap is high).
    max_infeasible_in_a_row = 20
    #: failed trials in a row that stop the search (``search.max_failures`` when set).
    max_failed_in_a_row = 5
    #: whether the engine's trials can train in a worker process (``train.isolation: process``).
    supports_isolation = False

    def __init__(self, session: SearchSession) -> None:
        self.session = session
        self.config = session.config
        self.study_dir = Path(session.study_dir)
        self.objective = session.context.objective
        self._recent: list[TrialRecord] = []
        self.max_failed_in_a_row = int(getattr(self.config.search, "max_failures",
                                               type(self).max_failed_in_a_row))
        self._lock = threading.RLock()
        self._workers: dict[int, Any] = {}
        self._slots: list[Any] | None = None

    # ------------------------------------------------------------------ running one trial
    @property
    def isolated(self) -> bool:
        """Whether trials train in worker processes (``train.isolation: process``)."""
        return self.supports_isolation and \
            getattr(self.config.train, "isolation", "none") == "process"

    def slots(self) -> list[Any]:
        """The worker slots (:func:`segsearch.devices.plan_slots`): one per trial trained at
        once, each with its GPU and how many workers share that GPU. The GPUs are looked up
        (``nvidia-smi``, never a backend) only for ``workers_per_gpu`` without ``gpus``, or
        for TensorFlow's memory cap of a shared GPU."""
        if self._slots is None:
            from segsearch import devices

            search = self.config.search
            wpg = getattr(search, "workers_per_gpu", None)
            gpus = getattr(search, "gpus", None)
            found = devices.visible_gpus() if wpg is not None and wpg > 1 or \
                (wpg is not None and not gpus) else None
            self._slots = devices.plan_slots(getattr(search, "workers", None), gpus, wpg,
                                             found=found)
        return self._slots

    def worker(self, slot: int = 0) -> Any:
        """The worker process of a slot (one per parallel worker), made on first use."""
        with self._lock:
            if slot not in self._workers:
                from segsearch.engines.worker import TrialWorker

                slots = self.slots()
                self._workers[slot] = TrialWorker(self.config, slot=slots[slot % len(slots)],
                                                  on_event=self.emit,
                                                  prepare=self.session.prepare)
            return self._workers[slot]

    def close_workers(self) -> None:
        """Stop every worker process."""
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.close()

    def emit(self, event: dict[str, Any]) -> None:
        """Send a progress event (one at a time, from whichever thread)."""
        with self._lock:
            self.session.emit(event)

    def execute(
        self,
        task: TrialTask,
        build: Callable[[], Any],
        params: Mapping[str, Any] | None = None,
        reporter: Callable[[int, float], bool] | None = None,
        *,
        tick: Callable[[], None] | None = None,
        slot: int = 0,
        hp_config: dict[str, Any] | None = None,
    ) -> TrialOutcome:
        """Train one trial, in a worker process or here; after running out of memory, retry once
        at half the batch size when ``train.oom_retry`` is on.

        Args:
            task: what to train.
            build: builds the model (used when training here).
            params: the engine's parameters of the trial (the worker rebuilds the model from them).
            reporter: the pruning question asked after each epoch.
            tick: called about once a second while a worker trains (heartbeats).
            slot: which worker (parallel workers).
            hp_config: keras-tuner HyperParameters' ``get_config()``, which the worker builds from
                instead of ``params`` (the Keras Tuner engine).
        """
        once = functools.partial(self._execute_once, build=build, params=params,
                                 reporter=reporter, tick=tick, slot=slot, hp_config=hp_config)
        outcome = once(task)
        if not outcome.oom:
            return outcome
        batch = int(task.batch_size or self.config.train.batch_size)
        first = outcome.reason or "out of memory"
        if self.oom_retry(slot) and batch > 1:
            half = max(1, batch // 2)
            self.clear_trial_dir(task.number)
            write_owner(task.out_dir)
            retry = dataclasses.replace(task, batch_size=half)
            self.emit({"event": "oom_retry", "trial": task.number, "batch_size": batch,
                       "retry_batch_size": half, "reason": first})
            outcome = once(retry)
            note = (f"out of memory at batch size {batch} ({first}); retried once at batch size "
                    f"{half}")
            outcome.reason = note if outcome.state == "complete" else f"{note}: {outcome.reason}"
            outcome.oom = outcome.oom or outcome.state != "complete"
            outcome.batch_size = half
        else:
            outcome.reason = (f"out of memory at batch size {batch}: {first}; lower "
                              "train.batch_size, narrow the space, or set train.oom_retry: true")
        return outcome

    def oom_retry(self, slot: int = 0) -> bool:
        """Whether an out-of-memory trial is retried at half the batch size: ``train.oom_retry``,
        where "auto" means when its worker shares the GPU with others (``workers_per_gpu``):
        there the neighbours' trials may have taken the memory, not the configuration."""
        setting = getattr(self.config.train, "oom_retry", False)
        if setting == "auto":
            slots = self.slots() if self.isolated else []
            return bool(slots) and slots[slot % len(slots)].sharing > 1
        return bool(setting)

    def _execute_once(self, task: TrialTask, *, build: Callable[[], Any],
                      params: Mapping[str, Any] | None,
                      reporter: Callable[[int, float], bool] | None,
                      tick: Callable[[], None] | None, slot: int,
                      hp_config: dict[str, Any] | None) -> TrialOutcome:
        if self.isolated:
            return self.worker(slot).run(task, None if params is None else dict(params), reporter,
                                         deadline=self.session.context.deadline, tick=tick,
                                         hp_config=hp_config)
        return run_trial(self.session.context, build, task, reporter)

    # ------------------------------------------------------------------ to implement
    def run(self) -> None:
        """Run trials until the study holds ``search.trials`` finished ones (or must stop)."""
        raise NotImplementedError

    def records(self) -> list[TrialRecord]:
        """Every trial of the study, by number."""
        raise NotImplementedError

    def rebuild(self, records: list[TrialRecord]) -> int:
        """Rebuild the engine's (empty) records from the trial folders' records (``segsearch run
        --rebuild-storage``), trial ``n`` again being ``trials/<n>``; return the trials added.

        Args:
            records: the records of ``trials/<nnnn>/trial.json``.
        """
        raise NotImplementedError

    @classmethod
    def fingerprint(cls, config: Any, hypermodel: Any) -> dict[str, Any]:
        """What a stored study of this engine fixes (compared on resume, before any trial runs).

        Args:
            config: the study's Config.
            hypermodel: the study's hypermodel.
        """
        return {}

    def protected_checkpoints(self) -> set[int]:
        """Trial numbers whose checkpoints the engine still needs (never pruned)."""
        return set()

    # ------------------------------------------------------------------ shared
    @property
    def target(self) -> int:
        """The number of finished (complete + pruned) trials the study should hold."""
        return int(self.config.search.trials)

    def deadline_passed(self) -> bool:
        """Whether ``search.time_limit`` has run out."""
        deadline = self.session.deadline
        return deadline is not None and time.monotonic() >= deadline

    def architecture_of(self, params: Mapping[str, Any]) -> str | None:
        """The architecture a trial's values select."""
        return architecture_of(params, self.config.architectures)

    def trial_started(self, number: int, params: Mapping[str, Any]) -> None:
        """Send the "trial_start" event.

        Args:
            number: the trial number.
            params: the values known when it starts.
        """
        write_owner(trial_dir(self.study_dir, number))  # status can tell when it is gone
        self.emit({
            "event": "trial_start",
            "trial": number,
            "params": dict(params),
            "architecture": self.architecture_of(params),
        })

    def make_record(
        self,
        number: int,
        outcome: TrialOutcome,
        params: Mapping[str, Any],
        *,
        initial_epoch: int = 0,
    ) -> TrialRecord:
        """Turn an outcome into the trial's record.

        Args:
            number: the trial number.
            outcome: what :func:`run_trial` returned.
            params: the trial's hyperparameter values.
            initial_epoch: the epoch training started from.
        """
        checkpoint = None
        if outcome.checkpoint is not None:
            checkpoint = str(Path(outcome.checkpoint).relative_to(self.study_dir))
        return TrialRecord(
            number=number,
            state=outcome.state,  # type: ignore[arg-type]
            architecture=self.architecture_of(params),
            params=dict(params),
            value=outcome.value if outcome.state in ("complete", "pruned") else None,
            values=dict(outcome.values),
            epochs=outcome.epochs,
            duration_s=outcome.duration_s,
            reason=outcome.reason,
            started=outcome.started,
            finished=outcome.finished,
            initial_epoch=initial_epoch,
            best_epoch=outcome.best_epoch,
            objectives=outcome.objectives,
            checkpoint=checkpoint,
            failure=outcome.failure if outcome.state in ("failed", "infeasible") else None,
            timings=dict(getattr(outcome, "timings", None) or {}),
            batch_size=getattr(outcome, "batch_size", None),
        )

    def trial_finished(self, record: TrialRecord) -> None:
        """Save the record, refresh trials.csv, prune checkpoints, send "trial_end", check failures.

        Args:
            record: the finished trial.

        Raises:
            StudyError: too many trials in a row were infeasible or failed.
        """
        record.save(trial_dir(self.study_dir, record.number) / TRIAL_FILE)
        records = self.records()
        self.prune_checkpoints(records)
        write_trials_csv(records, self.study_dir / "trials.csv")
        self.emit({
            "event": "trial_end",
            "trial": record.number,
            "state": record.state,
            "value": record.value,
            "metrics": dict(record.values),
            "params": dict(record.params),
            "reason": record.reason,
            "epochs": record.epochs,
            "duration_s": record.duration_s,
            "timings": dict(record.timings),
            "batch_size": record.batch_size,
        })
        self._recent.append(record)
        self.check_failures()

    def check_failures(self) -> None:
        """Stop the search when the last trials were all infeasible (or all failed), or when the
        first trials of this run all failed with the same error.

        Raises:
            StudyError: with the last reasons (or the one error) and what to change.
        """
        run = self._recent
        if len(run) >= 2 and len({r.reason for r in run}) == 1 and not self.deadline_passed() \
                and all(r.state == "failed" and r.failure != "configuration" for r in run):
            error_file = trial_dir(self.study_dir, run[-1].number) / ERROR_FILE
            raise StudyError(
                f"the first {len(run)} trials of this run failed with the same error: "
                f"{run[-1].reason or 'no reason recorded'}. Once that is fixed, run the same "
                "command again: the study resumes and runs the failed trials again (traceback: "
                f"{error_file})"
            )
        infeasible = failed = 0
        for record in reversed(self._recent):
            if record.state == "infeasible" and failed == 0:
                infeasible += 1
            elif record.state == "failed" and infeasible == 0:
                failed += 1
            else:
                break
        reasons = "; ".join(
            dict.fromkeys(r.reason or "no reason recorded" for r in self._recent[-3:])
        )
        source = getattr(self.config, "source", "the space file")
        if infeasible >= self.max_infeasible_in_a_row:
            raise StudyError(
                f"{infeasible} configurations in a row cannot work at image size "
                f"{tuple(self.config.data.image_size or ())}: {reasons}. Narrow the space in "
                f"{source} (e.g. a smaller depth) or use a larger data.image_size"
            )
        if failed >= self.max_failed_in_a_row:
            raise StudyError(
                f"{failed} trials in a row failed: {reasons}. Fix the cause (see "
                f"{self.study_dir / 'trials'}), then run the same command again to resume"
            )

    def prune_checkpoints(self, records: Iterable[TrialRecord]) -> None:
        """Delete the checkpoints of all but the best few complete trials (and protected ones);
        with several objectives the Pareto front's are kept too (``export.pick`` chooses there).

        Args:
            records: every trial of the study.
        """
        records = list(records)
        complete = [r for r in records if r.state == "complete"]
        keep = {r.number for r in sort_best(complete, self.objective.direction)[:self.kept()]}
        keep |= self.protected_checkpoints()
        if len(self.objective.names) > 1:
            from segsearch.pareto import pareto_front

            keep |= {r.number for r in pareto_front(complete, self.objective)}
        for record in records:
            if record.state == "running":  # another worker's trial, its checkpoint on the way
                continue
            folder = trial_dir(self.study_dir, record.number)
            path = folder / CHECKPOINT_FILE
            if record.number not in keep and path.exists():
                path.unlink()
                (folder / LAST_CHECKPOINT_FILE).unlink(missing_ok=True)
                record.checkpoint = None
                saved = trial_dir(self.study_dir, record.number) / TRIAL_FILE
                if saved.exists():
                    stored = TrialRecord.load(saved)
                    stored.checkpoint = None
                    stored.save(saved)

    def kept(self) -> int:
        """How many of the best complete trials keep their checkpoints: KEEP_CHECKPOINTS, or
        more for the refit on every fold (``search.refit_folds``) or a ``top_k`` ensemble."""
        count = max(KEEP_CHECKPOINTS, int(getattr(self.config.search, "refit_folds", 0) or 0))
        export = getattr(self.config, "export", None)
        if getattr(export, "ensemble", "none") == "top_k":
            count = max(count, int(getattr(export, "ensemble_size", 0) or 0))
        return count

    def clear_trial_dir(self, number: int) -> None:
        """Empty a trial's folder before it (re-)runs, so no file of a cut-off run is mistaken;
        the tracebacks of its earlier failures are kept (``error-1.txt``, ``error-2.txt``, ...).

        Args:
            number: the trial number.
        """
        folder = trial_dir(self.study_dir, number)
        if not folder.exists():
            return
        stem, suffix = ERROR_FILE.rsplit(".", 1)
        pattern = re.compile(rf"{re.escape(stem)}-(\d+)\.{re.escape(suffix)}")
        earlier = sorted((int(m.group(1)), path) for path in folder.iterdir()
                         if (m := pattern.fullmatch(path.name)))
        texts = [path.read_text(encoding="utf-8", errors="replace") for _, path in earlier]
        if (folder / ERROR_FILE).is_file():
            texts.append((folder / ERROR_FILE).read_text(encoding="utf-8", errors="replace"))
        shutil.rmtree(folder)
        if texts:
            folder.mkdir(parents=True)
            for index, text in enumerate(texts, start=1):
                (folder / f"{stem}-{index}.{suffix}").write_text(text, encoding="utf-8")
