"""The driver: one study, from a configuration to trials to the best model exported.

:class:`Study` (a segsearch study: not ``optuna.Study``, which the Optuna engine keeps inside it)
runs a search on three helpers, each in a module of its own:

- :class:`segsearch.study.StudyFolder`: the study folder (its files, the checks that the stored
  study can absorb this configuration, the storage checks, locks, recovery, ``--fresh``);
- :class:`segsearch.workshop.Workshop`: the data with its split, the hypermodel, the training
  context every trial shares, the constant baseline (a trial worker process builds the same from
  it, never from this module);
- the engine (``search.engine``, :func:`segsearch.engines.select.engine_class`), which runs
  the trials.

Running the same configuration again resumes: finished trials are kept, a trial that was cut off is
run again, so are the trials that failed for a reason outside their configuration (a missing
module or file, a full disk, a killed worker) and the seed trials that did not complete, and the
search stops when ``search.trials`` trials are finished (complete or pruned). A
configuration the stored study cannot absorb is refused (see :mod:`segsearch.study`), and so is a
storage that lost its records; ``fresh=True`` moves the old folder aside, ``rebuild_storage=True``
rebuilds the storage from the trial folders.

After the search the best configuration is trained further, from its checkpoint (optimizer state
included), for what is left of ``train.budget_epochs`` (default ``trials * epochs``) or for
``train.final_epochs``, its learning rate decaying to nearly 0 over those epochs
(``train.final_schedule: cosine``), keeping the best weights by the objective's moving average
(the same rule that picks a trial's best epoch, :data:`segsearch.scores.EMA_ALPHA`); the final
weights replace the trial's checkpoint only when their average beats the trial's; that model is
exported.
When that final training fails (its worker dies, an error), the best trial's checkpoint is exported
instead, :attr:`Results.final_failed` says why, and the next run retries the final training; a
final training that diverged is not retried (it would diverge again).

Example:
    >>> from segsearch.spacefile import load_config
    >>> from segsearch.driver import Study
    >>> results = Study(load_config("unet", trials=4, epochs=3)).run(progress=print)
    >>> results.best_value, results.best_model_path
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segsearch.errors import ConfigError, StudyError
from segsearch.jsonable import jsonable
from segsearch.pareto import PickError
from segsearch.records import (
    CHECKPOINT_FILE,
    Objective,
    TrialRecord,
    atomic_write_text,
    read_trial_records,
    sort_best,
    trial_dir,
)
from segsearch.study import (
    CONFIG_FILE,
    FINAL_DIR,
    FINAL_FILE,
    SPLIT_FILE,
    STUDY_FILE,
    StudyFolder,
    exclusive,
    read_meta,
    remove_unstarted,
)
from segsearch.workshop import Workshop, prepare_trials

__all__ = ["Study", "Results", "run", "STUDY_FILE", "CONFIG_FILE", "SPLIT_FILE", "FINAL_DIR"]

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Results:
    """What a study run returns.

    Args:
        best_value: the objective of the exported model on the validation images
            (``best/metrics.yaml``; without an export, the moving average that chose it).
        best_params: its hyperparameters.
        best_model_path: the exported ``best/model.keras`` (or the best checkpoint when export is
            off).
        trials: every trial's record, by number.
        study_dir: the study folder.
        best_trial: the number of the best trial.
        architecture: the best model's architecture.
        metrics: the best model's validation metrics.
        final_epochs: epochs the best configuration was trained after the search.
        moved_aside: where ``fresh=True`` moved an old study, if it did.
        final_failed: why the final training failed (its summary's reason), or None; the best
            trial's checkpoint is the model then.
        final_retry: the failed final training is retried by the next run (False when it
            diverged, or when nothing failed).
        baseline: the best constant prediction's scores (``baseline.json``'s "best").
        verdict: how ``best_value`` compares with it (:func:`segsearch.scores.judge`).
        selection_value: the moving average of the objective that chose the exported epoch (the
            trial's, or the final training's when it beat it).
        cross_validation: with ``data.folds``, the folds' figures (:func:`segsearch.folds.summary`:
            each re-scored configuration's values per fold, mean and std, the winner).
        pareto_front: the non-dominated complete trials of a study with several objectives
            (cost objectives included), best quality first (segsearch.pareto); [] with one.
        pick: what ``export.pick`` chose: {rule, means, trial, objectives, front}; None with one
            objective.
    """

    best_value: float | None
    best_params: dict[str, Any]
    best_model_path: Path | None
    trials: list[TrialRecord]
    study_dir: Path
    best_trial: int | None = None
    architecture: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    final_epochs: int = 0
    moved_aside: Path | None = None
    final_failed: str | None = None
    final_retry: bool = False
    baseline: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    selection_value: float | None = None
    cross_validation: dict[str, Any] | None = None
    pareto_front: list[TrialRecord] = field(default_factory=list)
    pick: dict[str, Any] | None = None


class _Emitter:
    """Adds the study-wide fields (trials_total, best_value, elapsed_s, eta_s) to the events."""

    def __init__(self, progress: Progress | None, study: Study) -> None:
        self.progress = progress
        self.study = study
        self.config = study.config
        self.t0 = time.monotonic()
        self.best_value: float | None = None
        self.done = 0
        self.epochs_done = 0
        self.epoch_seconds: list[float] = []
        self.planned_epochs = study.budget_epochs()
        final = getattr(self.config.train, "final_epochs", None)
        if final is not None:  # trials at most trials * epochs, then the final's own epochs
            self.planned_epochs = (int(self.config.search.trials) * int(self.config.train.epochs)
                                   + int(final))
        self.baseline: float | None = None  # the best constant prediction's objective
        self.running: dict[int, int] = {}  # trial number -> its index while it runs

    def resume_from(self, records: list[TrialRecord]) -> None:
        """Start the counts from the trials the study already holds."""
        finished = [r for r in records if r.finished_ok]
        self.done = len(finished)
        self.epochs_done = sum(r.epochs for r in records)
        best = sort_best(finished, self.config.search.directions[0])
        # as while the trials run: the best so far is a complete trial's
        self.best_value = best[0].value if best and best[0].state == "complete" else None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind in ("epoch", "final_epoch"):
            self.epochs_done += 1
            seconds = (event.get("metrics") or {}).get("time_s")
            if seconds is not None:
                self.epoch_seconds.append(float(seconds))
        elif kind == "trial_end":
            if event.get("state") in ("complete", "pruned"):
                self.done += 1
                value = event.get("value")
                objective = self.study.objective
                if value is not None and event.get("state") == "complete" and objective.better(
                    value, self.best_value
                ):
                    self.best_value = value
        out = {
            "trials_total": self.config.search.trials,
            "trials_done": self.done,
            **event,
            "best_value": self.best_value,
            "elapsed_s": round(time.monotonic() - self.t0, 3),
            "eta_s": self.eta(),
        }
        if kind == "final_epoch":
            out["eta_s"] = self.eta(max(0, int(event.get("epochs") or 0)
                                        - int(event.get("epoch") or 0)))
        if kind in ("trial_start", "epoch", "trial_end") and isinstance(event.get("trial"), int):
            trial = event["trial"]
            if kind == "trial_start":  # trials running at once (workers) each get their own
                self.running[trial] = self.done + 1 + len(self.running)
            index = self.running.get(trial)
            if kind == "trial_end":
                self.running.pop(trial, None)
            out["index"] = index if index is not None else (
                self.done + (0 if kind == "trial_end" else 1))
        if self.baseline is not None and "baseline" not in out:
            out["baseline"] = self.baseline
        if self.progress is not None:
            self.progress(out)

    def eta(self, epochs_left: int | None = None) -> float | None:
        """Seconds left: epochs left times the mean epoch time (time limit capped).

        Args:
            epochs_left: the epochs left (the final training knows its own); None: what is left
                of the budget.
        """
        if not self.epoch_seconds:
            return None
        recent = self.epoch_seconds[-20:]
        if epochs_left is None:
            epochs_left = max(0, self.planned_epochs - self.epochs_done)
        epoch = sum(recent) / len(recent)
        left = epochs_left * epoch
        deadline = self.study.deadline
        if deadline is not None:
            until = deadline - time.monotonic()
            # before the limit another epoch starts and runs to its end: at least one epoch
            left = min(left, max(until, epoch) if until > 0 else 0.0)
        return round(left, 1)


class Study:
    """One segsearch study: its folder, its engine, its trials, its best model.

    Args:
        config: the :class:`segsearch.spacefile.Config` (``config.study_dir`` is the folder).
        fresh: move an existing study folder aside (to ``<name>.old-<timestamp>``) and start anew.
        rebuild_storage: rebuild the engine's records (Optuna storage, keras-tuner project) from
            the trial folders, when they are missing, empty or unreadable, then resume.
        callbacks: functions called with ``(optuna.Study, FrozenTrial)`` after each trial, as
            ``optuna.Study.optimize(callbacks=...)`` calls them (or ``module:attr`` strings),
            after those of ``search.callbacks``; engine optuna only (see
            :mod:`segsearch.callbacks`).

    Example:
        >>> study = Study(load_config("spaces/unet.yaml", trials=8))
        >>> results = study.run(progress=lambda e: print(e["event"]))
        >>> Study.open("studies/unet").trials()[0].state
        'complete'
    """

    def __init__(self, config: Any, *, fresh: bool = False, rebuild_storage: bool = False,
                 callbacks: Sequence[Any] | None = None) -> None:
        self.callbacks = list(callbacks or [])
        self._callbacks: list[Any] = []  # made from both when the search starts
        if self.callbacks and config.search.engine != "optuna":
            raise ConfigError(f"callbacks: Optuna callbacks get an optuna.Study and its trials, "
                              f"which engine {config.search.engine!r} has not; use engine: optuna "
                              "(--engine optuna), or pass no callbacks")
        self.folder = StudyFolder(config, fresh=fresh, rebuild_storage=rebuild_storage)
        self.workshop = Workshop(config)
        self.objective = self.workshop.objective
        self.deadline: float | None = None
        self._engine: Any = None

    @property
    def config(self) -> Any:
        """The study's Config (with the stored storage URL once a run resumed)."""
        return self.folder.config

    @property
    def dir(self) -> Path:
        """The study folder."""
        return self.folder.dir

    @property
    def moved_aside(self) -> Path | None:
        """Where ``fresh=True`` moved an old study, once it did."""
        return self.folder.moved_aside

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, study_dir: str | os.PathLike[str]) -> Study:
        """Open an existing study folder (for status and export).

        Args:
            study_dir: the folder holding ``config.yaml`` and ``study.json``.

        Raises:
            StudyError: the folder is not a segsearch study.
        """
        return cls(StudyFolder.stored_config(study_dir))

    # ------------------------------------------------------------------ public API
    def run(self, progress: Progress | None = None) -> Results:
        """Run (or resume) the search, train the best configuration further, export it.

        Args:
            progress: called with one dict per event: "study_start", "trial_start", "epoch",
                "trial_end", "final_start", "final_epoch", "export", "study_end".

        Raises:
            StudyError: the stored study cannot absorb this configuration, or too many trials in a
                row failed or were infeasible.
            ConfigError, DataError: a problem with the configuration or the data.
            KeyboardInterrupt: interrupted; run again to resume.
        """
        from segsearch.console import import_tensorflow_quietly
        from segsearch.devices import quiet_accelerators
        from segsearch.engines.worker import leave_spawn_bootstrap

        leave_spawn_bootstrap()  # a worker importing a script that runs a search at import time
        quiet_accelerators()  # no GPU memory taken ahead, should anything here initialise one
        import_tensorflow_quietly()
        from segsearch import callbacks

        # made before anything is written (a class or factory runs once here)
        self._callbacks = callbacks.resolve(self.config.search.callbacks, self.callbacks)
        folder = self.folder
        if folder.rebuild_storage and read_meta(self.dir) is None:
            raise StudyError(f"--rebuild-storage: {self.dir} holds no study ({STUDY_FILE} is "
                             "missing); give the study's folder with --study-dir")
        if not folder.fresh:
            folder.use_stored_storage()
            self.workshop.config = folder.config
        if self.config.export.enabled:  # an export format that cannot be written: now, not after
            from segsearch.formats import require  # the search (a missing extra, the backend)

            require(self.config.export.formats)
        # before anything is written: a database that cannot be reached, and a study whose
        # records are gone (it is never started over)
        if self.config.storage:
            folder.check_reachable()
        config = self.config
        emit = _Emitter(progress, self)
        made = not self.dir.exists()
        state: Any = None
        try:
            new = folder.prepare(self.workshop)
            if not new:
                state = folder.check_storage()
            from segsearch.engines.select import engine_class

            engine_cls = engine_class(config.search.engine)
            folder.check_or_store(engine_cls.fingerprint(config, self.hypermodel()), new,
                                  self.workshop)
        except BaseException:
            if made:  # nothing of a study that never started is left (bad data, out of memory)
                remove_unstarted(self.dir)
            raise
        if folder.rebuild_storage:
            folder.set_storage_aside(state)
        engine = self._make_engine(engine_cls, emit)
        if folder.rebuild_storage:
            rebuilt = engine.rebuild(read_trial_records(self.dir))
            emit({"event": "storage_rebuilt", "path": str(self.dir), "trials": rebuilt,
                  "storage": state.where})
        records = engine.records()
        emit.resume_from(records)
        self._engine = engine  # the baseline is computed in its worker process
        try:
            baseline = self.baseline()
        except BaseException:
            getattr(engine, "close_workers", lambda: None)()
            self._engine = None
            raise
        if config.search.time_limit:  # the clock starts with the search, once all is set up
            self.deadline = engine.session.start_clock(float(config.search.time_limit))
        best_constant = (baseline or {}).get("best") or {}
        emit.baseline = best_constant.get(self.objective.name)
        emit({
            "event": "study_start",
            "study": config.study,
            "path": str(self.dir),
            "engine": config.search.engine,
            "algorithm": config.search.algorithm,
            "resumed": not new,
            "moved_aside": None if self.moved_aside is None else str(self.moved_aside),
            "data": self.workshop.load_data().info.get("description"),
            "baseline": best_constant or None,
            "seed_infeasible": getattr(self.workshop, "seed_note", None),
            "auto": [c.to_dict() for c in config.auto],
        })
        self._engine = engine
        try:
            engine.run()
            # several drivers on one study: one at a time trains the best further and exports;
            # the next finds both done
            with exclusive(self.dir / ".final.lock"):
                try:
                    return self._after_search(engine, emit)
                except PickError:  # nothing was exported: the stored configuration stays
                    self.folder.restore_config()
                    raise
        finally:
            getattr(engine, "close_workers", lambda: None)()
            self._engine = None

    def _after_search(self, engine: Any, emit: Any) -> Results:
        """Train the best trial further, export it, send study_end; the Results."""
        config = self.config
        records = engine.records()
        # fewer finished trials than asked: the time limit, or a space with nothing left to try
        # (a small keras-tuner grid); the study goes on with what it has
        short = sum(r.finished_ok for r in records) < config.search.trials
        from segsearch import folds

        folds.refit(self, records, emit)  # data.folds with search.refit_folds: the top N on all
        best = self.best(records)
        final = self._final_training(best, records, emit)
        # export.ensemble: folds: the winner's other fold models get the same further training
        folds.train_members_further(self, best, self.final_epochs(records), emit)
        export_dir = None
        if config.export.enabled:
            export_dir = self.folder.current_export(final, best, records)
            if export_dir is not None:
                emit({"event": "export", "path": str(export_dir), "unchanged": True})
            else:
                export_dir = self.export(progress=emit, final=final, best=best, records=records)
        selection_value = final.get("value", best.value)  # the moving average that chose it
        value, metrics = selection_value, dict(final.get("values") or best.values)
        exported = _exported_metrics(export_dir)
        if exported.get("value") is not None:  # the exported model scored as best/ says
            value, metrics = exported["value"], exported["validation"]
        model_path = (export_dir / "model.keras") if export_dir else self.dir / final["model"]
        from segsearch import scores

        best_constant = (self.baseline() or {}).get("best") or None
        verdict = scores.judge(value, (best_constant or {}).get(self.objective.name),
                               self.objective.direction)
        emit({"event": "study_end", "path": str(self.dir), "best_value": value,
              "best_trial": best.number, "model": str(model_path),
              "stopped_early": short and not self.deadline_passed(),
              "time_limit_reached": short and self.deadline_passed(),
              "baseline": best_constant, "verdict": verdict})
        return Results(
            best_value=value,
            best_params=dict(best.params),
            best_model_path=model_path,
            trials=records,
            study_dir=self.dir,
            best_trial=best.number,
            architecture=best.architecture,
            metrics=metrics,
            selection_value=selection_value,
            final_epochs=int(final.get("epochs", 0)),
            moved_aside=self.moved_aside,
            final_failed=(final.get("reason") or "unknown reason") if _final_failed(final)
            else None,
            final_retry=_final_retry(final),
            baseline=best_constant,
            verdict=verdict,
            cross_validation=folds.summary(self.dir, config, records, self.objective),
            pareto_front=self.pareto_front(records),
            pick=self.pick(records).to_dict() if self._several() else None,
        )

    def trials(self) -> list[TrialRecord]:
        """Every trial of the stored study, by number (reads the storage; trains nothing).

        The storage is opened read-only: nothing is created, migrated or written.

        Raises:
            StudyError: the storage is missing, empty or unreadable while the trial folders hold
                records (rebuild it with ``--rebuild-storage``), or it cannot be reached.
        """
        return self.folder.read_records()

    def best(self, records: list[TrialRecord] | None = None) -> TrialRecord:
        """The best complete trial (by the first objective); with several objectives, the trial
        ``export.pick`` picks on the Pareto front (:meth:`pick`).

        Args:
            records: the trials; read from the study when None.

        Raises:
            StudyError: no trial completed, or none meets ``export.pick``'s limits.
        """
        records = self.trials() if records is None else records
        complete = [r for r in records if r.state == "complete" and r.value is not None]
        ranked = sort_best(complete, self.objective.direction)
        if not ranked:
            reasons = "; ".join(dict.fromkeys(r.reason for r in records if r.reason)) or "none ran"
            raise StudyError(f"{self.dir}: no trial completed ({reasons}); run the search first, "
                             "or widen the space / raise train.epochs")
        if self._several():  # export.pick chooses among the Pareto front
            return self.pick(records).trial
        from segsearch.folds import winner

        # data.folds with a finished refit: the best mean over folds
        return winner(self.dir, self.config, records, self.objective) or ranked[0]

    def _several(self) -> bool:
        return len(self.objective.names) > 1

    def pareto_front(self, records: list[TrialRecord] | None = None) -> list[TrialRecord]:
        """The non-dominated complete trials, best quality first ([] with one objective).

        Args:
            records: the trials; read from the study when None.
        """
        if not self._several():
            return []
        from segsearch.pareto import pareto_front

        return pareto_front(self.trials() if records is None else records, self.objective)

    def pick(self, records: list[TrialRecord] | None = None) -> Any:
        """The trial ``export.pick`` chooses (a :class:`segsearch.pareto.Pick`).

        Args:
            records: the trials; read from the study when None.

        Raises:
            StudyError: no trial completed, or none meets the pick's limits.
        """
        from segsearch.pareto import pick

        records = self.trials() if records is None else records
        try:
            return pick(records, self.objective, self.config.export.pick)
        except StudyError as e:  # PickError stays a PickError
            raise type(e)(f"{self.dir}: {e}") from None

    def export(
        self,
        progress: Progress | None = None,
        *,
        final: Mapping[str, Any] | None = None,
        best: TrialRecord | None = None,
        records: list[TrialRecord] | None = None,
        formats: Sequence[str] | str | None = None,
    ) -> Path:
        """(Re)write ``best/``: model.keras, SavedModel, hyperparameters, metrics, trials, overlays.

        Args:
            progress: called with the "export" event (with ``formats``: the files' checks).
            final: the final training's summary (read from ``final/final.json`` when None).
            best: the best trial (read from the study when None).
            records: every trial (read from the study when None).
            formats: the model files to write this time instead of ``export.formats`` (e.g.
                ["saved_model", "onnx"]; keras is always written).

        Returns:
            The ``best/`` folder.
        """
        from segsearch.export import export_study
        from segsearch.formats import read_checks

        config = self.config
        if formats is not None:
            config = dataclasses.replace(
                config, export=dataclasses.replace(config.export, formats=formats))
        records = self.trials() if records is None else records
        best = self.best(records) if best is None else best
        if final is None:
            final = self.folder.final_summary(best) or self.folder.trial_as_final(best)
        model_path = self.dir / final["model"]
        if not model_path.exists():
            raise StudyError(f"{model_path}: the best model's checkpoint is missing; run the same "
                             "command again to train it")
        from segsearch import folds

        extra = {
            "ensemble": folds.ensemble_for(self.dir, self.config, best, model_path, records,
                                           self.objective),
            "cross_validation": folds.summary(self.dir, self.config, records, self.objective),
            "fold_validation": functools.partial(folds.fold_validation, config),
        }
        engine = self._engine
        if engine is not None and getattr(engine, "isolated", False):
            # in the search's worker process: loading and scoring the model would initialise
            # the GPU here
            from segsearch.workshop import export_in_worker

            path = engine.worker(0).call(export_in_worker, config, model_path, best=best,
                                         final=dict(final), records=records, **extra)
        else:
            splits = self.workshop.load_data()
            path = export_study(
                self.dir,
                config=config,
                model_path=model_path,
                best=best,
                final=dict(final),
                records=records,
                val=splits.val,
                **extra,
            )
        if progress is not None:
            from segsearch.export import export_notes

            progress({"event": "export", "path": str(path), "formats": read_checks(path),
                      "notes": export_notes(path)})
        return path

    def budget_epochs(self) -> int:
        """Total epochs of search + final training: ``train.budget_epochs`` or trials * epochs."""
        train = self.config.train
        if train.budget_epochs is not None:
            return int(train.budget_epochs)
        return int(self.config.search.trials) * int(train.epochs)

    def deadline_passed(self) -> bool:
        """Whether ``search.time_limit`` has run out (False without one)."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    @property
    def engine(self) -> Any:
        """The engine of the run in progress (None outside :meth:`run`)."""
        return self._engine

    # ------------------------------------------------------------------ the workshop's
    def hypermodel(self) -> Any:
        """The study's hypermodel (:meth:`segsearch.workshop.Workshop.hypermodel`)."""
        return self.workshop.hypermodel()

    def training_context(self, progress: Progress | None = None) -> Any:
        """The training context every trial of this study shares, under the study's deadline.

        Args:
            progress: where epoch events go.
        """
        return self.workshop.training_context(progress, deadline=self.deadline)

    def baseline(self) -> dict[str, Any] | None:
        """The constant predictions' scores (:meth:`segsearch.workshop.Workshop.baseline`),
        computed in the search's worker process when the trials train in one."""
        engine = self._engine
        if engine is not None and getattr(engine, "isolated", False) and \
                self.workshop.stored_baseline() is None:
            from segsearch.workshop import baseline_in_worker

            return engine.worker(0).call(baseline_in_worker, self.config)
        return self.workshop.baseline()

    def _make_engine(self, engine_cls: type, emit: Progress) -> Any:
        from segsearch.engines.base import SearchSession

        config = self.config
        hypermodel = self.hypermodel()
        session = SearchSession(
            config=config,
            study_dir=self.dir,
            hypermodel=hypermodel,
            context=self.training_context(emit),
            emit=emit,
            storage=self.folder.storage_url(),
            prepare=prepare_trials,
            callbacks=list(self._callbacks),
        )
        return engine_cls(session)

    # ------------------------------------------------------------------ final training
    def final_epochs(self, records: list[TrialRecord]) -> int:
        """Epochs of the final training: ``train.final_epochs`` or what is left of the budget.

        What the trials and the refit (``segsearch.folds``) trained is used; with
        ``export.ensemble: folds`` the rest is shared by the winner's K fold models, each trained
        further for an equal part.

        Args:
            records: every trial (their epochs are what the search used).
        """
        if self.config.train.final_epochs is not None:
            return int(self.config.train.final_epochs)
        from segsearch import folds

        used = sum(int(r.epochs or 0) for r in records) + folds.refit_epochs(self.dir)
        return max(0, self.budget_epochs() - used) // folds.member_count(self.config)

    def _final_training(self, best: TrialRecord, records: list[TrialRecord],
                        emit: Progress) -> dict[str, Any]:
        """Train the best configuration further from its checkpoint; return the summary."""
        from segsearch.engines.trial import TrialTask, continuation, run_trial, smoothed_at_end

        planned = self.final_epochs(records)
        done = self.folder.final_summary(best, planned)
        if done is not None and not _final_retry(done):
            return done  # done (or diverged: it would diverge again); a failed one is retried
        base = self.folder.trial_as_final(best)
        if planned <= 0 or self.deadline_passed():
            return base
        # continue from where the trial stopped (its last epoch), not from its best epoch: no
        # epoch of training is thrown away; the trial's best stays the one to beat
        resume = continuation(trial_dir(self.dir, best.number))
        start = int(best.initial_epoch + best.epochs)
        smoothed = smoothed_at_end(trial_dir(self.dir, best.number), self.objective.name)
        if resume is not None and resume.name == CHECKPOINT_FILE:
            start = int(best.best_epoch or start)
            smoothed = best.value  # the best epoch's state: its moving average goes on
        emit({"event": "final_start", "trial": best.number, "epochs": planned,
              "from_epoch": start, "value": best.value})
        context = self.training_context(emit)
        folder = self.dir / FINAL_DIR
        if folder.exists():
            shutil.rmtree(folder)  # a final training that was cut off
        # the average goes on from the trial's; final weights replace the trial's checkpoint
        # only when their average beats the trial's best average (the same rule as in a trial)
        task = TrialTask(number=-1, out_dir=folder, epochs=start + planned, initial_epoch=start,
                         resume_from=resume, baseline=best.value, phase="final",
                         smoothed_start=smoothed, hparams=dict(best.params),
                         schedule=self.config.train.final_schedule)
        engine = self._engine
        if engine is not None and getattr(engine, "isolated", False):
            # in the search's worker process, like the trials (a crash there fails only this)
            outcome = engine.worker(0).run(task, None, deadline=self.deadline)
        else:
            outcome = run_trial(context, lambda: None, task)
        summary: dict[str, Any] = {
            **base,
            "from_epoch": start,
            "epochs": outcome.epochs,
            "planned_epochs": planned,
            "schedule": task.schedule,
            "trial_value": best.value,
            "final_best": _final_best(outcome.history, self.objective),
            "final_state": outcome.state,
            "duration_s": outcome.duration_s,
            "started": outcome.started,
            "finished": outcome.finished,
        }
        if outcome.state == "complete" and outcome.checkpoint is not None:
            summary.update(model=str(Path(FINAL_DIR) / outcome.checkpoint.name),
                           best_epoch=outcome.best_epoch, value=outcome.value,
                           values=dict(outcome.values))
        else:  # no epoch beat the trial's best (or it failed): the trial's checkpoint stays best
            summary.update(best_epoch=best.best_epoch, reason=outcome.reason)
        if outcome.state != "complete":
            summary["diverged"] = bool(outcome.diverged)
        atomic_write_text(folder / FINAL_FILE, json.dumps(jsonable(summary), indent=2) + "\n")
        emit({"event": "final_end", "trial": best.number, "state": outcome.state,
              "reason": outcome.reason, "epochs": outcome.epochs,
              "retry": _final_retry(summary), "model": summary["model"],
              "final_best": summary["final_best"], "trial_value": best.value,
              "trial_kept": outcome.checkpoint is None or outcome.state != "complete"})
        return summary


