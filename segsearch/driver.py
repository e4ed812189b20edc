"""The driver: one study, from a configuration to trials to the best model exported.

:class:`Study` owns a study folder::

    studies/<name>/
        study.json          what the stored study fixes (architectures, data, engine, space,
                            objective)
        config.yaml         the resolved configuration of the latest run
        split.json          the data split, reused on every resume
        baseline.json       the scores of the constant predictions on the validation set
                            (segsearch.scores), shown beside every figure
        study.db            Optuna's storage (engine optuna, unless --storage names another)
        keras_tuner/        keras-tuner's project (engine keras-tuner)
        trials/<nnnn>/      trial.json (its record), history.csv (metrics per epoch), model.keras
                            (weights + optimizer state; kept for the best few trials only),
                            error.txt (a failed trial's full traceback)
        trials.csv          every trial, one row each
        final/              the best configuration trained further: model.keras, history.csv,
                            final.json
        best/               the export (see segsearch.export)

Running the same configuration again resumes: finished trials are kept, a trial that was cut off is
run again, so are the trials that failed for a reason outside their configuration (a missing
module or file, a full disk, a killed worker) and the seed trials that did not complete, and the
search stops when ``search.trials`` trials are finished (complete or pruned). A
configuration the stored study cannot absorb (other architectures, data, image size, classes,
engine, hyperparameter distributions, objective) is refused with a :class:`StudyError` naming
``--fresh`` and ``--study-dir``; ``fresh=True`` moves the old folder aside to
``<name>.old-<timestamp>`` (nothing is deleted). A storage (``study.db``, a ``--storage``
database, ``keras_tuner/``) that is missing, empty, unreadable or behind ``trials/`` is never
started over: ``run``, ``status`` and ``export`` refuse it (:class:`StudyError`), and
``rebuild_storage=True`` rebuilds it from the trial folders (:mod:`segsearch.engines.storage`).

After the search the best configuration is trained further, from its checkpoint (optimizer state
included), for what is left of ``train.budget_epochs`` (default ``trials * epochs``) or for
``train.final_epochs``, keeping the best weights by the objective's moving average (the same
rule that picks a trial's best epoch, :data:`segsearch.scores.EMA_ALPHA`); the final weights
replace the trial's checkpoint only when their average beats the trial's; that model is exported.
When that final training fails (its worker dies, an error), the best trial's checkpoint is exported
instead, :attr:`Results.final_failed` says why, and the next run retries the final training; a
final training that diverged is not retried (it would diverge again).

Example:
    >>> from segsearch.config import load_config
    >>> from segsearch.driver import Study
    >>> results = Study(load_config("unet", trials=4, epochs=3)).run(progress=print)
    >>> results.best_value, results.best_model_path
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from segsearch.engines.results import (
    CHECKPOINT_FILE,
    Objective,
    TrialRecord,
    atomic_write_text,
    read_trial_records,
    sort_best,
    trial_dir,
)
from segsearch.errors import StudyError

__all__ = ["Study", "Results", "run", "STUDY_FILE", "CONFIG_FILE", "SPLIT_FILE", "FINAL_DIR"]

STUDY_FILE = "study.json"
CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.json"
FINAL_DIR = "final"
FINAL_FILE = "final.json"
_FORMAT = 1
#: files a run writes before study.json: a folder holding only these is still a new study.
_BEFORE_STUDY_FILE = (SPLIT_FILE,)
#: DataConfig fields that define the data a study was searched on (augment and cache may change).
_DATA_KEYS = ("source", "image_size", "num_classes", "channels", "val_fraction", "val_source",
              "seed", "mask_suffix", "mask_kind", "colors", "ignore_value", "resize", "images_dir",
              "masks_dir", "sample_count", "pair", "values", "mat_key")

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Results:
    """What a study run returns.

    Args:
        best_value: the objective of the exported model on the validation images.
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

    def seed_records(self, records: list[TrialRecord]) -> None:
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
            out["index"] = self.done + (0 if kind == "trial_end" else 1)
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
    """One study: its folder, its engine, its trials, its best model.

    Args:
        config: the :class:`segsearch.config.Config` (``config.study_dir`` is the folder).
        fresh: move an existing study folder aside (to ``<name>.old-<timestamp>``) and start anew.
        rebuild_storage: rebuild the engine's records (Optuna storage, keras-tuner project) from
            the trial folders, when they are missing, empty or unreadable, then resume.

    Example:
        >>> study = Study(load_config("spaces/unet.yaml", trials=8))
        >>> results = study.run(progress=lambda e: print(e["event"]))
        >>> Study.open("studies/unet").trials()[0].state
        'complete'
    """

    def __init__(self, config: Any, *, fresh: bool = False, rebuild_storage: bool = False) -> None:
        if fresh and rebuild_storage:
            raise StudyError("--fresh and --rebuild-storage: choose one (--fresh starts a new "
                             "study; --rebuild-storage keeps this one and rebuilds its records)")
        self.config = config
        self.dir = Path(config.study_dir)
        self.fresh = fresh
        self.rebuild_storage = rebuild_storage
        self.moved_aside: Path | None = None
        self.deadline: float | None = None
        self.objective = Objective(tuple(config.search.objectives), tuple(config.search.directions))
        self._splits: Any = None
        self._hypermodel: Any = None
        self._engine: Any = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, study_dir: str | os.PathLike[str]) -> Study:
        """Open an existing study folder (for status and export).

        Args:
            study_dir: the folder holding ``config.yaml`` and ``study.json``.

        Raises:
            StudyError: the folder is not a segsearch study.
        """
        from segsearch.config import load_config

        folder = Path(study_dir)
        _recover_export(folder)
        meta = _read_meta(folder)
        config_path = folder / CONFIG_FILE
        if meta is None or not config_path.is_file():
            raise StudyError(
                f"{folder}: not a segsearch study folder (no {STUDY_FILE} / {CONFIG_FILE}); give "
                "the folder `segsearch run` made, e.g. studies/<name>"
            )
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        config = load_config(raw, study_dir=folder, storage=meta.get("storage"), check_space=False)
        return cls(config)

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
        from segsearch.engines.worker import leave_spawn_bootstrap

        leave_spawn_bootstrap()  # a worker importing a script that runs a search at import time
        import_tensorflow_quietly()
        if self.rebuild_storage and _read_meta(self.dir) is None:
            raise StudyError(f"--rebuild-storage: {self.dir} holds no study ({STUDY_FILE} is "
                             "missing); give the study's folder with --study-dir")
        if not self.fresh:
            self._use_stored_storage()
        # before anything is written: a database that cannot be reached, and a study whose
        # records are gone (it is never started over)
        if self.config.storage:
            self._check_reachable()
        config = self.config
        emit = _Emitter(progress, self)
        made = not self.dir.exists()
        state: Any = None
        try:
            new = self._prepare_folder()
            if not new:
                state = self._check_storage()
            from segsearch.engines import engine_class

            engine_cls = engine_class(config.search.engine)
            self._check_or_store(engine_cls.fingerprint(config, self.hypermodel()), new)
        except BaseException:
            if made:  # nothing of a study that never started is left (bad data, out of memory)
                _remove_unstarted(self.dir)
            raise
        if self.rebuild_storage:
            self._set_storage_aside(state)
        engine = self._make_engine(engine_cls, emit)
        if self.rebuild_storage:
            rebuilt = engine.rebuild(read_trial_records(self.dir))
            emit({"event": "storage_rebuilt", "path": str(self.dir), "trials": rebuilt,
                  "storage": state.where})
        if config.search.time_limit:  # the clock starts with the search, once all is set up
            self.deadline = engine.session.start_clock(float(config.search.time_limit))
        records = engine.records()
        emit.seed_records(records)
        baseline = self.baseline()
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
            "data": self._splits.info.get("description"),
            "baseline": best_constant or None,
        })
        self._engine = engine
        try:
            engine.run()
            # several drivers on one study: one at a time trains the best further and exports;
            # the next finds both done
            with _exclusive(self.dir / ".final.lock"):
                return self._after_search(engine, emit)
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
        best = self.best(records)
        final = self._final_training(best, records, emit)
        export_dir = None
        if config.export.enabled:
            export_dir = self._current_export(final, best, records)
            if export_dir is not None:
                emit({"event": "export", "path": str(export_dir), "unchanged": True})
            else:
                export_dir = self.export(progress=emit, final=final, best=best, records=records)
        value = final.get("value", best.value)
        model_path = (export_dir / "model.keras") if export_dir else self.dir / final["model"]
        from segsearch import scores

        best_constant = (self.baseline() or {}).get("best") or None
        verdict = scores.judge(value, (best_constant or {}).get(self.objective.name),
                               self.objective.direction)
        emit({"event": "study_end", "path": str(self.dir), "best_value": value,
              "best_trial": best.number, "model": str(model_path),
              "stopped_early": short and not self._deadline_passed(),
              "time_limit_reached": short and self._deadline_passed(),
              "baseline": best_constant, "verdict": verdict})
        return Results(
            best_value=value,
            best_params=dict(best.params),
            best_model_path=model_path,
            trials=records,
            study_dir=self.dir,
            best_trial=best.number,
            architecture=best.architecture,
            metrics=dict(final.get("values") or best.values),
            final_epochs=int(final.get("epochs", 0)),
            moved_aside=self.moved_aside,
            final_failed=(final.get("reason") or "unknown reason") if _final_failed(final)
            else None,
            final_retry=_final_retry(final),
            baseline=best_constant,
            verdict=verdict,
        )

    def trials(self) -> list[TrialRecord]:
        """Every trial of the stored study, by number (reads the storage; trains nothing).

        The storage is opened read-only: nothing is created, migrated or written.

        Raises:
            StudyError: the storage is missing, empty or unreadable while the trial folders hold
                records (rebuild it with ``--rebuild-storage``), or it cannot be reached.
        """
        meta = _read_meta(self.dir) or {}
        engine = meta.get("engine", self.config.search.engine)
        archs = tuple(self.config.architectures)
        state = self._storage_state(engine)
        problem = self._storage_problem(state, read_trial_records(self.dir),
                                        f"segsearch run SPACE --study-dir {self.dir} "
                                        "--rebuild-storage (SPACE: the study's space file, or "
                                        f"{self.dir / CONFIG_FILE})")
        if problem:
            raise StudyError(problem)
        if engine == "optuna":
            if not state.ok:
                return []  # nothing ran yet
            import optuna

            from segsearch.engines.results import optuna_records
            from segsearch.engines.storage import load_optuna_study

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = load_optuna_study(self._storage_url(), self.config.study)
            return optuna_records(study, self.dir, archs)
        from segsearch.engines.results import keras_tuner_records

        return keras_tuner_records(self.dir, archs)

    def best(self, records: list[TrialRecord] | None = None) -> TrialRecord:
        """The best complete trial (by the first objective).

        Args:
            records: the trials; read from the study when None.

        Raises:
            StudyError: no trial completed.
        """
        records = self.trials() if records is None else records
        complete = [r for r in records if r.state == "complete" and r.value is not None]
        ranked = sort_best(complete, self.objective.direction)
        if not ranked:
            reasons = "; ".join(dict.fromkeys(r.reason for r in records if r.reason)) or "none ran"
            raise StudyError(f"{self.dir}: no trial completed ({reasons}); run the search first, "
                             "or widen the space / raise train.epochs")
        return ranked[0]

    def export(
        self,
        progress: Progress | None = None,
        *,
        final: Mapping[str, Any] | None = None,
        best: TrialRecord | None = None,
        records: list[TrialRecord] | None = None,
    ) -> Path:
        """(Re)write ``best/``: model.keras, SavedModel, hyperparameters, metrics, trials, overlays.

        Args:
            progress: called with the "export" event.
            final: the final training's summary (read from ``final/final.json`` when None).
            best: the best trial (read from the study when None).
            records: every trial (read from the study when None).

        Returns:
            The ``best/`` folder.
        """
        from segsearch.export import export_study

        records = self.trials() if records is None else records
        best = self.best(records) if best is None else best
        if final is None:
            final = self._final_summary(best) or self._trial_as_final(best)
        model_path = self.dir / final["model"]
        if not model_path.exists():
            raise StudyError(f"{model_path}: the best model's checkpoint is missing; run the same "
                             "command again to train it")
        splits = self._load_data()
        path = export_study(
            self.dir,
            config=self.config,
            model_path=model_path,
            best=best,
            final=dict(final),
            records=records,
            val=splits.val,
        )
        if progress is not None:
            progress({"event": "export", "path": str(path)})
        return path

    def _current_export(self, final: Mapping[str, Any], best: TrialRecord,
                        records: list[TrialRecord]) -> Path | None:
        """best/ when it already exports this model, these trials and these export settings."""
        from segsearch.export import BEST_DIR, MANIFEST, manifest_key

        manifest = self.dir / BEST_DIR / MANIFEST
        try:
            stored = json.loads(manifest.read_text(encoding="utf-8")).get("key")
        except (OSError, ValueError):
            return None
        key = manifest_key(self.config, best, final, records)
        return manifest.parent if stored == key else None

    # ------------------------------------------------------------------ folder
    def budget_epochs(self) -> int:
        """Total epochs of search + final training: ``train.budget_epochs`` or trials * epochs."""
        train = self.config.train
        if train.budget_epochs is not None:
            return int(train.budget_epochs)
        return int(self.config.search.trials) * int(train.epochs)

    def _storage_url(self) -> str:
        """The Optuna storage URL to connect with (the password from the environment, see
        :func:`segsearch.engines.storage.resolve`)."""
        if self.config.storage:
            from segsearch.engines.storage import resolve

            return resolve(str(self.config.storage))
        return f"sqlite:///{(self.dir / 'study.db').resolve()}"

    # ------------------------------------------------------------------ storage
    def _use_stored_storage(self) -> None:
        """Resuming without --storage: the storage URL study.json holds (its password masked)."""
        stored = (_read_meta(self.dir) or {}).get("storage")
        if stored and not self.config.storage and self.config.search.engine == "optuna":
            import dataclasses

            self.config = dataclasses.replace(self.config, storage=str(stored))

    def _check_reachable(self) -> None:
        """Raise the one-line StudyError (password masked) when the --storage database cannot be
        reached or its driver is missing."""
        from segsearch.engines.storage import connect_error, probe_optuna

        url = self._storage_url()
        state = probe_optuna(url, self.config.study, study_dir=self.dir)
        if state.status == "unreachable":
            raise connect_error(url, RuntimeError(state.detail))

    def _storage_state(self, engine: str | None = None) -> Any:
        """What the study's storage holds (:class:`segsearch.engines.storage.StorageState`)."""
        from segsearch.engines import storage

        if (engine or self.config.search.engine) == "optuna":
            return storage.probe_optuna(self._storage_url(), self.config.study,
                                        study_dir=self.dir)
        return storage.probe_keras_tuner(self.dir / storage.KT_PROJECT_DIR)

    def _storage_problem(self, state: Any, records: list[TrialRecord], fix: str) -> str | None:
        """Why the storage cannot be used with these trial records, with ``fix``; None if it can.

        Args:
            state: the storage's StorageState.
            records: the records in the trial folders.
            fix: the command that rebuilds the storage.
        """
        from segsearch.engines.storage import connect_error

        if state.status == "unreachable":
            return str(connect_error(state.where, RuntimeError(state.detail)))
        if state.status == "unreadable":
            if not state.local:
                return f"{state.where}: {state.detail}; check that this is the study's database"
            return (f"{state.where}: {state.detail}; the study's records cannot be read. Rebuild "
                    f"them from the trial folders (the storage is kept, renamed): {fix}")
        if not records:
            return None
        top = max(r.number for r in records)
        held = f"{self.dir / 'trials'} holds the records of {_count(len(records), 'trial')}"
        if not state.ok or state.trials == 0:
            detail = state.detail or f"it holds study {self.config.study!r} without its trials"
            return (f"{state.where}: {detail}, but {held}; segsearch does not start the study "
                    f"over. Rebuild its records from the trial folders: {fix}")
        if state.trials <= top:
            detail = (f"{state.where}: it holds {_count(state.trials, 'trial')} of study "
                      f"{self.config.study!r}, but {held} (up to #{top})")
            if state.local:
                return (f"{detail}: it is an older copy. Rebuild the records from the trial "
                        f"folders (the storage is kept, renamed): {fix}")
            return (f"{detail}: it is not this study's storage; give the URL the study ran on "
                    f"(--storage or {self._env_name()})")
        return None

    @staticmethod
    def _env_name() -> str:
        from segsearch.engines.storage import ENV_URL

        return ENV_URL

    def _check_storage(self) -> Any:
        """Refuse to resume a study whose storage lost its records (or rebuild, when asked).

        Returns:
            The storage's StorageState.

        Raises:
            StudyError: the storage is missing, empty, unreadable, unreachable or behind the
                trial folders (without --rebuild-storage), or --rebuild-storage has nothing to do.
        """
        state = self._storage_state()
        records = read_trial_records(self.dir)
        problem = self._storage_problem(state, records,
                                        "run the same command with --rebuild-storage")
        if not self.rebuild_storage:
            if problem:
                raise StudyError(problem)
            return state
        # what segsearch may not rebuild: a database it cannot reach or read, or one holding
        # other trials of this study (it never deletes from a database)
        foreign = not state.local and (state.status in ("unreachable", "unreadable") or (
            state.ok and state.trials > 0))
        if problem and foreign:
            raise StudyError(problem)
        if problem is None:
            held = (f"holds the study's {_count(state.trials, 'trial')}" if state.ok else
                    f"and {self.dir / 'trials'} hold no trial records")
            raise StudyError(f"--rebuild-storage: {state.where} {held}; nothing to rebuild: run "
                             "the same command without --rebuild-storage")
        return state

    def _set_storage_aside(self, state: Any) -> None:
        """Before a rebuild: rename a storage in the study folder that holds other records
        (unreadable, or an older copy) to ``<name>.broken-<timestamp>``; nothing is deleted."""
        if not state.local or state.status in ("missing",) or (
                state.status in ("empty", "no_study") and self.config.search.engine == "optuna"):
            return  # nothing there, or Optuna adds the study to the file as it is
        _move_aside(Path(state.where), "broken")

    def _deadline_passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _prepare_folder(self) -> bool:
        """Move an old study aside (fresh), check a stored one, or create the folder; True: new."""
        folder = self.dir
        _check_folder_path(folder)
        _recover_export(folder)
        exists = folder.exists() and any(p.name not in _BEFORE_STUDY_FILE for p in folder.iterdir())
        if not exists or self.fresh:
            # Data and hypermodel first: a data error or a bad option leaves no study folder
            # behind, and --fresh moves nothing aside for a configuration that cannot run.
            self._load_data(stored_split=not exists)
            self.hypermodel()
        if exists and self.fresh:
            self._check_fresh_storage()
            self.moved_aside = _move_aside(folder, "old")
            exists = False
        meta = _read_meta(folder) if exists else None
        if exists and meta is None:
            raise StudyError(
                f"{folder}: the folder exists but holds no segsearch study ({STUDY_FILE} is "
                "missing); run again with --fresh to move it aside, or use --study-dir DIR to put "
                "this study elsewhere"
            )
        if meta is not None:
            self._check_compatible(meta.get("fingerprint", {}), self._config_fingerprint())
        folder.mkdir(parents=True, exist_ok=True)
        self._store_split()
        return meta is None

    def _check_fresh_storage(self) -> None:
        """fresh=True cannot move a study that lives in an external Optuna storage."""
        if not self.config.storage or self.config.search.engine != "optuna":
            return
        from segsearch.engines.storage import connect_error, mask, probe_optuna

        url = self._storage_url()
        state = probe_optuna(url, self.config.study, study_dir=self.dir)
        if state.status == "unreachable":
            raise connect_error(url, RuntimeError(state.detail))
        if state.ok:
            raise StudyError(
                f"--fresh: study {self.config.study!r} lives in the storage {mask(url)}, "
                "which segsearch does not delete from; give the new study another name "
                "(study: in the space file, or --set study=NAME)"
            )

    def _config_fingerprint(self) -> dict[str, Any]:
        config = self.config
        data = config.data.to_dict() if hasattr(config.data, "to_dict") else {}
        if data.get("resize") == "auto":  # what it resolved to: a study made before "auto" matches
            data["resize"] = self._load_data().info.get("resize", "resize")
        fixed = {k: _jsonable(data.get(k)) for k in _DATA_KEYS if k in data}
        if data.get("background", 0) != 0:  # it changes the objective; 0 is how older studies ran
            fixed["background"] = data["background"]
        if data.get("scale", 1.0) != 1.0:  # absent at 1, as in studies made before data.scale
            fixed["scale"] = data["scale"]
        return {
            "architectures": list(config.architectures),
            "data": fixed,
            "engine": config.search.engine,
            "weights": config.train.weights,
        }

    def _check_compatible(self, stored: Mapping[str, Any], current: Mapping[str, Any]) -> None:
        """Raise StudyError listing what differs between the stored study and this configuration."""
        diffs = []
        for key in sorted(set(stored) | set(current)):
            if key not in stored or key not in current:
                continue
            a, b = _jsonable(stored[key]), _jsonable(current[key])
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict):
                for sub in sorted(set(a) | set(b)):
                    if a.get(sub) != b.get(sub):
                        diffs.append(f"{key}.{sub}: stored {_short(a.get(sub))}, now "
                                     f"{_short(b.get(sub))}")
            elif key == "space":
                diffs.append("space: the hyperparameters or their ranges changed ("
                             + _space_diff(a, b) + ")")
            else:
                diffs.append(f"{key}: stored {_short(a)}, now {_short(b)}")
        if diffs:
            raise StudyError(
                f"{self.dir}: this configuration does not match the stored study: "
                + "; ".join(diffs)
                + ". Run again with --fresh to move the old study aside and start a new one, or "
                "use --study-dir DIR (or another study: name) to keep both"
            )

    def _check_or_store(self, engine_fingerprint: Mapping[str, Any], new: bool) -> None:
        """Compare the engine's fingerprint with the stored one, or store both for a new study."""
        fingerprint = {**self._config_fingerprint(), **engine_fingerprint}
        if not new:
            meta = _read_meta(self.dir) or {}
            self._check_compatible(meta.get("fingerprint", {}), fingerprint)
        else:
            meta = {
                "format": _FORMAT,
                "study": self.config.study,
                "engine": self.config.search.engine,
                "storage": _masked(self.config.storage),  # the password stays out of files
                "created": datetime.now().astimezone().isoformat(timespec="seconds"),
                "fingerprint": _jsonable(fingerprint),
            }
            atomic_write_text(self.dir / STUDY_FILE, json.dumps(meta, indent=2) + "\n")
        atomic_write_text(self.dir / CONFIG_FILE,
                          yaml.safe_dump(self.config.to_dict(), sort_keys=False))

    # ------------------------------------------------------------------ data, model, engine
    def _load_data(self, *, stored_split: bool = True) -> Any:
        """The data with the stored split (the split is drawn once and kept in split.json).

        Args:
            stored_split: read the split from the study folder's split.json when it is there
                (False: draw it anew, for a new study or --fresh).
        """
        if self._splits is not None:
            return self._splits
        from segsearch.data import load

        split_path = self.dir / SPLIT_FILE
        use = stored_split and split_path.exists()
        self._splits = load(self.config.data, split=split_path if use else None)
        if stored_split:
            self._store_split()
        return self._splits

    def baseline(self) -> dict[str, Any] | None:
        """The constant predictions' scores on the validation set (``baseline.json``).

        Computed once from the validation masks with the models' own metric code
        (:func:`segsearch.scores.constant_baselines`) and stored in the study folder; read back
        when it matches the objective and the background class. None when the validation part
        holds no masks.
        """
        from segsearch import scores

        stored = scores.read_baseline(self.dir)
        background = getattr(self.config.data, "background", 0)
        if stored is not None and stored.get("objective") == self.objective.name and \
                stored.get("background", 0) == background and "best" in stored:
            return stored
        splits = self._load_data()
        masks = _validation_masks(splits.val)
        if masks is None:
            return None
        num_classes = int(splits.info.get("num_classes") or self.config.data.num_classes or 1)
        baseline = scores.constant_baselines(
            masks, num_classes, background, objective=self.objective.name,
            direction=self.objective.direction,
            class_names=getattr(self.config.data, "class_names", None))
        baseline["validation_images"] = len(getattr(splits.val, "names", ()) or ())
        if self.dir.is_dir():
            scores.write_baseline(self.dir, _jsonable(baseline))
        return baseline

    def _store_split(self) -> None:
        """Write split.json into an existing study folder that has none yet."""
        split_path = self.dir / SPLIT_FILE
        if self._splits is not None and self.dir.is_dir() and not split_path.exists():
            atomic_write_text(split_path, json.dumps(_jsonable(self._splits.split), indent=2) + "\n")

    def hypermodel(self) -> Any:
        """The study's hypermodel (one architecture, or several with "architecture" searched)."""
        if self._hypermodel is not None:
            return self._hypermodel
        from segsearch import hypermodels

        config = self.config
        splits = self._load_data()
        input_shape = (*splits.train.size, splits.train.channels)
        num_classes = int(splits.info.get("num_classes") or config.data.num_classes or 1)
        where = f"{config.source}: space"
        background = getattr(config.data, "background", 0)
        if len(config.architectures) == 1:
            arch = config.architectures[0]
            self._hypermodel = hypermodels.get(
                arch, input_shape, num_classes, weights=config.train.weights,
                space=config.space_for(arch), where=where, jit_compile=self.jit_compile(),
                background=background,
            )
        else:
            self._hypermodel = hypermodels.get_multi(
                list(config.architectures), input_shape, num_classes, weights=config.train.weights,
                spaces={a: config.space_for(a) for a in config.architectures}, where=where,
                jit_compile=self.jit_compile(), background=background,
            )
        return self._hypermodel

    def jit_compile(self) -> bool:
        """XLA for this study: ``train.jit_compile``, where "auto" means on a GPU only.

        XLA compiles each new network once; on a CPU that costs far more than it saves in a
        search of short trials (measured: 50 s against 6 s for the first epoch of a small U-Net).
        """
        value = self.config.train.jit_compile
        if value != "auto":
            return bool(value)
        return _has_gpu()

    def training_context(self, progress: Progress | None = None) -> Any:
        """The :class:`TrainingContext` every trial of this study shares.

        Args:
            progress: where epoch events go.
        """
        from segsearch.data import batches
        from segsearch.engines.trial import TrainingContext

        config, train = self.config, self.config.train
        splits = self._load_data()
        augment = getattr(config.data, "augment", None)
        seed = int(config.search.seed)
        # patch mode: an epoch is a fixed number of random patches; validation scores whole images
        patch = bool(getattr(splits.train, "crop", False))
        steps = train.steps_per_epoch
        val_callback = None
        if patch:
            from segsearch.data.pipeline import default_steps

            steps = steps or default_steps(splits.train, train.batch_size)
            overlap = float(getattr(config.data, "overlap", 0.5))

            def val_callback() -> Any:
                from segsearch.sliding import SlidingValidation, part_images

                return SlidingValidation(*part_images(splits.val), overlap=overlap,
                                         batch_size=train.batch_size)
        epoch_steps = steps or math.ceil(len(splits.train) / train.batch_size)
        return TrainingContext(
            train_data=lambda trial_seed, batch_size=None: batches(
                splits.train, batch_size or train.batch_size, augment=augment, shuffle=True,
                seed=trial_seed,
                repeat=train.steps_per_epoch is not None and not patch,
                steps=steps if patch else None,
                foreground=float(getattr(config.data, "foreground_oversample", 0.33)),
            ),
            val_data=lambda trial_seed, batch_size=None: batches(
                splits.val, batch_size or train.batch_size, shuffle=False),
            val_callback=val_callback,
            study_dir=self.dir,
            objective=self.objective,
            steps_per_epoch=None if patch else train.steps_per_epoch,
            mixed_precision=train.mixed_precision,
            jit_compile=self.jit_compile(),
            verbose=train.verbose,
            seed=seed,
            progress=progress,
            deadline=self.deadline,
            epoch_steps=epoch_steps,
        )

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
            storage=self._storage_url(),
        )
        return engine_cls(session)

    # ------------------------------------------------------------------ final training
    def final_epochs(self, records: list[TrialRecord]) -> int:
        """Epochs of the final training: ``train.final_epochs`` or what is left of the budget.

        Args:
            records: every trial (their epochs are what the search used).
        """
        if self.config.train.final_epochs is not None:
            return int(self.config.train.final_epochs)
        used = sum(int(r.epochs or 0) for r in records)
        return max(0, self.budget_epochs() - used)

    def _trial_as_final(self, best: TrialRecord) -> dict[str, Any]:
        if not best.checkpoint:
            raise StudyError(f"{self.dir}: the best trial ({best.number}) has no checkpoint; run "
                             "the same command again to train it")
        return {"trial": best.number, "epochs": 0, "model": best.checkpoint, "value": best.value,
                "values": dict(best.values), "state": "complete"}

    def _final_summary(self, best: TrialRecord,
                       planned: int | None = None) -> dict[str, Any] | None:
        path = self.dir / FINAL_DIR / FINAL_FILE
        if not path.exists():
            return None
        try:
            final = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if final.get("trial") != best.number or not (self.dir / final.get("model", "")).exists():
            return None
        if planned is not None and final.get("planned_epochs") != planned:
            return None
        return final

    def _final_training(self, best: TrialRecord, records: list[TrialRecord],
                        emit: Progress) -> dict[str, Any]:
        """Train the best configuration further from its checkpoint; return the summary."""
        from segsearch.engines.trial import TrialTask, continuation, run_trial, smoothed_at_end

        planned = self.final_epochs(records)
        done = self._final_summary(best, planned)
        if done is not None and not _final_retry(done):
            return done  # done (or diverged: it would diverge again); a failed one is retried
        base = self._trial_as_final(best)
        if planned <= 0 or self._deadline_passed():
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
                         smoothed_start=smoothed)
        engine = getattr(self, "_engine", None)
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
        atomic_write_text(folder / FINAL_FILE, json.dumps(_jsonable(summary), indent=2) + "\n")
        emit({"event": "final_end", "trial": best.number, "state": outcome.state,
              "reason": outcome.reason, "epochs": outcome.epochs,
              "retry": _final_retry(summary), "model": summary["model"]})
        return summary


