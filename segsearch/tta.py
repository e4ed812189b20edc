"""Test-time augmentation: predict flipped and rotated copies of an image, invert, average.

The transforms are the flips and 90-degree rotations the training augmentation drew
(``data.augment``'s ``flip`` and ``rotate90``, :mod:`segsearch.data.augment`), so the network is
only asked about orientations it was trained on:

- ``flip`` alone: ``rot0``, ``fliplr``, ``fliplr_rot180`` (an up-down flip) and ``rot180`` (both
  flips), the four the random horizontal and vertical flips produce;
- ``rotate90`` alone: ``rot0``, ``rot90``, ``rot180``, ``rot270``; only ``rot0`` and ``rot180``
  when the model's input is not square (the augmentation rotates non-square patches by 180 only,
  since a quarter turn would swap their height and width);
- both: all eight of the square's symmetries (the four above and ``fliplr_rot90``,
  ``fliplr_rot180``, ``fliplr_rot270``), or the four flips for a non-square input;
- neither (or augmentation off): ``rot0`` alone, so TTA changes nothing.

A transform named ``[fliplr_]rotK`` flips left-right first (when named), then turns the image K
degrees counter-clockwise (``numpy.rot90``). :func:`predict` applies each transform to the input,
calls the prediction function (a model on a batch, or a whole image through sliding windows: the
function decides), maps the output back with the inverse transform and averages the
probabilities. A quarter turn of an H x W image is W x H; the prediction function sees that size
and the inverse brings the output back to H x W.

Example:
    >>> names = transforms_for(Augment(), (64, 64))
    >>> probs = predict(lambda x: model.predict_on_batch(x), batch, names, axes=(1, 2))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from segsearch.errors import ConfigError

__all__ = ["TRANSFORMS", "transforms_for", "forward", "inverse", "predict"]

#: every transform by name: (quarter turns counter-clockwise, flipped left-right first).
TRANSFORMS: dict[str, tuple[int, bool]] = {
    "rot0": (0, False), "rot90": (1, False), "rot180": (2, False), "rot270": (3, False),
    "fliplr": (0, True), "fliplr_rot90": (1, True), "fliplr_rot180": (2, True),
    "fliplr_rot270": (3, True),
}


def transforms_for(augment: Any, input_size: Sequence[int | None] | None) -> list[str]:
    """The transforms of the flips and rotations an augmentation uses (see the module docstring).

    Args:
        augment: a :class:`segsearch.data.augment.Augment`, or a ``data.augment`` value (a
            strength, true/false, a mapping); None: no augmentation.
        input_size: (height, width) of the model's input; None (or None sides): any size, so
            quarter turns are allowed.

    Returns:
        Transform names, ``rot0`` first.
    """
    from segsearch.data.augment import Augment

    aug = Augment.from_config(augment)
    if not aug.enabled:
        return ["rot0"]
    size = tuple(input_size or (None, None))
    square = None in size or size[0] == size[1]
    names = ["rot0"]
    if aug.flip:
        names += ["fliplr", "fliplr_rot180", "rot180"]
    if aug.rotate90:
        names += ["rot90", "rot180", "rot270"] if square else ["rot180"]
        if aug.flip and square:
            names += ["fliplr_rot90", "fliplr_rot270"]
    return list(dict.fromkeys(names))


def _parse(name: str) -> tuple[int, bool]:
    if name not in TRANSFORMS:
        raise ConfigError(f"unknown test-time transform {name!r}; valid: "
                          f"{', '.join(TRANSFORMS)}")
    return TRANSFORMS[name]


def forward(x: np.ndarray, name: str, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """``x`` transformed: flipped left-right (when the name says so), then turned.

    Args:
        x: an array whose ``axes`` are (height, width): (H, W, C) with (0, 1), a batch with (1, 2).
        name: a transform of :data:`TRANSFORMS`.
        axes: the height and width axes.
    """
    turns, flip = _parse(name)
    out = np.flip(x, axis=axes[1]) if flip else x
    return np.rot90(out, turns, axes=axes)


def inverse(y: np.ndarray, name: str, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """The inverse of :func:`forward`: ``inverse(forward(x, t), t) == x`` for every transform.

    Args:
        y: the transformed array (or a prediction made on it, same spatial axes).
        name: the transform :func:`forward` applied.
        axes: the height and width axes.
    """
    turns, flip = _parse(name)
    out = np.rot90(y, -turns, axes=axes)
    return np.flip(out, axis=axes[1]) if flip else out


def predict(predict_fn: Callable[[np.ndarray], Any], x: np.ndarray, names: Sequence[str], *,
            axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """The mean of ``predict_fn`` over the transformed copies of ``x``, each mapped back.

    Args:
        predict_fn: maps an input to probabilities with the same spatial axes (a model on a batch,
            or sliding windows over one image).
        x: the input: one image (H, W, C) with ``axes=(0, 1)``, a batch (N, H, W, C) with (1, 2).
        names: the transforms (:func:`transforms_for`); ``["rot0"]`` is a plain prediction.
        axes: the height and width axes of ``x`` and of the prediction.

    Returns:
        float32 probabilities, the shape of ``predict_fn(x)``.
    """
    if not names:
        raise ValueError("predict needs at least one transform (rot0 for none)")
    total: np.ndarray | None = None
    for name in names:
        prob = np.asarray(predict_fn(np.ascontiguousarray(forward(x, name, axes))), np.float32)
        back = inverse(prob, name, axes)
        total = back.astype(np.float32) if total is None else total + back
    return np.ascontiguousarray(total / np.float32(len(names)))
