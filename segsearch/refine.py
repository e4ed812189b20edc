"""Choices made at export on the validation images: test-time augmentation and post-processing.

:func:`choose` predicts every validation image once plainly and once with test-time augmentation
(:mod:`segsearch.tta`: the flips and rotations the training augmentation used), scores both with
the project's scoring code (:func:`segsearch.scores.confusion_scores`, the formulas of the
compiled metrics and of the trivial baseline), and decides by ``export.tta``:

- ``auto`` (the default): TTA is used when it raises the validation score;
- ``true``: always (when the augmentation has a flip or rotation to undo);
- ``false``: never (both scores are still recorded).

For a one-channel (sigmoid) model, ``export.threshold`` sets the foreground threshold: ``auto``
(the default) takes, on the validation images, the threshold of :data:`THRESHOLDS` that scores
best (0.5 unless another raises the score), a number fixes it. Averaging the TTA transforms changes
how the probabilities are spread, so with ``auto`` each of the plain and the TTA predictions is
scored at its own best threshold before TTA is chosen. A softmax model takes the argmax: it has no
threshold to choose.

On the chosen predictions it then chooses post-processing (:mod:`segsearch.postprocess`: per
foreground class, keep the largest component or remove small ones, then a binary mask's small
holes filled, each only when it raises the score), unless ``export.postprocess`` is false. The
score that decides is the objective, or mean IoU when the objective is the loss (as for the
baseline's best constant).

With ``export.ensemble: folds`` the choice is made on the **out-of-fold** predictions instead
(nnU-Net chooses its post-processing so): each fold model predicts its own held-out fold, every
development image once, by a model that did not train on it. The figures are those of the fold
models on their folds (the ensemble's on fold 0 would be optimistic: its members 1..K-1 trained
on fold 0's images), and the choice is made on K times as many images.

What it returns goes into ``best/metrics.yaml`` (both scores of each step, the candidates tried,
each result judged against the trivial baseline) and ``best/hyperparameters.yaml`` (what
``segsearch predict`` applies: ``tta``, ``threshold`` and ``postprocess``; and
``class_weights``, the weights the model's loss was trained with).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from segsearch import postprocess, scores, tta

__all__ = ["THRESHOLDS", "choose", "class_ids", "evaluate", "trained_class_weights"]

_METRICS = ("val_dice", "val_iou", "val_mean_iou", "val_pixel_accuracy")
#: the foreground thresholds ``export.threshold: auto`` tries on a one-channel model's output
THRESHOLDS = tuple(round(0.1 + 0.025 * i, 3) for i in range(33))  # 0.1, 0.125, ..., 0.9


def class_ids(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class ids from probabilities (..., K): the threshold for one sigmoid channel, else argmax.

    Args:
        probabilities: (..., K) probabilities.
        threshold: the foreground threshold of a one-channel (sigmoid) output.
    """
    if probabilities.shape[-1] == 1:
        return (probabilities[..., 0] >= threshold).astype(np.int64)
    return np.argmax(probabilities, axis=-1).astype(np.int64)


