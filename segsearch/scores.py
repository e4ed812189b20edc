"""How scores are judged: trivial baselines, a clear margin over them, smoothed epoch selection.

- :func:`constant_baselines`: the scores of the constant predictions (every pixel class k, for
  each k) on the validation masks, computed with the same metric classes the models are compiled
  with (:mod:`segsearch.metrics`), so a model's figure and its baseline are the same formula.
- :func:`clear_margin` / :func:`judge`: whether a model beats the best constant by a margin that
  is not noise.
- :func:`smooth` / :func:`select_epoch`: the epoch a trial keeps, by an exponential moving average
  (EMA) of the validation objective rather than its single best epoch.

Nothing here imports Keras at module level: ``segsearch status`` reads ``baseline.json`` without
TensorFlow.

Example:
    >>> base = constant_baselines([mask_a, mask_b], num_classes=1, background=0)
    >>> base["best"]["best_constant_class"], base["best"]["val_dice"]
    >>> judge(0.62, base["best"]["val_dice"])["clear"]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BASELINE_FILE",
    "EMA_ALPHA",
    "MIN_MARGIN",
    "GAP_SHARE",
    "smooth",
    "select_epoch",
    "constant_baselines",
    "class_counts",
    "confusion_matrix",
    "confusion_scores",
    "clear_margin",
    "judge",
    "read_baseline",
    "write_baseline",
    "baseline_text",
    "warning_text",
]

#: the study folder's file with the constant-prediction scores of the validation set.
BASELINE_FILE = "baseline.json"

#: weight of the newest epoch in the moving average of the validation objective.
#:
#: With alpha = 0.6 the newest epoch weighs 0.6, the one before 0.24, then 0.096, ...: 84% of the
#: weight is on the last two epochs, so the average lags a real improvement by (1 - a) / a = 0.67
#: epoch (trials of 2-5 epochs keep their last real gains), while a one-epoch spike of height h
#: lifts it by only 0.6 h and its neighbours decide the rest. The issue's final training
#: 0.73 -> 0.86 -> 0.78 -> 0.47 averages to 0.73, 0.81, 0.79, 0.60: epoch 2 is still kept (its
#: neighbours are good too) but reported as 0.81, not the lucky 0.86; 0.80, 0.81, 0.60, 0.85,
#: 0.55 keeps epoch 2 (0.81) instead of the isolated 0.85. alpha 0.3 would lag more than two
#: epochs, alpha 1 is the raw peak again.
EMA_ALPHA = 0.6

#: the smallest gain over the best constant prediction that counts as learning (absolute).
MIN_MARGIN = 0.05
#: ... or this share of the gap between the best constant and a perfect score, if larger.
GAP_SHARE = 0.1

_METRICS = ("val_dice", "val_iou", "val_mean_iou", "val_pixel_accuracy")


def smooth(values: Sequence[float], alpha: float = EMA_ALPHA,
           start: float | None = None) -> list[float]:
    """The exponential moving average of ``values``; a non-finite value leaves it unchanged.

    Args:
        values: the objective per epoch.
        alpha: weight of the newest value (0 < alpha <= 1; 1 = no smoothing).
        start: the average before the first value (a continued training's last average); None:
            the first finite value starts it.
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    out = []
    current = start
    for v in values:
        if v is not None and math.isfinite(v):
            current = v if current is None else alpha * v + (1 - alpha) * current
        out.append(math.nan if current is None else current)
    return out


def select_epoch(values: Sequence[float], direction: str = "maximize", alpha: float = EMA_ALPHA,
                 start: float | None = None) -> tuple[int | None, float | None]:
    """The epoch (0-based index) whose smoothed objective is best, and that smoothed value.

    Args:
        values: the objective per epoch.
        direction: "maximize" or "minimize".
        alpha: weight of the newest value in the average.
        start: the average before the first value (see :func:`smooth`).
    """
    best_i, best_v = None, None
    for i, v in enumerate(smooth(values, alpha, start)):
        if not math.isfinite(v):
            continue
        if best_v is None or (v > best_v if direction == "maximize" else v < best_v):
            best_i, best_v = i, v
    return best_i, best_v


def class_counts(masks: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Labelled pixels per class over ``masks`` (class ids, -1 = ignored; any shapes).

    Args:
        masks: the masks.
        num_classes: 1 for binary (classes 0 and 1), else the number of classes.
    """
    k = 2 if num_classes == 1 else int(num_classes)
    counts = np.zeros(k, np.float64)
    for mask in masks:
        ids = np.rint(np.asarray(mask, dtype=np.float64)).astype(np.int64).ravel()
        ids = ids[ids >= 0]
        counts += np.bincount(np.minimum(ids, k - 1), minlength=k)[:k]
    return counts


def constant_baselines(
    masks: Iterable[np.ndarray],
    num_classes: int,
    background: int | None = 0,
    *,
    objective: str = "val_dice",
    direction: str = "maximize",
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Scores of the constant predictions "every pixel is class k", for each class k.

    The pixels of each class are counted once; the confusion matrix of "everything is class k" is
    that count vector in column k, and the figures come from the metric classes the models are
    compiled with (their ``result()`` on that matrix), so they are exactly what a model that
    predicts class k everywhere would score.

    Args:
        masks: the validation masks, class ids, -1 = ignored pixel (any shapes).
        num_classes: 1 for binary (classes 0 and 1), else the number of classes.
        background: the class dice and iou leave out (``data.background``); None: none.
        objective: the study's objective; the best constant is chosen by it (by val_mean_iou when
            the objective is not one of the metrics, e.g. val_loss).
        direction: the objective's direction.
        class_names: names by class id.

    Returns:
        ``{"objective", "direction", "pixels", "constants": [{"class", "name", "val_dice", ...}],
        "best": {"best_constant_class", "class_name", "val_dice", ...}, "best_by_metric":
        {"val_mean_iou": {"class", "value"}, ...}}``: "best" is the constant best by the
        objective, with all its figures.
    """
    from segsearch import metrics as seg_metrics

    k = 2 if num_classes == 1 else int(num_classes)
    counts = class_counts(masks, num_classes)
    metric_objects = seg_metrics.default_metrics(num_classes, background)
    names = list(class_names or ())
    constants = []
    for cls in range(k):
        matrix = np.zeros((k, k), np.float32)
        matrix[:, cls] = counts
        row: dict[str, Any] = {"class": cls, "name": names[cls] if cls < len(names) else None}
        row.update({name: round(value, 6) for name, value in
                    confusion_scores(matrix, num_classes, background, metric_objects).items()})
        constants.append(row)
    by = objective if objective in _METRICS else "val_mean_iou"
    sign = 1 if (direction == "maximize" or by != objective) else -1
    best = max(constants, key=lambda r: sign * r[by])
    # each metric's own best constant too (the best for mean IoU is often another class)
    best_by_metric = {m: {"class": max(constants, key=lambda r: r[m])["class"],
                          "value": max(r[m] for r in constants)} for m in _METRICS}
    return {
        "objective": objective,
        "direction": direction,
        "chosen_by": by,
        "best_by_metric": best_by_metric,
        "background": background,
        "pixels": [int(c) for c in counts],
        "constants": constants,
        "best": {"best_constant_class": best["class"], "class_name": best["name"],
                 **{m: best[m] for m in _METRICS}},
    }


def confusion_matrix(truths: Iterable[np.ndarray], predictions: Iterable[np.ndarray],
                     num_classes: int) -> np.ndarray:
    """The (K, K) confusion matrix (rows = truth) of predicted class ids, ignored pixels out.

    Args:
        truths: class ids per image, -1 = ignored (any shape; a trailing axis of 1 is dropped).
        predictions: the predicted class ids, the same shapes.
        num_classes: 1 for binary (K = 2), else K.
    """
    k = 2 if num_classes == 1 else int(num_classes)
    matrix = np.zeros(k * k, np.float64)
    for truth, pred in zip(truths, predictions):
        t = np.rint(np.asarray(truth, np.float64)).astype(np.int64).ravel()
        p = np.asarray(pred, np.int64).ravel()
        valid = t >= 0
        matrix += np.bincount(np.minimum(t[valid], k - 1) * k + np.clip(p[valid], 0, k - 1),
                              minlength=k * k)
    return matrix.reshape(k, k)


def confusion_scores(matrix: np.ndarray, num_classes: int, background: int | None = 0,
                     metric_objects: Sequence[Any] | None = None) -> dict[str, float]:
    """``val_dice``, ``val_iou``, ``val_mean_iou``, ``val_pixel_accuracy`` of a confusion matrix,
    by the metric classes the models are compiled with (so a figure here is the same formula).

    Args:
        matrix: (K, K) pixel counts, rows = truth (:func:`confusion_matrix`).
        num_classes: 1 for binary, else the number of classes.
        background: ``data.background``.
        metric_objects: the metrics to reuse (default: fresh ``default_metrics``).
    """
    from segsearch import metrics as seg_metrics

    if metric_objects is None:
        metric_objects = seg_metrics.default_metrics(num_classes, background)
    out = {}
    for metric in metric_objects:
        metric.confusion.assign(np.asarray(matrix, np.float32))
        out[f"val_{metric.name}"] = float(np.asarray(metric.result()))
    return out


def clear_margin(baseline: float, direction: str = "maximize") -> float:
    """The gain over the best constant prediction a model needs before it counts as learning.

    ``max(MIN_MARGIN, GAP_SHARE * gap)``, the gap being the distance from the baseline to a
    perfect score (1 for a score to maximise, 0 for one to minimise). Why these two:

    - 0.05 absolute: on validation sets of a few images the same network's score moves by several
      hundredths from epoch to epoch and from split to split (0.73 -> 0.86 -> 0.78 over three
      epochs; 0.4647 against 0.4641 called "ahead" on 4 images). A gain below 0.05 is inside that
      noise, and a network that predicts (almost) one class lands within it.
    - 10% of the gap: a model should close at least a tenth of the distance between the trivial
      score and a perfect one; when the baseline is 0 (the dice of "all background") that asks for
      0.1, a level any network that found the structures reaches.

    Args:
        baseline: the best constant prediction's score.
        direction: "maximize" or "minimize".
    """
    gap = (1.0 - baseline) if direction == "maximize" else baseline
    return max(MIN_MARGIN, GAP_SHARE * max(0.0, gap))


def judge(value: float | None, baseline: float | None,
          direction: str = "maximize") -> dict[str, Any] | None:
    """How a model's score compares with the best constant prediction's.

    Args:
        value: the model's score (None: nothing to judge).
        baseline: the best constant's score on the same metric (None: nothing to judge).
        direction: "maximize" or "minimize".

    Returns:
        ``{"value", "baseline", "margin", "needed", "clear"}`` (margin > 0: better than the
        baseline; clear: by at least ``needed``), or None when either figure is missing.
    """
    if value is None or baseline is None or not math.isfinite(value):
        return None
    margin = (value - baseline) if direction == "maximize" else (baseline - value)
    needed = clear_margin(baseline, direction)
    return {"value": round(float(value), 6), "baseline": round(float(baseline), 6),
            "margin": round(float(margin), 6), "needed": round(needed, 6),
            "clear": bool(margin >= needed)}


def write_baseline(study_dir: str | os.PathLike[str], baseline: dict[str, Any]) -> Path:
    """Write ``baseline.json`` into the study folder (through a temporary file and a rename).

    Args:
        study_dir: the study folder.
        baseline: what :func:`constant_baselines` returned (plus what the caller adds).
    """
    path = Path(study_dir) / BASELINE_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_baseline(study_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The study's ``baseline.json``, or None when it has none (or it cannot be read).

    Args:
        study_dir: the study folder.
    """
    try:
        data = json.loads((Path(study_dir) / BASELINE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def baseline_text(baseline: dict[str, Any] | None, objective: str) -> str | None:
    """One line: which constant prediction is best and what it scores.

    Args:
        baseline: the content of ``baseline.json``.
        objective: the objective to show first.
    """
    if not baseline or not baseline.get("best"):
        return None
    best = baseline["best"]
    cls = best.get("best_constant_class")
    name = f" ({best['class_name']})" if best.get("class_name") else ""
    shown = [objective] if objective in best else []
    shown += [m for m in ("val_mean_iou", "val_dice") if m not in shown and m in best]
    figures = ", ".join(f"{m} {_fmt(best.get(m))}" for m in shown[:2])
    return f"every pixel class {cls}{name}: {figures}"


def warning_text(verdict: dict[str, Any] | None, objective: str, what: str = "the best model"
                 ) -> str | None:
    """The loud warning when ``what`` does not beat the best constant by a clear margin.

    Args:
        verdict: what :func:`judge` returned.
        objective: the objective's name.
        what: the subject of the sentence.
    """
    if verdict is None or verdict["clear"]:
        return None
    return (f"WARNING: {what} ({objective} {_fmt(verdict['value'])}) does not beat the trivial "
            f"baseline ({_fmt(verdict['baseline'])}, a constant prediction) by a clear margin "
            f"(margin {verdict['margin']:+.4f}, needs {verdict['needed']:.4f}); it may predict "
            "(almost) one class everywhere: check the overlays, the class balance (segsearch "
            "data check), data.background and the objective")
