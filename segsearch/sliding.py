"""Whole-image scores of a Keras model that takes fixed windows: the Keras side of data.windows.

In patch mode (``data.resize: patch``) a network trains on ``image_size`` patches, but it is judged
on whole images at their own resolution: :func:`predict_image` covers an image with overlapping
windows blended with Gaussian weights (``segsearch.data.windows.sliding_window``, the code
``segsearch predict`` uses too), and :func:`score_images` feeds those whole-image predictions to
fresh copies of the metrics (and the loss) the model was compiled with, so the figures are the
project's own metrics (``segsearch.metrics``) on the validation images as a user will see them.
:class:`SlidingValidation` does that at the end of every epoch of a trial and puts ``val_<metric>``
into the epoch's logs, where pruning, ``history.csv`` and the checkpoints read them.

Example:
    >>> scores = score_images(model, val_part, overlap=0.5, batch_size=8)
    >>> scores["dice"], scores["mean_iou"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from segsearch.data.windows import sliding_window

__all__ = ["predict_image", "score_images", "SlidingValidation", "part_images", "window_batch"]


def window_batch(window: Sequence[int], batch_size: int) -> int:
    """Windows per forward pass: the training batch, more for small windows (inference keeps no
    activations for the gradients): about 2**19 pixels a pass, at most 64 windows.

    Args:
        window: (h, w) of a window.
        batch_size: the training batch size (the least used).
    """
    return max(int(batch_size), min(64, 2 ** 19 // max(1, int(window[0]) * int(window[1]))))


def predict_image(model: Any, image: np.ndarray, *, overlap: float = 0.5,
                  batch_size: int = 8) -> np.ndarray:
    """The model's output (H, W, K) for a whole (H, W, C) image, from overlapping windows.

    Args:
        model: a Keras model with a fixed input size (the windows' size).
        image: float32 (H, W, C), any H and W.
        overlap: share of a window its neighbour overlaps.
        batch_size: the training batch size; see ``window_batch`` for the windows per pass.
    """
    window = tuple(int(v) for v in model.input_shape[1:3])
    return sliding_window(image, window, model.predict_on_batch, overlap=overlap,
                          batch_size=window_batch(window, batch_size))


def part_images(part: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The whole images and masks of a data Part (full resolution in patch mode).

    Args:
        part: ``splits.val`` (a ``segsearch.data.Part``).
    """
    images, masks = [], []
    for i in range(len(part.names)):
        x, y = part.item(i)
        images.append(np.asarray(x, np.float32))
        masks.append(np.asarray(y, np.float32))
    return images, masks


def _flatten(entry: Any) -> list[Any]:
    if entry is None:
        return []
    if isinstance(entry, Mapping) and "class_name" not in entry:
        return [m for value in entry.values() for m in _flatten(value)]
    if isinstance(entry, (list, tuple)):
        return [m for value in entry for m in _flatten(value)]
    return [entry]


def _compiled(model: Any) -> tuple[Any, list[Any]]:
    """Fresh copies of the loss and metrics ``model`` was compiled with."""
    config = model.get_compile_config() or {}
    loss = config.get("loss")
    loss = keras.losses.get(loss) if loss is not None else None
    metrics = [keras.metrics.get(m) for m in _flatten(config.get("metrics"))]
    return loss, [m for m in metrics if isinstance(m, keras.metrics.Metric)]


def score_images(model: Any, part_or_images: Any, masks: Sequence[np.ndarray] | None = None, *,
                 overlap: float = 0.5, batch_size: int = 8) -> dict[str, float]:
    """The model's loss and compiled metrics over whole images predicted with sliding windows.

    The metrics accumulate over every image (a confusion matrix of all the validation pixels);
    the loss is each image's loss weighted by its labelled pixels. Ignored pixels (-1, also the
    padding of images smaller than a window) count nowhere.

    Args:
        model: a compiled Keras model with a fixed input size.
        part_or_images: a data Part, or a list of (H, W, C) float32 images.
        masks: with a list of images, their (H, W, 1) class-id masks.
        overlap: share of a window its neighbour overlaps.
        batch_size: windows per forward pass.

    Returns:
        {"loss": ..., "dice": ..., ...}: the names ``model.evaluate`` reports.
    """
    if masks is None:
        images, masks = part_images(part_or_images)
    else:
        images = list(part_or_images)
    loss_fn, metrics = _compiled(model)
    loss_sum = weight_sum = 0.0
    for image, mask in zip(images, masks):
        probs = predict_image(model, image, overlap=overlap, batch_size=batch_size)
        y_true = np.asarray(mask, np.float32)
        if y_true.ndim == 2:
            y_true = y_true[..., None]
        y_true, probs = y_true[None], probs[None]
        for metric in metrics:
            metric.update_state(y_true, probs)
        labelled = float(np.count_nonzero(y_true >= 0))
        if loss_fn is not None and labelled > 0:
            value = np.asarray(keras.ops.convert_to_numpy(loss_fn(y_true, probs)), np.float64)
            if value.ndim:  # a plain loss function: per pixel, ignored ones left out here
                valid = (y_true >= 0).reshape(value.shape) if value.size == y_true.size else None
                value = value[valid] if valid is not None else value
            value = float(np.mean(value))
            loss_sum += value * labelled
            weight_sum += labelled
    out: dict[str, float] = {}
    if loss_fn is not None:
        out["loss"] = loss_sum / weight_sum if weight_sum else float("nan")
    for metric in metrics:
        out[metric.name] = float(keras.ops.convert_to_numpy(metric.result()))
    return out


class SlidingValidation(keras.callbacks.Callback):
    """At each epoch's end, score the validation images whole and add ``val_*`` to the logs.

    Put it before the callbacks that read the logs (Keras passes one logs dict to every callback
    in order).

    Args:
        images: the validation images, (H, W, C) float32 each.
        masks: their (H, W, 1) class-id masks.
        overlap: share of a window its neighbour overlaps.
        batch_size: windows per forward pass.
    """

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], *,
                 overlap: float = 0.5, batch_size: int = 8) -> None:
        super().__init__()
        self.images = list(images)
        self.masks = list(masks)
        self.overlap = float(overlap)
        self.batch_size = int(batch_size)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        scores = score_images(self.model, self.images, self.masks, overlap=self.overlap,
                              batch_size=self.batch_size)
        for name, value in scores.items():
            logs[f"val_{name}"] = value