def _validation(model: Any, val: Any, names: Sequence[str], *, overlap: float,
                batch_size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(probabilities per validation image, its true ids) with the given transforms."""
    if getattr(val, "crop", False):  # patch mode: whole images through sliding windows
        from segsearch.sliding import part_images, predict_image

        images, masks = part_images(val)

        def one(image: np.ndarray) -> np.ndarray:
            return predict_image(model, image, overlap=overlap, batch_size=batch_size)

        probs = [tta.predict(one, image, names) for image in images]
        return probs, masks
    x = np.asarray(val.x, np.float32)
    probs_all = tta.predict(
        lambda b: model.predict(b, verbose=0, batch_size=max(1, min(batch_size, len(b)))),
        x, names, axes=(1, 2))
    return list(probs_all), list(np.asarray(val.y))


def _scores(truths: Sequence[np.ndarray], ids: Sequence[np.ndarray], num_classes: int,
            background: int | None) -> dict[str, float]:
    """The metrics' figures of predicted class ids against the true ones, over all the images."""
    matrix = scores.confusion_matrix(truths, ids, num_classes)
    return scores.confusion_scores(matrix, num_classes, background)


def _judge(figures: Mapping[str, float], by: str, baseline: Mapping[str, Any] | None,
           direction: str) -> dict[str, Any] | None:
    return scores.judge(figures.get(by), (baseline or {}).get(by), direction)


def _predictions(pairs: Sequence[tuple[Any, Any]], names: Sequence[str], *, overlap: float,
                 batch_size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`_validation` of each (model, part), one list of probabilities and truths."""
    probs: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    for model, part in pairs:
        p, t = _validation(model, part, names, overlap=overlap, batch_size=batch_size)
        probs += p
        truths += t
    return probs, truths


def _tuned(probs: Sequence[np.ndarray], setting: Any, score: Any,
           ) -> tuple[float | None, list[np.ndarray], float, dict[float, float]]:
    """(threshold, class ids at it, their score, {threshold tried: score}) for the export's
    ``threshold`` setting: a softmax output's argmax (None, no threshold); a number as it is;
    ``auto`` the threshold of :data:`THRESHOLDS` with the best score, 0.5 unless another beats
    it."""
    if probs[0].shape[-1] != 1:
        ids = [class_ids(p) for p in probs]
        return None, ids, score(ids), {}
    if setting != "auto":
        ids = [class_ids(p, float(setting)) for p in probs]
        return float(setting), ids, score(ids), {}
    tried: dict[float, float] = {}
    best, best_ids = 0.5, [class_ids(p, 0.5) for p in probs]
    tried[0.5] = score(best_ids)
    for t in THRESHOLDS:
        if t == 0.5:
            continue
        ids = [class_ids(p, t) for p in probs]
        tried[t] = score(ids)
        if tried[t] > tried[best]:
            best, best_ids = t, ids
    return best, best_ids, tried[best], dict(sorted(tried.items()))


def choose(model: Any, val: Any, config: Any, *, baseline: Mapping[str, Any] | None = None,
           out_of_fold: Sequence[tuple[Any, Any]] | None = None,
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decide test-time augmentation, the threshold and post-processing on the validation images.

    Args:
        model: the exported model.
        val: the validation part.
        config: the study's Config (``export.tta``, ``export.threshold``, ``export.postprocess``,
            ``data``).
        baseline: the best constant prediction's figures (``val_dice``, ...), to judge against.
        out_of_fold: (fold model, its held-out fold's part) for every fold: choose on their
            predictions instead of ``model``'s on ``val`` (the baseline is then the best constant
            on all of those images).

    Returns:
        (metrics, params): the ``metrics.yaml`` sections ``test_time_augmentation``,
        ``threshold``, ``postprocessing`` and ``refined`` (the figures of what predict will
        write), and the ``hyperparameters.yaml`` entries ``tta``, ``threshold`` (None: a softmax
        model's argmax) and ``postprocess``.
    """
    objective = config.search.objectives[0]
    by = objective if objective in _METRICS else "val_mean_iou"
    direction = config.search.directions[0] if by == objective else "maximize"
    sign = 1.0 if direction == "maximize" else -1.0
    num_classes = int(model.output_shape[-1])
    background = getattr(config.data, "background", 0)
    overlap = float(getattr(config.data, "overlap", 0.5))
    batch_size = int(config.train.batch_size)
    setting = getattr(config.export, "tta", "auto")
    names = (tta.transforms_for(getattr(config.data, "augment", None), model.input_shape[1:3])
             if len(model.input_shape) == 4 else ["rot0"])  # volumes: no flips or turns (yet)

    def figures(ids: Sequence[np.ndarray]) -> dict[str, float]:
        return {k: round(v, 6) for k, v in
                _scores(truths, ids, num_classes, background).items()}

    pairs = list(out_of_fold) if out_of_fold else [(model, val)]
    plain, truths = _predictions(pairs, ["rot0"], overlap=overlap, batch_size=batch_size)
    if out_of_fold:  # the best constant on all the out-of-fold images
        baseline = scores.constant_baselines(truths, num_classes, background,
                                             objective=by, direction=direction)["best"]
    threshold_setting = getattr(config.export, "threshold", "auto")

    def score(ids: Sequence[np.ndarray]) -> float:
        return sign * figures(ids)[by]

    plain_ids = [class_ids(p) for p in plain]
    without = figures(plain_ids)
    threshold, ids, scored, tried = _tuned(plain, threshold_setting, score)
    at_half = without
    section: dict[str, Any] = {"setting": setting, "transforms": names, "scored_by": by,
                               "without": without}
    if out_of_fold:
        section["chosen_on"] = (f"out-of-fold: each of the {len(pairs)} fold models on its own "
                                f"held-out fold ({len(truths)} images)")
    used = False
    if len(names) > 1:
        augmented, _ = _predictions(pairs, names, overlap=overlap, batch_size=batch_size)
        with_tta = figures([class_ids(p) for p in augmented])
        tta_threshold, tta_ids, tta_scored, tta_tried = _tuned(augmented, threshold_setting,
                                                               score)
        # each at its own threshold: averaging the transforms spreads the probabilities otherwise
        gain = tta_scored - scored
        used = setting is True or (setting == "auto" and gain > 0)
        section.update({"with": with_tta, "gain": round(gain, 6), "used": used,
                        "verdict": _judge(with_tta, by, baseline, direction)})
        if threshold_setting == "auto" and threshold is not None:
            section["gain_compares"] = "each at its own best threshold (compared_at_thresholds)"
            section["compared_at_thresholds"] = {
                "without": {"threshold": threshold, by: round(sign * scored, 6)},
                "with": {"threshold": tta_threshold, by: round(sign * tta_scored, 6)}}
        if used:
            threshold, ids, scored, tried = tta_threshold, tta_ids, tta_scored, tta_tried
            at_half = with_tta
        del augmented
    else:
        section.update({"with": None, "gain": None, "used": False,
                        "note": "the training augmentation has no flip or rotation to undo"})
    del plain
    chosen_threshold = threshold_setting == "auto" and threshold not in (None, 0.5)
    cut: dict[str, Any] = {"setting": threshold_setting}
    if threshold is None:
        cut["note"] = f"{num_classes}-class softmax output: the argmax, no threshold"
    else:
        at = sign * scored
        cut.update({"chosen": threshold, "scored_by": by, "at_0.5": at_half[by], "at_chosen": at,
                    "gain": round(sign * (at - at_half[by]), 6)})
        if tried:
            cut["tried"] = {t: round(sign * v, 6) for t, v in tried.items()}

    rules: list[dict[str, Any]] = []
    post: dict[str, Any] = {"setting": bool(getattr(config.export, "postprocess", True)),
                            "scored_by": by}
    if post["setting"]:
        rules, log = postprocess.choose(
            ids, truths, num_classes=num_classes, background=background,
            score=lambda preds: sign * figures(preds)[by],
            class_names=getattr(config.data, "class_names", None))
        post.update({"without": sign * log["without"], "with": sign * log["with"],
                     "rules": rules, "tried": [{**t, "score": sign * t["score"]}
                                               for t in log["tried"]]})
        if "note" in log:
            post["note"] = log["note"]
        ids = [postprocess.apply(p, rules, background) for p in ids]
    final = figures(ids)
    post["verdict"] = _judge(final, by, baseline, direction)
    refined: dict[str, Any] = {**final, "tta": used, "threshold": threshold,
                               "postprocess_rules": len(rules)}
    if out_of_fold:
        refined["on"] = section["chosen_on"]
    if used or rules or chosen_threshold:  # chosen on these images, then scored on them
        refined["note"] = (f"TTA, the threshold and post-processing were chosen on these "
                           f"{len(ids)} validation images and are scored on them: the gain is "
                           "optimistic, the more so the fewer the images")
    metrics = {"test_time_augmentation": section, "threshold": cut, "postprocessing": post,
               "refined": refined}
    params = {"tta": {"used": used, "transforms": names if used else ["rot0"],
                      "available": names},
              "threshold": threshold,
              "postprocess": {"rules": rules, "background": background},
              "class_weights": trained_class_weights(model, config)}
    return metrics, params


def evaluate(model: Any, part: Any, *, transforms: Sequence[str] = ("rot0",),
             rules: Sequence[Mapping[str, Any]] = (), background: int | None = 0,
             overlap: float = 0.5, batch_size: int = 8,
             threshold: float | None = 0.5) -> dict[str, float]:
    """Score a model on images it has not chosen anything on, as :func:`choose` scores.

    The images go through the model as at export (sliding windows in patch mode), with the given
    test-time augmentation transforms and post-processing rules (an export's
    ``hyperparameters.yaml`` ``tta.transforms`` and ``postprocess.rules``), and are scored by the
    formulas of the compiled metrics.

    Args:
        model: a Keras model (an exported one, an ensemble, or a member of one).
        part: the images and masks (a ``segsearch.data.Part``, e.g. ``splits.val`` of a config
            whose ``data.val_source`` is a held-out folder).
        transforms: :mod:`segsearch.tta` transform names; ``("rot0",)``: none.
        rules: :mod:`segsearch.postprocess` rules; empty: none.
        background: ``data.background``.
        overlap: the windows' overlap in patch mode.
        batch_size: the prediction batch size.
        threshold: a one-channel model's foreground threshold (the export's ``threshold``;
            None: 0.5).

    Returns:
        ``{"val_dice", "val_iou", "val_mean_iou", "val_pixel_accuracy"}`` over all the images.
    """
    probs, truths = _validation(model, part, list(transforms), overlap=overlap,
                                batch_size=batch_size)
    ids = [class_ids(p, 0.5 if threshold is None else threshold) for p in probs]
    if rules:
        ids = [postprocess.apply(p, rules, background) for p in ids]
    return _scores(truths, ids, int(model.output_shape[-1]), background)


def trained_class_weights(model: Any, config: Any) -> dict[str, Any]:
    """``train.class_weights`` and the weights the model's loss was compiled with (None:
    unweighted), for ``hyperparameters.yaml``.

    Args:
        model: the trained model, compiled (a checkpoint loaded with its loss).
        config: the study's Config.
    """
    setting = getattr(config.train, "class_weights", "none")
    weights = getattr(getattr(model, "loss", None), "class_weights", None)
    return {"setting": list(setting) if isinstance(setting, tuple) else setting,
            "weights": None if weights is None else [float(w) for w in weights]}
