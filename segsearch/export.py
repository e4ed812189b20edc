"""Export the best model of a study to ``<study>/best/``, atomically.

``best/`` holds:

- ``model.keras``: an inference copy of the best model (same layers and weights, not compiled), so
  ``keras.saving.load_model("best/model.keras")`` reloads it in safe mode with no custom objects and
  without segsearch installed;
- ``saved_model/``, ``model.onnx``, ``model.tflite``: the other formats ``export.formats`` lists
  (a TensorFlow SavedModel for serving by default), each checked against the Keras model on a few
  validation images (:mod:`segsearch.formats`);
- ``hyperparameters.yaml``: architecture, trial, hyperparameter values, epochs trained, and what
  ``segsearch predict`` applies: ``tta``, ``threshold`` and ``postprocess`` (chosen on the
  validation images);
- ``metrics.yaml``: the exported model's metrics on the validation images: the objective, every
  metric, per-class dice/IoU (by class name), the best constant prediction's scores (``baseline``)
  and whether the model beats it by a clear margin (``verdict``, see :mod:`segsearch.scores`);
  the validation score with and without test-time augmentation and post-processing, and what was
  chosen (:mod:`segsearch.refine`); ``formats``: each file's largest probability difference to
  the Keras model;
- ``trials.csv``: every trial of the study;
- ``config.yaml``: the study's resolved configuration (``segsearch predict`` prepares images with
  it);
- ``overlays/*.png``: image | truth | prediction | errors for a few validation images, at the
  image's own size (up to 1024 px a side), every class in its colour, false positives and false
  negatives marked, a legend with the class names and the image's score in the title;
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

from segsearch import scores
from segsearch.console import listed, plural
from segsearch.errors import StudyError, os_error_message
from segsearch.jsonable import jsonable
from segsearch.records import TrialRecord, write_trials_csv

__all__ = ["export_study", "export_model", "recover", "write_overlays", "overlay_panel",
           "overlay_figure", "image_score", "validation_report", "manifest_key", "BEST_DIR",
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


def export_model(model: Any, folder: str | os.PathLike[str], *, saved_model: bool = True,
                 formats: Sequence[str] | None = None) -> dict[str, str]:
    """Write the inference copy (``model.keras``) and the other formats (by default, under
    TensorFlow, a SavedModel).

    The copy is rebuilt from the model's config with the trained weights and is not compiled, so it
    needs no custom loss or metric to reload.

    Args:
        model: the trained Keras model.
        folder: where to write.
        saved_model: also write ``saved_model/`` (TensorFlow backend only); without ``formats``.
        formats: the formats to write (``segsearch.formats.require``'s result); None: keras, plus
            saved_model as ``saved_model`` says.

    Returns:
        The files written, by kind ("model", "saved_model", "onnx", "litert").
    """
    from segsearch import formats as formats_mod

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # from the architecture's config alone: clone_model would carry the compile configuration
    # (segsearch's losses and metrics) over, and reloading would then need segsearch
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    clone.save(folder / "model.keras")
    files = {"model": "model.keras"}
    if formats is None:
        formats = formats_mod.resolve(None) if saved_model else ("keras",)
    files.update(formats_mod.write(clone, folder, formats))
    return files


#: error colours of the overlays' errors panel (distinct from each other and from grey).
FALSE_POSITIVE = (255, 0, 255)   # predicted a foreground class where the truth is background
FALSE_NEGATIVE = (0, 255, 255)   # predicted background where the truth is a foreground class
WRONG_CLASS = (255, 160, 0)      # another foreground class (without a background: any mismatch)
IGNORED = (90, 90, 90)


def _palette(num_classes: int) -> np.ndarray:
    """RGB colours per class id (row k = class k; row 0 is used when class 0 is not background)."""
    base = np.array([
        [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    ], dtype=np.float32)
    base[0] = [128, 128, 255]  # class 0 as a real class (data.background null or not 0)
    if num_classes + 1 > len(base):
        rng = np.random.default_rng(0)
        base = np.concatenate([base, rng.uniform(40, 255, (num_classes + 1 - len(base), 3))])
    return base


def _overlay(image: np.ndarray, ids: np.ndarray, palette: np.ndarray,
             alpha: float = 0.5, background: int | None = 0) -> np.ndarray:
    """The image (RGB uint8) with every class but ``background`` tinted and ignored pixels greyed.

    Args:
        image: (H, W, 3) uint8.
        ids: (H, W) class ids, -1 = ignored.
        palette: colours by class id.
        alpha: the tint's weight.
        background: the class drawn as the bare image (None: every class is tinted).
    """
    out = image.astype(np.float32).copy()
    for cls in np.unique(ids):
        cls = int(cls)
        if cls == background:
            continue
        where = ids == cls
        colour = np.array(IGNORED, np.float32) if cls < 0 else palette[cls]
        out[where] = (1 - alpha) * out[where] + alpha * colour
    return np.clip(out, 0, 255).astype(np.uint8)


def _errors(image: np.ndarray, truth: np.ndarray, pred: np.ndarray,
            background: int | None) -> np.ndarray:
    """The image dimmed to grey with the wrong pixels coloured: false positives, false negatives,
    wrong class (see the module's colours); ignored pixels grey."""
    grey = image.astype(np.float32).mean(-1, keepdims=True) * 0.6
    out = np.repeat(grey, 3, axis=-1)
    valid = truth >= 0
    wrong = valid & (truth != pred)
    if background is None:
        out[wrong] = WRONG_CLASS
    else:
        out[wrong & (truth == background)] = FALSE_POSITIVE
        out[wrong & (pred == background)] = FALSE_NEGATIVE
        out[wrong & (truth != background) & (pred != background)] = WRONG_CLASS
    out[~valid] = IGNORED
    return np.clip(out, 0, 255).astype(np.uint8)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _display_scale(height: int, width: int, max_side: int, min_side: int) -> float:
    """The factor that brings the long side to at most ``max_side`` (integer up to ``min_side``)."""
    long = max(height, width)
    if long > max_side:
        return max_side / long
    if long < min_side:
        return float(max(1, min_side // long))
    return 1.0


def overlay_panel(
    image: np.ndarray,
    truth: np.ndarray | None,
    pred: np.ndarray,
    *,
    num_classes: int = 1,
    background: int | None = 0,
    class_names: Sequence[str] | None = None,
    title: str = "",
    max_side: int = 1024,
    min_side: int = 256,
) -> Any:
    """One overlay figure: image | truth | prediction | errors, a title and a legend (a PIL image).

    Each panel is the image at its own size, brought to at most ``max_side`` pixels on the long
    side (small images are enlarged by a whole factor up to ``min_side``, so they stay crisp).
    Without a truth (``segsearch predict`` on new images) it is image | prediction.

    Args:
        image: (H, W, 3) uint8.
        truth: (H, W) class ids, -1 = ignored; None when there is no mask.
        pred: (H, W) predicted class ids.
        num_classes: 1 for binary, else the number of classes.
        background: the background class (drawn untinted), None: every class is tinted.
        class_names: names by class id, for the legend.
        title: the line above the panels (the image's name and score).
        max_side: the largest panel side.
        min_side: small images are enlarged up to this.
    """
    from PIL import Image, ImageDraw

    k = 2 if num_classes == 1 else num_classes
    palette = _palette(k)
    if truth is None:
        panels = [image, _overlay(image, pred, palette, background=background)]
        captions: tuple[str, ...] = ("image", "prediction")
    else:
        panels = [image, _overlay(image, truth, palette, background=background),
                  _overlay(image, pred, palette, background=background),
                  _errors(image, truth, pred, background)]
        captions = ("image", "truth", "prediction", "errors")
    h, w = image.shape[:2]
    scale = _display_scale(h, w, max_side, min_side)
    ph, pw = max(1, round(h * scale)), max(1, round(w * scale))
    resample = Image.NEAREST if scale >= 1 else Image.BOX
    tiles = [Image.fromarray(p).resize((pw, ph), resample) for p in panels]

    text = max(12, min(28, pw // 18))
    font = _font(text)
    gap, margin = max(4, text // 3), max(6, text // 2)
    width = len(panels) * pw + (len(panels) - 1) * gap + 2 * margin
    # the legend's entries: (colour, label)
    names = list(class_names or ())
    entries = []
    for cls in range(k):
        label = f"{cls} {names[cls]}" if cls < len(names) else (
            f"{cls} {'background' if cls == 0 else 'foreground'}" if num_classes == 1 else str(cls))
        if cls == background:
            entries.append((None, f"{label} (untinted)"))
        else:
            entries.append((tuple(int(v) for v in palette[cls]), label))
    if truth is None:
        pass  # no errors panel
    elif background is None:
        entries.append((WRONG_CLASS, "error (wrong class)"))
    else:
        entries += [(FALSE_POSITIVE, "false positive"), (FALSE_NEGATIVE, "false negative")]
        if k > 2:
            entries.append((WRONG_CLASS, "wrong class"))
    if truth is not None and (truth < 0).any():
        entries.append((IGNORED, "ignored"))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows: list[list[tuple[Any, str, int]]] = [[]]
    x = margin
    for colour, label in entries:
        item = text + gap + int(probe.textlength(label, font=font)) + 2 * gap
        if rows[-1] and x + item > width - margin:
            rows.append([])
            x = margin
        rows[-1].append((colour, label, x))
        x += item
    line = text + gap
    top = margin + 2 * line  # title, then the panel captions
    height = top + ph + margin + len(rows) * line + margin
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, margin), title, fill=(0, 0, 0), font=font)
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        left = margin + i * (pw + gap)
        draw.text((left, margin + line), caption, fill=(60, 60, 60), font=font)
        canvas.paste(tile, (left, top))
    y0 = top + ph + margin
    for r, row in enumerate(rows):
        y = y0 + r * line
        for colour, label, x in row:
            box = [x, y, x + text, y + text]
            if colour is None:
                draw.rectangle(box, outline=(0, 0, 0), fill=(255, 255, 255))
            else:
                draw.rectangle(box, fill=colour, outline=(0, 0, 0))
            draw.text((x + text + gap, y), label, fill=(0, 0, 0), font=font)
    return canvas


_SCORE_METRICS = {"val_dice": "Dice", "val_iou": "IoU", "val_mean_iou": "MeanIoU",
                  "val_pixel_accuracy": "PixelAccuracy"}


def image_score(objective: str, num_classes: int, background: int | None, truth: np.ndarray,
                pred: np.ndarray) -> tuple[str, float]:
    """One image's score by the objective's metric class (dice when the objective is not one).

    Args:
        objective: the study's objective ("val_dice", "val_mean_iou", ...).
        num_classes: 1 for binary, else the number of classes.
        background: ``data.background`` (None: every class is real).
        truth: (H, W) or (H, W, 1) class ids, -1 = ignored.
        pred: (H, W) predicted class ids.

    Returns:
        (the metric's name, its value on this image).
    """
    from segsearch import metrics as seg_metrics

    name = objective if objective in _SCORE_METRICS else "val_dice"
    cls = getattr(seg_metrics, _SCORE_METRICS[name])
    kwargs = {"background": background} if name in ("val_dice", "val_iou") else {}
    metric = cls(num_classes, **kwargs)
    pred = np.asarray(pred, np.int64)
    # the predicted ids as the probabilities the metric takes (binary: 0/1 against 0.5)
    prob = (pred[..., None].astype(np.float32) if num_classes == 1
            else np.eye(num_classes, dtype=np.float32)[pred])
    truth = np.asarray(truth, np.float32).reshape(pred.shape + (1,))
    metric.update_state(truth[None], prob[None])
    return name, float(np.asarray(metric.result()))


def overlay_figure(
    image: np.ndarray,
    pred: np.ndarray,
    truth: np.ndarray | None = None,
    *,
    name: str,
    num_classes: int = 1,
    background: int | None = 0,
    class_names: Sequence[str] | None = None,
    objective: str = "val_dice",
    max_side: int = 1024,
) -> Any:
    """The overlay of one image, as the export and ``segsearch predict`` draw it (a PIL image).

    image | truth | prediction | errors with the image's score by the objective in the title
    when a truth is given, image | prediction without one; every class in its colour, a legend
    with the class names (see :func:`overlay_panel`).

    Args:
        image: (H, W, C) in [0, 1] (grey or colour) or uint8 RGB.
        pred: (H, W) predicted class ids.
        truth: (H, W) or (H, W, 1) class ids, -1 = ignored; None: no mask.
        name: the image's name, first in the title.
        num_classes: 1 for binary, else the number of classes.
        background: ``data.background`` (drawn untinted); None: every class is tinted.
        class_names: names by class id, for the legend.
        objective: the metric whose value on this image the title shows.
        max_side: the largest side of a panel.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    pred = np.asarray(pred, np.int64)
    title = name
    if truth is not None:
        truth = np.rint(np.asarray(truth, np.float32)).astype(np.int64).reshape(pred.shape)
        metric, score = image_score(objective, num_classes, background, truth, pred)
        title = f"{name}   {metric} {score:.4f} (this image)"
    return overlay_panel(image, truth, pred, num_classes=num_classes, background=background,
                         class_names=class_names, title=title, max_side=max_side)


def write_overlays(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    folder: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    num_classes: int = 1,
    background: int | None = 0,
    class_names: Sequence[str] | None = None,
    objective: str = "val_dice",
    max_side: int = 1024,
    overlap: float | None = None,
    batch_size: int = 8,
) -> list[Path]:
    """Write one PNG per image: image | truth | prediction | errors, title and legend (pillow).

    Args:
        model: the model (sigmoid or softmax output).
        x: images, (N, H, W, C) in [0, 1]; with ``overlap``, whole images of any sizes.
        y: class ids, (N, H, W, 1), -1 for ignored pixels.
        folder: where the PNGs go.
        names: a name per image (file names get it, sanitised).
        num_classes: 1 for binary, else the number of classes.
        background: the background class (``data.background``); None: every class is real.
        class_names: names by class id, for the legend.
        objective: the metric whose per-image value the title shows.
        max_side: the largest side of a panel.
        overlap: patch mode: each whole image is predicted through overlapping windows with this
            overlap (``segsearch.sliding``), as validation and ``predict`` see it.
        batch_size: the training batch size (windows per prediction pass).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if len(x) == 0:
        return []
    if overlap is not None:
        from segsearch.sliding import predict_image

        probs = [np.asarray(predict_image(model, np.asarray(image, np.float32), overlap=overlap,
                                          batch_size=batch_size), np.float32) for image in x]
    else:
        probs = list(np.asarray(model.predict(np.asarray(x), verbose=0,
                                              batch_size=min(8, len(x))), dtype=np.float32))
    pred = [(p[..., 0] >= 0.5).astype(np.int64) if p.shape[-1] == 1 else p.argmax(-1)
            for p in probs]
    paths = []
    for i in range(len(x)):
        label = Path(str(names[i])).name if names is not None and i < len(names) else f"image {i}"
        figure = overlay_figure(x[i], pred[i], y[i], name=label, num_classes=num_classes,
                                background=background, class_names=class_names,
                                objective=objective, max_side=max_side)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in
                       (Path(str(names[i])).stem if names is not None and i < len(names) else ""))
        path = folder / (f"{i:02d}_{stem}.png" if stem else f"{i:02d}.png")
        figure.save(path)
        paths.append(path)
    return paths


def _images(part: Any) -> int:
    """How many validation images a part holds (patch mode: its whole images, not its tiles)."""
    return len(part.names) if getattr(part, "crop", False) else len(part)


def validation_report(model: Any, val: Any, *, num_classes: int, background: int | None,
                      class_names: Sequence[str] | None, batch_size: int = 8,
                      overlap: float = 0.5) -> dict[str, Any]:
    """Per-class dice / IoU / pixel counts of ``model`` on the validation part, by class name.

    Args:
        model: the model.
        val: the validation part (``item(i) -> (x, y)``).
        num_classes: 1 for binary, else the number of classes.
        background: the background class (marked in the report).
        class_names: names by class id.
        batch_size: images per prediction batch.
        overlap: the sliding windows' overlap (patch mode).
    """
    from segsearch import metrics as seg_metrics

    metric = seg_metrics.MeanIoU(num_classes)
    if getattr(val, "crop", False):  # patch mode: whole images of any size, through windows
        from segsearch.sliding import predict_image

        for i in range(len(val.names)):
            x, y = val.item(i)
            probs = predict_image(model, x, overlap=overlap, batch_size=batch_size)
            metric.update_state(y[None], probs[None])
    else:
        n = len(val)
        for start in range(0, n, batch_size):
            items = [val.item(i) for i in range(start, min(n, start + batch_size))]
            xb = np.stack([a for a, _ in items])
            yb = np.stack([b for _, b in items])
            metric.update_state(yb, model.predict_on_batch(xb))
    table = metric.per_class()
    names = list(class_names or ())
    out = {}
    for cls in range(len(table["dice"])):
        key = names[cls] if cls < len(names) else f"class {cls}"
        out[key] = {"class": cls, "dice": table["dice"][cls], "iou": table["iou"][cls],
                    "pixels": table["pixels"][cls], "predicted": table["predicted"][cls],
                    "background": cls == background}
    return out


def export_study(
    study_dir: str | os.PathLike[str],
    *,
    config: Any,
    model_path: str | os.PathLike[str],
    best: TrialRecord,
    final: Mapping[str, Any],
    records: Sequence[TrialRecord],
    val: Any,
    ensemble: Any = None,
    cross_validation: Mapping[str, Any] | None = None,
    fold_validation: Any = None,
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
        ensemble: a :class:`segsearch.ensemble.Ensemble` (``export.ensemble``): the exported
            model averages its members (the first is ``model_path``); None: the model alone.
        cross_validation: the folds' figures (:func:`segsearch.folds.summary`) for metrics.yaml.
        fold_validation: with a "folds" ensemble, fold k -> fold k's validation part
            (:func:`segsearch.folds.fold_validation`): TTA and post-processing are then chosen
            on the members' out-of-fold predictions (:func:`segsearch.refine.choose`).

    Returns:
        The ``best/`` folder.

    Raises:
        StudyError: the export could not be written (a full disk, ...); nothing of it is left and
            the previous ``best/`` is kept.
    """
    import keras

    import segsearch.losses  # noqa: F401 - registers the custom objects the checkpoint names
    import segsearch.metrics  # noqa: F401
    from segsearch import formats as formats_mod
    from segsearch.data import batches

    study_dir = Path(study_dir)
    wanted = formats_mod.require(config.export.formats)  # before anything is written
    recover(study_dir)
    token = f"{os.getpid()}-{time.time_ns()}"
    tmp = study_dir / f"{_TMP}{token}"
    tmp.mkdir(parents=True)
    try:
        model = keras.saving.load_model(model_path)
        if ensemble is not None:  # one model averaging the members' probabilities
            model = ensemble.build(model)
        files = export_model(model, tmp, formats=wanted)
        checks = formats_mod.check(model, tmp, wanted, formats_mod.samples(val, model.input_shape),
                                   windows=bool(getattr(val, "crop", False)))

        def measure(scored: Any) -> dict[str, float]:
            if getattr(val, "crop", False):  # patch mode: whole images, overlapping windows
                from segsearch.sliding import score_images

                measured = score_images(scored, val,
                                        overlap=float(getattr(config.data, "overlap", 0.5)),
                                        batch_size=int(config.train.batch_size))
            else:
                measured = scored.evaluate(batches(val, int(config.train.batch_size),
                                                   shuffle=False), return_dict=True, verbose=0)
            return {f"val_{k}": float(v) for k, v in measured.items()}

        validation = measure(model)
        objective = config.search.objectives[0]
        direction = config.search.directions[0]
        classes = int(model.output_shape[-1])
        background = getattr(config.data, "background", 0)
        class_names = getattr(config.data, "class_names", None)
        baseline = scores.constant_baselines(
            (val.item(i)[1] for i in range(_images(val))), classes, background,
            objective=objective, direction=direction, class_names=class_names)
        metrics = {
            "objective": {"name": objective, "direction": direction,
                          "value": validation.get(objective)},
            "validation": validation,
            "validation_images": int(len(val.names)),
            "per_class": validation_report(model, val, num_classes=classes, background=background,
                                           class_names=class_names,
                                           batch_size=int(config.train.batch_size),
                                           overlap=float(getattr(config.data, "overlap", 0.5))),
            "background": background,
            "baseline": {**baseline["best"], "best_by_metric": baseline["best_by_metric"]},
            "verdict": scores.judge(validation.get(objective), baseline["best"].get(objective),
                                    direction),
            "selection": {
                "rule": f"best epoch by the moving average of {objective} "
                        f"(alpha {scores.EMA_ALPHA})",
                "trial_value": best.value,
                "final_value": final.get("value") if final.get("epochs") else None,
                "kept": "final" if str(final.get("model", "")).startswith("final") else "trial",
            },
            "trial_validation": {k: v for k, v in best.values.items()},
            "formats": checks,
        }
        if cross_validation:
            metrics["cross_validation"] = dict(cross_validation)
        if ensemble is not None:
            metrics["ensemble"] = ensemble.report(measure, objective, validation.get(objective),
                                                  direction)
        from segsearch import refine  # TTA and post-processing, chosen on the validation images

        out_of_fold = None
        if ensemble is not None and fold_validation is not None and ensemble.kind == "folds":
            out_of_fold = ensemble.out_of_fold(val, fold_validation)
        refined, choices = refine.choose(model, val, config, baseline=baseline["best"],
                                         out_of_fold=out_of_fold)
        metrics.update(refined)
        if len(config.search.objectives) > 1:  # which trial export.pick chose, and why
            metrics["pick"] = _pick_record(config, best, records)
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
            **choices,
        }
        if ensemble is not None:
            hyper["ensemble"] = ensemble.describe(study_dir)
        _write_yaml(tmp / "hyperparameters.yaml", hyper)
        files["hyperparameters"] = "hyperparameters.yaml"

        write_trials_csv(list(records), tmp / "trials.csv")
        files["trials"] = "trials.csv"
        stored = config.to_dict()
        if stored.get("data", {}).get("resize") == "auto":  # what predict must do: as trained
            stored["data"]["resize"] = "patch" if getattr(val, "crop", False) else "resize"
        _write_yaml(tmp / "config.yaml", stored)
        files["config"] = "config.yaml"

        count = min(int(config.export.overlays), _images(val))
        if count > 0:
            overlap = None
            if getattr(val, "crop", False):  # patch mode: whole images, through windows
                items = [val.item(i) for i in range(count)]
                x, y = [a for a, _ in items], [b for _, b in items]
                names = list(val.names[:count])
                overlap = float(getattr(config.data, "overlap", 0.5))
            else:
                x, y = val.x[:count], val.y[:count]
                owner = getattr(val, "owner", None)
                names = [val.names[int(i)] for i in owner[:count]] if owner is not None else None
            write_overlays(model, x, y, tmp / "overlays", names=names,
                           num_classes=1 if classes == 1 else classes, background=background,
                           class_names=class_names, objective=objective, overlap=overlap,
                           batch_size=int(config.train.batch_size))
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
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # a full disk, a read-only folder: one line, the old best/ kept
            raise StudyError(_export_error(e, tmp, study_dir / BEST_DIR)) from None
        raise
    try:
        return _swap_into_place(study_dir, tmp, token)
    except OSError as e:
        recover(study_dir)  # the old export back in place, or the new one
        raise StudyError(_export_error(e, tmp, study_dir / BEST_DIR)) from None


def _pick_record(config: Any, best: TrialRecord, records: Sequence[TrialRecord]) -> dict[str, Any]:
    """best/metrics.yaml's ``pick``: export.pick's rule, the exported trial, its objectives (as
    its trial measured them) and the Pareto front."""
    from segsearch.pareto import Pick, pareto_front
    from segsearch.records import Objective

    objective = Objective(tuple(config.search.objectives), tuple(config.search.directions))
    front = tuple(r.number for r in pareto_front(records, objective))
    values = dict(zip(objective.names, best.objectives or []))
    return Pick(trial=best, rule=config.export.pick, values=values, front=front).to_dict()


def _export_error(error: OSError, tmp: Path, best: Path) -> str:
    """The one-line message for an export that could not be written; the file is named as in
    ``best/`` (the hidden temporary folder it was written to is gone)."""
    name = error.filename
    if name is not None and str(name).startswith(str(tmp)):
        error = OSError(error.errno, error.strerror, str(best) + str(name)[len(str(tmp)):])
    elif name is None:
        error = OSError(error.errno, error.strerror or str(error), str(best))
    return os_error_message(error, best, "writing the export; the previous best/ is kept")


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

    return jsonable(keep_nan=True, value={
        "trial": best.number,
        "model": str(final.get("model")),
        "final_epochs": final.get("epochs", 0),
        "trials": [[r.number, r.state] for r in records],
        # export.tensorboard is about the trials' logs, not what best/ holds
        "export": {k: v for k, v in dataclasses.asdict(config.export).items()
                   if k != "tensorboard"},
    })


def export_notes(best_dir: str | os.PathLike[str]) -> list[str]:
    """What the run's output says about an export beyond its files: what ``predict`` applies
    (TTA, the threshold, post-processing: chosen on the validation images, so their gain is
    optimistic) and an ensemble that scores below one of its members. [] when metrics.yaml has
    neither.

    Args:
        best_dir: the ``best/`` folder.
    """
    try:
        metrics = yaml.safe_load((Path(best_dir) / "metrics.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(metrics, Mapping):
        return []
    lines = []
    tta = metrics.get("test_time_augmentation") or {}
    refined = metrics.get("refined") or {}
    post = metrics.get("postprocessing") or {}
    by = tta.get("scored_by") or post.get("scored_by")
    applied = []
    if refined.get("tta"):
        applied.append(f"test-time augmentation ({len(tta.get('transforms') or [])} transforms)")
    if isinstance(refined.get("threshold"), float) and refined["threshold"] != 0.5:
        applied.append(f"the threshold {refined['threshold']:g}")
    if refined.get("postprocess_rules"):
        count = int(refined["postprocess_rules"])
        applied.append(plural(count, "post-processing rule"))
    before, after = (tta.get("without") or {}).get(by), refined.get(by)
    if applied and before is not None and after is not None:
        lines.append(f"  predict applies {listed(applied)}: {by} {before:.4f} -> "
                     f"{after:.4f} on the validation images they were chosen on (optimistic)")
    warning = (metrics.get("ensemble") or {}).get("warning")
    if warning:
        lines.append(f"  warning: {warning}")
    return lines


def _write_yaml(path: Path, data: Any) -> None:
    path.write_text(
        yaml.safe_dump(jsonable(data, keep_nan=True), sort_keys=False), encoding="utf-8"
    )


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
