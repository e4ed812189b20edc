"""The study folder: its files, the checks before a run may use it, its locks and its recovery.

:class:`StudyFolder` owns ``studies/<name>/``::

    studies/<name>/
        study.json          what the stored study fixes (architectures, data, engine, space,
                            objective)
        config.yaml         the resolved configuration of the latest run
        split.json          the data split, reused on every resume (segsearch.workshop)
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

A configuration the stored study cannot absorb (other architectures, data, image size, classes,
engine, hyperparameter distributions, objective) is refused with a :class:`StudyError` naming
``--fresh`` and ``--study-dir``; ``fresh=True`` moves the old folder aside to
``<name>.old-<timestamp>`` (nothing is deleted). A storage (``study.db``, a ``--storage``
database, ``keras_tuner/``) that is missing, empty, unreadable or behind ``trials/`` is never
started over: it is refused (:class:`StudyError`), and ``rebuild_storage=True`` sets it aside
(``.broken-<timestamp>``) for the engine to rebuild from the trial folders
(:mod:`segsearch.engines.storage`). An export cut off midway is finished or rolled back when the
folder is opened (:func:`segsearch.export.recover`).

This module imports no engine class and no TensorFlow: ``segsearch status`` reads a study through
it (:meth:`StudyFolder.read_records`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from segsearch.console import plural
from segsearch.errors import StudyError, similar_path
from segsearch.jsonable import jsonable
from segsearch.records import TrialRecord, atomic_write_text, read_trial_records
from segsearch.workshop import SPLIT_FILE

__all__ = ["StudyFolder", "STUDY_FILE", "CONFIG_FILE", "SPLIT_FILE", "FINAL_DIR", "FINAL_FILE",
           "read_meta", "move_aside", "exclusive"]

STUDY_FILE = "study.json"
CONFIG_FILE = "config.yaml"
FINAL_DIR = "final"
FINAL_FILE = "final.json"
_FORMAT = 1
#: files a run writes before study.json: a folder holding only these is still a new study.
_BEFORE_STUDY_FILE = (SPLIT_FILE,)
#: DataConfig fields that define the data a study was searched on (augment and cache may change).
_DATA_KEYS = ("source", "image_size", "num_classes", "channels", "val_fraction", "val_source",
              "seed", "mask_suffix", "mask_kind", "colors", "ignore_value", "resize", "images_dir",
              "masks_dir", "sample_count", "pair", "values", "mat_key")


class StudyFolder:
    """One study's folder, as a run, ``status`` and ``export`` use it.

    Args:
        config: the :class:`segsearch.spacefile.Config` (``config.study_dir`` is the folder).
        fresh: move an existing study folder aside (to ``<name>.old-<timestamp>``) and start anew.
        rebuild_storage: set a storage that lost its records aside, for the engine to rebuild
            from the trial folders.
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

    @staticmethod
    def stored_config(study_dir: str | os.PathLike[str]) -> Any:
        """The Config a study folder holds (``config.yaml``, with the storage of ``study.json``).

        Args:
            study_dir: the folder holding ``config.yaml`` and ``study.json``.

        Raises:
            StudyError: the folder is not a segsearch study.
        """
        from segsearch.spacefile import load_config

        folder = Path(study_dir)
        recover_export(folder)
        meta = read_meta(folder)
        config_path = folder / CONFIG_FILE
        if meta is None or not config_path.is_file():
            hint = "" if folder.exists() else similar_path(folder)
            raise StudyError(
                f"{folder}: not a segsearch study folder (no {STUDY_FILE} / {CONFIG_FILE}){hint}; "
                "give the folder `segsearch run` made, e.g. studies/<name>"
            )
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        return load_config(raw, study_dir=folder, storage=meta.get("storage"), check_space=False)

    def read_records(self) -> list[TrialRecord]:
        """Every trial of the stored study, by number (reads the storage; trains nothing).

        The storage is opened read-only: nothing is created, migrated or written.

        Raises:
            StudyError: the storage is missing, empty or unreadable while the trial folders hold
                records (rebuild it with ``--rebuild-storage``), or it cannot be reached.
        """
        from segsearch.engines import read_records

        meta = read_meta(self.dir) or {}
        engine = meta.get("engine", self.config.search.engine)
        state = self.storage_state(engine)
        problem = self._storage_problem(state, read_trial_records(self.dir),
                                        f"segsearch run SPACE --study-dir {self.dir} "
                                        "--rebuild-storage (SPACE: the study's space file, or "
                                        f"{self.dir / CONFIG_FILE})")
        if problem:
            raise StudyError(problem)
        return read_records(engine, self.config, self.dir, storage_url=self.storage_url(),
                            state=state)

    def storage_url(self) -> str:
        """The Optuna storage URL to connect with (the password from the environment, see
        :func:`segsearch.engines.storage.resolve`)."""
        from segsearch.engines.storage import resolve, study_url

        storage = self.config.storage
        return study_url(self.dir, resolve(str(storage)) if storage else None)

    # ------------------------------------------------------------------ storage
    def use_stored_storage(self) -> None:
        """Resuming without --storage: the storage URL study.json holds (its password masked)."""
        stored = (read_meta(self.dir) or {}).get("storage")
        if stored and not self.config.storage and self.config.search.engine == "optuna":
            import dataclasses

            self.config = dataclasses.replace(self.config, storage=str(stored))

    def check_reachable(self) -> None:
        """Raise the one-line StudyError (password masked) when the --storage database cannot be
        reached or its driver is missing."""
        from segsearch.engines.storage import connect_error, probe_optuna

        url = self.storage_url()
        state = probe_optuna(url, self.config.study, study_dir=self.dir)
        if state.status == "unreachable":
            raise connect_error(url, RuntimeError(state.detail))

    def storage_state(self, engine: str | None = None) -> Any:
        """What the study's storage holds (:class:`segsearch.engines.storage.StorageState`)."""
        from segsearch.engines import storage

        if (engine or self.config.search.engine) == "optuna":
            return storage.probe_optuna(self.storage_url(), self.config.study,
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
        held = f"{self.dir / 'trials'} holds the records of {plural(len(records), 'trial')}"
        if not state.ok or state.trials == 0:
            detail = state.detail or f"it holds study {self.config.study!r} without its trials"
            return (f"{state.where}: {detail}, but {held}; segsearch does not start the study "
                    f"over. Rebuild its records from the trial folders: {fix}")
        if state.trials <= top:
            detail = (f"{state.where}: it holds {plural(state.trials, 'trial')} of study "
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

    def check_storage(self) -> Any:
        """Refuse to resume a study whose storage lost its records (or rebuild, when asked).

        Returns:
            The storage's StorageState.

        Raises:
            StudyError: the storage is missing, empty, unreadable, unreachable or behind the
                trial folders (without --rebuild-storage), or --rebuild-storage has nothing to do.
        """
        state = self.storage_state()
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
            held = (f"holds the study's {plural(state.trials, 'trial')}" if state.ok else
                    f"and {self.dir / 'trials'} hold no trial records")
            raise StudyError(f"--rebuild-storage: {state.where} {held}; nothing to rebuild: run "
                             "the same command without --rebuild-storage")
        return state

    def set_storage_aside(self, state: Any) -> None:
        """Before a rebuild: rename a storage in the study folder that holds other records
        (unreadable, or an older copy) to ``<name>.broken-<timestamp>``; nothing is deleted."""
        if not state.local or state.status in ("missing",) or (
                state.status in ("empty", "no_study") and self.config.search.engine == "optuna"):
            return  # nothing there, or Optuna adds the study to the file as it is
        move_aside(Path(state.where), "broken")

    def prepare(self, workshop: Any) -> bool:
        """Move an old study aside (fresh), check a stored one, or create the folder; True: new."""
        folder = self.dir
        check_folder_path(folder)
        recover_export(folder)
        exists = folder.exists() and any(p.name not in _BEFORE_STUDY_FILE for p in folder.iterdir())
        if not exists or self.fresh:
            # Data and hypermodel first: a data error or a bad option leaves no study folder
            # behind, and --fresh moves nothing aside for a configuration that cannot run.
            workshop.load_data(stored_split=not exists)
            workshop.hypermodel()
        if exists and self.fresh:
            self._check_fresh_storage()
            self.moved_aside = move_aside(folder, "old")
            exists = False
        meta = read_meta(folder) if exists else None
        if exists and meta is None:
            raise StudyError(
                f"{folder}: the folder exists but holds no segsearch study ({STUDY_FILE} is "
                "missing); run again with --fresh to move it aside, or use --study-dir DIR to put "
                "this study elsewhere"
            )
        if meta is not None:
            self._check_compatible(meta.get("fingerprint", {}), self._config_fingerprint(workshop))
        folder.mkdir(parents=True, exist_ok=True)
        workshop.store_split()
        return meta is None

    def _check_fresh_storage(self) -> None:
        """fresh=True cannot move a study that lives in an external Optuna storage."""
        if not self.config.storage or self.config.search.engine != "optuna":
            return
        from segsearch.engines.storage import connect_error, mask, probe_optuna

        url = self.storage_url()
        state = probe_optuna(url, self.config.study, study_dir=self.dir)
        if state.status == "unreachable":
            raise connect_error(url, RuntimeError(state.detail))
        if state.ok:
            raise StudyError(
                f"--fresh: study {self.config.study!r} lives in the storage {mask(url)}, "
                "which segsearch does not delete from; give the new study another name "
                "(study: in the space file, or --set study=NAME)"
            )

    def _config_fingerprint(self, workshop: Any) -> dict[str, Any]:
        config = self.config
        data = config.data.to_dict() if hasattr(config.data, "to_dict") else {}
        if data.get("resize") == "auto":  # what it resolved to: a study made before "auto" matches
            data["resize"] = workshop.load_data().info.get("resize", "resize")
        fixed = {k: jsonable(data.get(k)) for k in _DATA_KEYS if k in data}
        if data.get("background", 0) != 0:  # it changes the objective; 0 is how older studies ran
            fixed["background"] = data["background"]
        if data.get("scale", 1.0) != 1.0:  # absent at 1, as in studies made before data.scale
            fixed["scale"] = data["scale"]
        if data.get("folds"):  # k-fold studies only: absent, as in studies made before data.folds
            fixed["folds"] = data["folds"]
            fixed["fold_seed"] = data.get("fold_seed")
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
            a, b = jsonable(stored[key]), jsonable(current[key])
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

    def check_or_store(self, engine_fingerprint: Mapping[str, Any], new: bool,
                       workshop: Any) -> None:
        """Compare the engine's fingerprint with the stored one, or store both for a new study."""
        fingerprint = {**self._config_fingerprint(workshop), **engine_fingerprint}
        if not new:
            meta = read_meta(self.dir) or {}
            self._check_compatible(meta.get("fingerprint", {}), fingerprint)
        else:
            meta = {
                "format": _FORMAT,
                "study": self.config.study,
                "engine": self.config.search.engine,
                "storage": _masked(self.config.storage),  # the password stays out of files
                "created": datetime.now().astimezone().isoformat(timespec="seconds"),
                "fingerprint": jsonable(fingerprint),
            }
            if self.config.auto:  # what `auto` resolved to when the study was made, and why
                meta["auto"] = [c.to_dict() for c in self.config.auto]
            atomic_write_text(self.dir / STUDY_FILE, json.dumps(meta, indent=2) + "\n")
        path = self.dir / CONFIG_FILE
        self.previous_config = path.read_text(encoding="utf-8") if path.is_file() else None
        atomic_write_text(path, yaml.safe_dump(self.config.to_dict(), sort_keys=False))

    def restore_config(self) -> None:
        """Put back the ``config.yaml`` this run replaced (a run that failed at its end, e.g. an
        ``export.pick`` no trial meets, leaves the study as ``status`` and ``export`` knew it)."""
        previous = getattr(self, "previous_config", None)
        if previous is not None:
            atomic_write_text(self.dir / CONFIG_FILE, previous)

    def current_export(self, final: Mapping[str, Any], best: TrialRecord,
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

    def trial_as_final(self, best: TrialRecord) -> dict[str, Any]:
        if not best.checkpoint:
            raise StudyError(f"{self.dir}: the best trial ({best.number}) has no checkpoint; run "
                             "the same command again to train it")
        return {"trial": best.number, "epochs": 0, "model": best.checkpoint, "value": best.value,
                "values": dict(best.values), "state": "complete"}

    def final_summary(self, best: TrialRecord,
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


@contextlib.contextmanager
def exclusive(path: Path) -> Any:
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


def read_meta(folder: Path) -> dict[str, Any] | None:
    path = folder / STUDY_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StudyError(f"{path}: unreadable ({e}); run again with --fresh to move the study "
                         "aside") from None


def check_folder_path(folder: Path) -> None:
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


def move_aside(path: Path, tag: str) -> Path:
    """Rename ``path`` to ``<name>.<tag>-<timestamp>`` (``-2``, ``-3``... if taken).

    Returns the new path.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.{tag}-{stamp}")
    n = 2
    while target.exists():
        target = path.with_name(f"{path.name}.{tag}-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    return target


def remove_unstarted(folder: Path) -> None:
    """Remove a study folder this run made when it stopped before the study was stored."""
    if not folder.is_dir() or (folder / STUDY_FILE).exists():
        return
    leftovers = [p.name for p in folder.iterdir()]
    if all(name in _BEFORE_STUDY_FILE or name.startswith(".") for name in leftovers):
        shutil.rmtree(folder, ignore_errors=True)


def recover_export(folder: Path) -> None:
    """Finish or roll back an export that was interrupted (see segsearch.export.recover)."""
    if folder.is_dir():
        from segsearch.export import recover

        recover(folder)


def _masked(url: str | None) -> str | None:
    from segsearch.engines.storage import mask

    return mask(url)


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