def run(config_or_path: Any, *, fresh: bool = False, progress: Progress | bool | None = True,
        quiet: bool = False, **overrides: Any) -> Results:
    """Run (or resume) a study from Python: a Config, a space file path, a shipped name or a dict.

    Shows the progress on stdout as ``segsearch run`` does, unless told otherwise. Start it under
    ``if __name__ == "__main__":`` in a script: the trials train in a worker process that imports
    the script again.

    Args:
        config_or_path: a :class:`segsearch.config.Config`, a path to a space file, a bare shipped
            space name ("unet"), or a mapping of the space file's sections.
        fresh: move an existing study folder aside and start anew.
        progress: True (the default) prints each trial and epoch on stdout; a callable is called
            with each progress event (a dict) instead; None or False shows nothing.
        quiet: show nothing (the same as ``progress=None``).
        **overrides: what ``segsearch.config.load_config`` accepts: sets=["train.epochs=3"],
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
    from segsearch.engines.worker import leave_spawn_bootstrap

    leave_spawn_bootstrap()  # before anything is read or written (see Study.run)
    import_tensorflow_quietly()  # before the space's check builds a model
    from segsearch.config import Config, load_config

    if isinstance(config_or_path, Config):
        config = config_or_path.with_overrides(**overrides) if overrides else config_or_path
    else:
        config = load_config(config_or_path, **overrides)
    show: Progress | None
    if quiet or progress is None or progress is False:
        show = None
    elif progress is True:
        from segsearch.console import TextProgress

        show = TextProgress(config.search.objectives[0])
    elif callable(progress):
        show = progress
    else:
        from segsearch.errors import ConfigError

        raise ConfigError(f"progress: expected True, False, None or a function of one event, got "
                          f"{progress!r}")
    return Study(config, fresh=fresh).run(progress=show)


# ---------------------------------------------------------------------------------- helpers
def _final_failed(final: Mapping[str, Any]) -> bool:
    """Whether a final training's summary (final.json) records a failure."""
    return final.get("final_state", "complete") not in ("complete", "pruned")