def run(config_or_path: Any, *, fresh: bool = False, progress: Progress | bool | None = True,
        quiet: bool = False, callbacks: Sequence[Any] | None = None,
        **overrides: Any) -> Results:
    """Run (or resume) a study from Python: a Config, a space file path, a shipped name or a dict.

    Shows the progress on stdout as ``segsearch run`` does, unless told otherwise. Start it under
    ``if __name__ == "__main__":`` in a script: the trials train in a worker process that imports
    the script again.

    Args:
        config_or_path: a :class:`segsearch.spacefile.Config`, a path to a space file, a bare
            shipped space name ("unet"), or a mapping of the space file's sections.
        fresh: move an existing study folder aside and start anew.
        progress: True (the default) prints each trial and epoch on stdout; a callable is called
            with each progress event (a dict) instead; None or False shows nothing.
        quiet: show nothing (the same as ``progress=None``).
        callbacks: functions of ``(optuna.Study, FrozenTrial)`` called after each trial, as
            ``optuna.Study.optimize(callbacks=...)`` calls them (e.g. optuna-integration's
            ``MLflowCallback(metric_name=...)``); engine optuna only.
        **overrides: what ``segsearch.spacefile.load_config`` accepts: sets=["train.epochs=3"],
            trials, epochs, image_size, engine, data, study_dir, storage.

    Returns:
        Results(best_value, best_params, best_model_path, trials, study_dir, ...).

    Example:
        >>> import segsearch
        >>> if __name__ == "__main__":
        ...     results = segsearch.run("unet", trials=3, epochs=2, image_size=64,
        ...                             study_dir="studies/unet-small")
        ...     print(results.best_model_path)
        studies/unet-small/best/model.keras
    """
    from segsearch.console import import_tensorflow_quietly
    from segsearch.devices import quiet_accelerators
    from segsearch.engines.worker import leave_spawn_bootstrap

    leave_spawn_bootstrap()  # before anything is read or written (see Study.run)
    quiet_accelerators()  # before a backend is imported (see Study.run)
    import_tensorflow_quietly()  # before the space's check builds a model
    from segsearch.spacefile import Config, load_config

    if isinstance(config_or_path, Config):
        config = config_or_path.with_overrides(**overrides) if overrides else config_or_path
    else:
        config = load_config(config_or_path, **overrides)
    show: Progress | None
    if quiet or progress is None or progress is False:
        show = None
    elif progress is True:
        from segsearch.console import TextProgress

        show = TextProgress(config.search.objectives[0], direction=config.search.directions[0])
    elif callable(progress):
        show = progress
    else:
        from segsearch.errors import ConfigError

        raise ConfigError(f"progress: expected True, False, None or a function of one event, got "
                          f"{progress!r}")
    return Study(config, fresh=fresh, callbacks=callbacks).run(progress=show)


# ---------------------------------------------------------------------------------- helpers
def _final_failed(final: Mapping[str, Any]) -> bool:
    """Whether a final training's summary (final.json) records a failure."""
    return final.get("final_state", "complete") not in ("complete", "pruned")


def _final_retry(final: Mapping[str, Any]) -> bool:
    """Whether the next run trains a failed final training again (not when it diverged)."""
    return _final_failed(final) and not final.get("diverged", False)


def _final_best(history: list[dict[str, float]], objective: Objective) -> float | None:
    """The best moving average of the objective among the final training's own epochs."""
    best = None
    for row in history:
        value = row.get(f"{objective.name}_ema")
        if value is not None and objective.better(value, best):
            best = value
    return best


def _exported_metrics(export_dir: Path | None) -> dict[str, Any]:
    """The exported model's objective value and validation metrics (``best/metrics.yaml``)."""
    if export_dir is None:
        return {}
    try:
        stored = yaml.safe_load((export_dir / "metrics.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    value = (stored.get("objective") or {}).get("value")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return {}
    return {"value": float(value), "validation": dict(stored.get("validation") or {})}
