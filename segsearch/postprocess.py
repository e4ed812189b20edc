"""Post-processing chosen on validation: connected components of each class.

Two operations per foreground class (every class but ``data.background``), on a map of class ids:

- ``keep_largest``: keep only the class's largest connected component;
- ``min_size: N``: remove the class's components smaller than N pixels.

Removed pixels become the background class. In a binary problem the same two operations are
also tried on the background class itself, its removed pixels becoming the foreground: a
background component smaller than N pixels is a hole in the foreground (or, where the structure of
interest is the background, as the membranes of the ISBI slices, a fragment of it where there is
none), and filling it is the classic cleaning of a binary mask. Such a rule records ``into``, the
class its pixels become. Components are 4-connected in 2D (6-connected in 3D):
``scipy.ndimage.label``'s default. Without a background class (``data.background: null``) there
is no class to give removed pixels to, so nothing is post-processed.

:func:`choose` decides on the validation predictions the way nnU-Net does: for each foreground
class in turn (then, in a binary problem, the background), "keep the largest component" is kept
when it raises the validation score; if it does not, each N of a grid (:func:`size_grid`: a
quarter, half and all of the smallest true component of the class in the validation masks, a
predicted component smaller than every real one being noise; and 1/4096 to 1/256 of an image's
pixels, as masks resized from their own resolution hold one-pixel components that leave the first
grid empty) is tried and the best is kept when it raises the score. A change that leaves the score
equal or lower is not applied. :func:`apply` applies the chosen rules (``segsearch predict`` does,
with N scaled to the image's resolution).

Example:
    >>> rules, log = choose(predictions, truths, num_classes=1, background=0, score=score_fn)
    >>> cleaned = apply(predictions[0], rules, background=0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["apply", "choose", "size_grid", "foreground_classes", "AREA_FRACTIONS"]

Score = Callable[[Sequence[np.ndarray]], float]
#: the minimum sizes tried besides those from the smallest true component: shares of an image's
#: pixels (4, 8, 16, 32 and 64 pixels of a 128x128 image)
AREA_FRACTIONS = (1 / 4096, 1 / 2048, 1 / 1024, 1 / 512, 1 / 256)


def foreground_classes(num_classes: int, background: int | None) -> list[int]:
    """The classes post-processing may touch: every class but ``background`` (none without one).

    Args:
        num_classes: 1 for binary (classes 0 and 1), else the number of classes.
        background: ``data.background``; None: no background class, so no class.
    """
    if background is None:
        return []
    k = 2 if num_classes == 1 else int(num_classes)
    return [c for c in range(k) if c != background]


def _squeeze(ids: Any) -> np.ndarray:
    """Class ids without a trailing channel axis ((H, W, 1) -> (H, W))."""
    ids = np.asarray(ids)
    return ids[..., 0] if ids.ndim >= 3 and ids.shape[-1] == 1 else ids


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, sizes): the connected components of a boolean mask, sizes[i] of label i + 1."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return labels, sizes


def apply(ids: np.ndarray, rules: Sequence[Mapping[str, Any]], background: int | None, *,
          area_scale: float = 1.0) -> np.ndarray:
    """``ids`` with each rule's components removed (set to the rule's ``into``, else
    ``background``).

    Args:
        ids: class ids (H, W) (or (D, H, W)), integers.
        rules: ``[{"class": c, "keep_largest": bool, "min_size": N or None}, ...]``, with
            ``"into": k`` where removed pixels become class k rather than the background (a
            binary problem's background holes).
        background: the class removed pixels become; None: nothing is changed.
        area_scale: pixels of ``ids`` per pixel of the resolution ``min_size`` was chosen at
            (``segsearch predict`` works at each image's own size).

    Returns:
        A new array (``ids`` itself when there is nothing to do).
    """
    if background is None or not rules:
        return ids
    out = np.array(ids, copy=True)
    for rule in rules:
        cls = int(rule["class"])
        into = int(rule.get("into", background))
        if cls == into:
            continue
        labels, sizes = _components(out == cls)
        if sizes.size == 0:
            continue
        drop = np.zeros(sizes.size + 1, bool)
        if rule.get("keep_largest"):
            drop[1:] = True
            drop[1 + int(np.argmax(sizes))] = False
        min_size = rule.get("min_size")
        if min_size:
            drop[1:] |= sizes < max(1, int(round(float(min_size) * float(area_scale))))
        out[drop[labels]] = into
    return out


def size_grid(truths: Sequence[np.ndarray], cls: int) -> list[int]:
    """The ``min_size`` values tried for a class: 1/4, 1/2 and 1 x its smallest true component,
    and :data:`AREA_FRACTIONS` of the images' median number of pixels.

    Args:
        truths: the validation masks (class ids, -1 ignored).
        cls: the class.

    Returns:
        Sizes of at least 2 pixels, ascending; empty when the class has no true component.
    """
    smallest = None
    for truth in truths:
        _, sizes = _components(_squeeze(truth) == cls)
        if sizes.size:
            low = int(sizes.min())
            smallest = low if smallest is None else min(smallest, low)
    if smallest is None:
        return []
    area = float(np.median([_squeeze(t).size for t in truths]))
    grid = {smallest // 4, smallest // 2, smallest} | {round(area * f) for f in AREA_FRACTIONS}
    return sorted(n for n in grid if n >= 2)


def choose(predictions: Sequence[np.ndarray], truths: Sequence[np.ndarray], *, num_classes: int,
           background: int | None, score: Score,
           class_names: Sequence[str] | None = None) -> tuple[list[dict[str, Any]],
                                                              dict[str, Any]]:
    """The rules that raise the validation score (see the module docstring), and what was tried.

    Args:
        predictions: predicted class ids per validation image, (H, W).
        truths: the true class ids, same shapes (-1 ignored).
        num_classes: 1 for binary, else the number of classes.
        background: ``data.background`` (None: nothing is post-processed).
        score: the validation score of a list of predictions (higher is better).
        class_names: names by class id, for the record.

    Returns:
        (rules, log): the rules for :func:`apply`; ``log`` holds ``without`` and ``with`` (the
        score before and after) and ``tried`` (every candidate with its score and whether it was
        kept).
    """
    current = [_squeeze(p) for p in predictions]
    best = float(score(current))
    log: dict[str, Any] = {"without": best, "tried": []}
    rules: list[dict[str, Any]] = []
    names = list(class_names or ())
    if background is None:
        log["note"] = "data.background is null: no class to give removed pixels to"
    targets = [(cls, background) for cls in foreground_classes(num_classes, background)]
    if len(targets) == 1:  # binary: the background's holes become the foreground
        targets.append((background, targets[0][0]))
    for cls, into in targets:
        if not any(np.any(p == cls) for p in current):
            continue
        rule: dict[str, Any] = {"class": cls, "name": names[cls] if cls < len(names) else None,
                                "keep_largest": False, "min_size": None}
        if cls == background:
            rule["into"] = into
        candidates: list[dict[str, Any]] = [{**rule, "keep_largest": True}]
        candidates += [{**rule, "min_size": n} for n in size_grid(truths, cls)]
        chosen, chosen_score, chosen_preds = None, best, None
        tried = []
        for i, candidate in enumerate(candidates):
            if i == 1 and chosen is not None:  # the largest component kept: nothing smaller left
                break
            trial = [apply(p, [candidate], background) for p in current]
            value = float(score(trial))
            tried.append({"class": cls, "into": into, "keep_largest": candidate["keep_largest"],
                          "min_size": candidate["min_size"], "score": value})
            if value > chosen_score + 1e-12:
                chosen, chosen_score, chosen_preds = candidate, value, trial
        for entry in tried:
            entry["kept"] = chosen is not None and (entry["keep_largest"], entry["min_size"]) == (
                chosen["keep_largest"], chosen["min_size"])
        log["tried"] += tried
        if chosen is not None:
            rules.append(chosen)
            best, current = chosen_score, chosen_preds
    log["with"] = best
    return rules, log