def _final_retry(final: Mapping[str, Any]) -> bool:
    """Whether the next run trains a failed final training again (not when it diverged)."""
    return _final_failed(final) and not final.get("diverged", False)
def _validation_masks(val: Any) -> Any:
    """The validation masks (class ids), one at a time, or None when the part has none."""
    if hasattr(val, "item"):
        count = len(val.names) if getattr(val, "crop", False) else len(val)  # patch: whole images
        return (val.item(i)[1] for i in range(count))
    y = getattr(val, "y", None)
    return None if y is None else (y[i] for i in range(len(y)))


def _final_best(history: list[dict[str, float]], objective: Objective) -> float | None:
    """The best moving average of the objective among the final training's own epochs."""
    best = None
    for row in history:
        value = row.get(f"{objective.name}_ema")
        if value is not None and objective.better(value, best):
            best = value
    return best


def _has_gpu() -> bool:
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if keras.backend.backend() == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if keras.backend.backend() == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


@contextlib.contextmanager
def _exclusive(path: Path) -> Any:
    """Hold an exclusive lock on ``path`` (fcntl.flock; released when the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_meta(folder: Path) -> dict[str, Any] | None:
    path = folder / STUDY_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StudyError(f"{path}: unreadable ({e}); run again with --fresh to move the study "
                         "aside") from None


def _check_folder_path(folder: Path) -> None:
    """A study folder path that is a dangling symbolic link or a link loop: a clear StudyError."""
    if not folder.is_symlink() or folder.exists():
        return
    try:
        folder.resolve(strict=True)
    except RuntimeError:  # pathlib's "Symlink loop" before Python 3.13
        problem = "is a symbolic link that points (through others) back to itself"
    except OSError as e:
        problem = ("is a symbolic link that points (through others) back to itself"
                   if e.errno == errno.ELOOP else
                   f"is a symbolic link to {os.readlink(folder)}, which does not exist")
    else:  # pragma: no cover - exists() said otherwise
        return
    raise StudyError(f"{folder}: {problem}; fix or remove the link, or give another --study-dir")


def _move_aside(path: Path, tag: str) -> Path:
    """Rename ``path`` to ``<name>.<tag>-<timestamp>`` (``-2``, ``-3``... if taken); the new path."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.{tag}-{stamp}")
    n = 2
    while target.exists():
        target = path.with_name(f"{path.name}.{tag}-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    return target


def _remove_unstarted(folder: Path) -> None:
    """Remove a study folder this run made when it stopped before the study was stored."""
    if not folder.is_dir() or (folder / STUDY_FILE).exists():
        return
    leftovers = [p.name for p in folder.iterdir()]
    if all(name in _BEFORE_STUDY_FILE or name.startswith(".") for name in leftovers):
        shutil.rmtree(folder, ignore_errors=True)


def _recover_export(folder: Path) -> None:
    """Finish or roll back an export that was interrupted (see segsearch.export.recover)."""
    if folder.is_dir():
        from segsearch.export import recover

        recover(folder)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _masked(url: str | None) -> str | None:
    from segsearch.engines.storage import mask

    return mask(url)


def _count(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _space_diff(stored: Any, current: Any) -> str:
    """Names of hyperparameters added, removed or changed between two space signatures."""
    def by_name(items: Any) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for item in items or []:
            out.setdefault(str(item.get("name")), []).append(item)
        return out

    a, b = by_name(stored), by_name(current)
    parts = []
    added = sorted(set(b) - set(a))
    removed = sorted(set(a) - set(b))
    changed = sorted(n for n in set(a) & set(b) if a[n] != b[n])
    if changed:
        parts.append("changed: " + ", ".join(changed))
    if added:
        parts.append("added: " + ", ".join(added))
    if removed:
        parts.append("removed: " + ", ".join(removed))
    return "; ".join(parts) or "conditions changed"

