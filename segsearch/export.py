"""Export the best model of a study to ``<study>/best/``, atomically.

``best/`` holds:

- ``model.keras``: an inference copy of the best model (same layers and weights, not compiled), so
  ``keras.saving.load_model("best/model.keras")`` reloads it in safe mode with no custom objects and
  without segsearch installed;
- ``saved_model/``: a TensorFlow SavedModel for serving (``model.export``; TensorFlow backend, when
  ``export.saved_model`` is on);
- ``hyperparameters.yaml``: architecture, trial, hyperparameter values, epochs trained;
- ``metrics.yaml``: the exported model's metrics on the validation images;
- ``trials.csv``: every trial of the study;
- ``config.yaml``: the study's resolved configuration (``segsearch predict`` prepares images with
  it);
- ``overlays/*.png``: image | truth | prediction, side by side, for a few validation images;
- ``export.json``: what was exported, when, from which trial.

Everything is written into a hidden sibling folder (``.best.tmp-<id>``) first and then renamed into
place; the previous export is renamed aside (``.best.old-<id>``) just before and deleted just after.
:func:`recover` (run whenever a study is opened or exported) finishes or rolls back a swap that was
interrupted, so ``best/`` is always the old export or the new one, never half of one. A ``best/``
folder that segsearch did not write (no ``export.json``) is never deleted: it is renamed to
``best.user-<timestamp>``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from segsearch.engines.results import TrialRecord, write_trials_csv

__all__ = ["export_study", "export_model", "recover", "write_overlays", "manifest_key", "BEST_DIR",
           "MANIFEST"]

BEST_DIR = "best"
MANIFEST = "export.json"
_TMP = ".best.tmp-"
_OLD = ".best.old-"


def recover(study_dir: str | os.PathLike[str]) -> None:
    """Finish or roll back an interrupted export swap, and remove leftovers of an earlier export.

    With ``best/`` in place, leftover temporary and superseded folders are removed. Without it, the
    newest complete new export (one whose ``export.json`` was written) is moved into place, else
    the previous export is moved back.

    Args:
        study_dir: the study folder.
    """
    folder = Path(study_dir)
    if not folder.is_dir():
        return
    best = folder / BEST_DIR
    temps = sorted(folder.glob(_TMP + "*"), key=lambda p: p.stat().st_mtime)
    olds = sorted(folder.glob(_OLD + "*"), key=lambda p: p.stat().st_mtime)
    if not best.exists():
        complete = [t for t in temps if (t / MANIFEST).is_file()]
        if complete:
            os.replace(complete[-1], best)
            temps.remove(complete[-1])
        elif olds:
            os.replace(olds[-1], best)
            olds.remove(olds[-1])
    for leftover in temps + olds:
        shutil.rmtree(leftover, ignore_errors=True)


def _is_export(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def _swap_into_place(study_dir: Path, new: Path, token: str) -> Path:
    """Rename ``new`` to ``best/``; the previous export goes aside first and is deleted after."""
    best = study_dir / BEST_DIR
    old = study_dir / f"{_OLD}{token}"
    if best.exists():
        if _is_export(best):
            os.replace(best, old)
        else:  # not ours: keep the user's files
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            os.replace(best, study_dir / f"{BEST_DIR}.user-{stamp}")
    os.replace(new, best)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return best


def export_model(model: Any, folder: str | os.PathLike[str], *,
                 saved_model: bool = True) -> dict[str, str]:
    """Write the inference copy (``model.keras``) and, under TensorFlow, a SavedModel.

    The copy is rebuilt from the model's config with the trained weights and is not compiled, so it
    needs no custom loss or metric to reload.

    Args:
        model: the trained Keras model.
        folder: where to write.
        saved_model: also write ``saved_model/`` (TensorFlow backend only).

    Returns:
        The files written, by kind ("model", "saved_model").
    """
    import keras

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # from the architecture's config alone: clone_model would carry the compile configuration
    # (segsearch's losses and metrics) over, and reloading would then need segsearch
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    clone.save(folder / "model.keras")
    files = {"model": "model.keras"}
    if saved_model and keras.backend.backend() == "tensorflow":
        clone.export(str(folder / "saved_model"), format="tf_saved_model", verbose=False)
        files["saved_model"] = "saved_model"
    return files


def _palette(num_classes: int) -> np.ndarray:
    """RGB colours per class id; class 0 (background) gets none (drawn as the image)."""
    base = np.array([
        [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    ], dtype=np.float32)
    if num_classes + 1 > len(base):
        rng = np.random.default_rng(0)
        base = np.concatenate([base, rng.uniform(40, 255, (num_classes + 1 - len(base), 3))])
    return base


def _overlay(image: np.ndarray, ids: np.ndarray, palette: np.ndarray,
             alpha: float = 0.5) -> np.ndarray:
    """The image (RGB uint8) with class ids > 0 tinted by the palette and ignored pixels greyed."""
    out = image.astype(np.float32).copy()
    for cls in np.unique(ids):
        cls = int(cls)
        if cls == 0:
            continue
        where = ids == cls
        colour = np.array([90, 90, 90], np.float32) if cls < 0 else palette[cls]
        out[where] = (1 - alpha) * out[where] + alpha * colour
    return np.clip(out, 0, 255).astype(np.uint8)


def write_overlays(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    folder: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    num_classes: int = 1,
) -> list[Path]:
    """Write one PNG per image: image | truth | prediction side by side (pillow).

    Args:
        model: the model (sigmoid or softmax output).
        x: images, (N, H, W, C) in [0, 1].
        y: class ids, (N, H, W, 1), -1 for ignored pixels.
        folder: where the PNGs go.
        names: a name per image (file names get it, sanitised).
        num_classes: 1 for binary, else the number of classes.
    """
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if len(x) == 0:
        return []
    prob = np.asarray(model.predict(x, verbose=0, batch_size=min(8, len(x))), dtype=np.float32)
    pred = (prob[..., 0] > 0.5).astype(np.int64) if prob.shape[-1] == 1 else prob.argmax(-1)
    palette = _palette(max(num_classes, 2))
    paths = []
    for i in range(len(x)):
        image = np.clip(x[i] * 255.0, 0, 255).astype(np.uint8)
        image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
        truth = np.rint(y[i][..., 0]).astype(np.int64)
        gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
        panel = np.concatenate([image, gap, _overlay(image, truth, palette), gap,
                                _overlay(image, pred[i], palette)], axis=1)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in
                       (Path(str(names[i])).stem if names is not None and i < len(names) else ""))
        path = folder / (f"{i:02d}_{stem}.png" if stem else f"{i:02d}.png")
        Image.fromarray(panel).save(path)
        paths.append(path)
    return paths


def export_study(
    study_dir: str | os.PathLike[str],
    *,
    config: Any,
    model_path: str | os.PathLike[str],
    best: TrialRecord,
    final: Mapping[str, Any],
    records: Sequence[TrialRecord],
    val: Any,
) -> Path:
    """Write ``<study>/best/`` from the best model's checkpoint (see the module docstring).

    Args:
        study_dir: the study folder.
        config: the study's Config.
        model_path: the checkpoint to export (``final/model.keras`` or the best trial's).
        best: the best trial's record.
        final: the final training's summary (trial, epochs, value, values).
        records: every trial.
        val: the validation part (``segsearch.data`` Part with x, y, names).

    Returns:
        The ``best/`` folder.
    """
    import keras

    import segsearch.losses  # noqa: F401 - registers the custom objects the checkpoint names
    import segsearch.metrics  # noqa: F401
    from segsearch.data import batches

    study_dir = Path(study_dir)
    recover(study_dir)
    token = f"{os.getpid()}-{time.time_ns()}"
    tmp = study_dir / f"{_TMP}{token}"
    tmp.mkdir(parents=True)
    try:
        model = keras.saving.load_model(model_path)
        files = export_model(model, tmp, saved_model=bool(config.export.saved_model))

        if getattr(val, "crop", False):  # patch mode: whole images, overlapping windows
            from segsearch.sliding import score_images

            measured = score_images(model, val, overlap=float(getattr(config.data, "overlap", 0.5)),
                                    batch_size=int(config.train.batch_size))
        else:
            measured = model.evaluate(batches(val, int(config.train.batch_size), shuffle=False),
                                      return_dict=True, verbose=0)
        validation = {f"val_{k}": float(v) for k, v in measured.items()}
        objective = config.search.objectives[0]
        metrics = {
            "objective": {"name": objective, "direction": config.search.directions[0],
                          "value": validation.get(objective)},
            "validation": validation,
            "validation_images": int(len(val.names)),
            "trial_validation": {k: v for k, v in best.values.items()},
        }
        _write_yaml(tmp / "metrics.yaml", metrics)
        files["metrics"] = "metrics.yaml"

        trained = int(best.initial_epoch or 0) + int(best.epochs or 0)
        hyper = {
            "study": config.study,
            "architecture": best.architecture,
            "trial": best.number,
            "params": dict(best.params),
            "epochs": {
                "trial": trained,
                "final": int(final.get("epochs", 0) or 0),
                "best_epoch": final.get("best_epoch", best.best_epoch),
            },
            "input_shape": [int(s) for s in model.input_shape[1:]],
            "num_classes": int(model.output_shape[-1]),
        }
        _write_yaml(tmp / "hyperparameters.yaml", hyper)
        files["hyperparameters"] = "hyperparameters.yaml"

        write_trials_csv(list(records), tmp / "trials.csv")
        files["trials"] = "trials.csv"
        stored = config.to_dict()
        if stored.get("data", {}).get("resize") == "auto":  # what predict must do: as trained
            stored["data"]["resize"] = "patch" if getattr(val, "crop", False) else "resize"
        _write_yaml(tmp / "config.yaml", stored)
        files["config"] = "config.yaml"

        count = min(int(config.export.overlays), len(val))
        if count > 0:
            x, y = val.x[:count], val.y[:count]
            owner = getattr(val, "owner", None)
            names = [val.names[int(i)] for i in owner[:count]] if owner is not None else None
            classes = int(model.output_shape[-1])
            write_overlays(model, x, y, tmp / "overlays", names=names,
                           num_classes=1 if classes == 1 else classes)
            files["overlays"] = "overlays"

        manifest = {
            "study": config.study,
            "trial": best.number,
            "architecture": best.architecture,
            "objective": objective,
            "value": validation.get(objective),
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "source_checkpoint": str(Path(model_path).resolve().relative_to(study_dir.resolve()))
            if Path(model_path).resolve().is_relative_to(study_dir.resolve()) else str(model_path),
            "files": files,
            "keras": keras.__version__,
            "key": manifest_key(config, best, final, records),
        }
        del model
        _fsync_tree(tmp)
        # export.json last: its presence marks the folder complete (see recover)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _swap_into_place(study_dir, tmp, token)


def manifest_key(config: Any, best: TrialRecord, final: Mapping[str, Any],
                 records: Sequence[TrialRecord]) -> dict[str, Any]:
    """What an export is made from; an export whose manifest holds the same key is up to date.

    Args:
        config: the study's Config.
        best: the best trial.
        final: the final training's summary.
        records: every trial.
    """
    import dataclasses

    return _plain({
        "trial": best.number,
        "model": str(final.get("model")),
        "final_epochs": final.get("epochs", 0),
        "trials": [[r.number, r.state] for r in records],
        "export": dataclasses.asdict(config.export),
    })


def _write_yaml(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(_plain(data), sort_keys=False), encoding="utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fsync_tree(folder: Path) -> None:
    """Flush the files of a folder to disk before it is renamed into place."""
    for path in folder.rglob("*"):
        if path.is_file():
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
