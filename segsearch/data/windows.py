"""Whole-image prediction from a model of fixed input size: overlapping windows, Gaussian blend.

The image (of any size; one smaller than a window is padded with zeros at the bottom and right, the
way training pads it) is covered by windows of the model's input size that overlap by ``overlap``
of a side (0.5: each inner pixel is seen by four windows); the windows go to ``predict_batch`` in
batches and their outputs are averaged with Gaussian weights (sigma = 1/8 of the window side, as
nnU-Net), so a pixel counts most from the windows it lies in the middle of, where the network sees
the most context, and seams vanish. Pure NumPy: the model is any callable from a batch of windows
to a batch of outputs, so validation and ``segsearch predict`` share this code.

Example:
    >>> probs = sliding_window(image, (128, 128), lambda b: model.predict_on_batch(b), overlap=0.5)
    >>> probs.shape[:2] == image.shape[:2]
    True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

__all__ = ["window_starts", "window_corners", "gaussian_weights", "sliding_window"]


def window_starts(length: int, window: int, overlap: float = 0.5) -> list[int]:
    """Start positions of windows covering ``length`` pixels, evenly spread, the last flush.

    The step is at most ``window * (1 - overlap)``; the windows are then spread evenly from 0 to
    ``length - window`` (nnU-Net's rule), so neighbours overlap by at least ``overlap``.

    Args:
        length: the image side.
        window: the window side.
        overlap: share of a window its neighbour overlaps, 0 <= overlap < 1.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if length <= window:
        return [0]
    step = max(1.0, window * (1.0 - overlap))
    n = math.ceil((length - window) / step) + 1
    spacing = (length - window) / (n - 1)
    return [int(round(spacing * i)) for i in range(n)]


def window_corners(shape: tuple[int, int], window: tuple[int, int],
                   overlap: float = 0.5) -> list[tuple[int, int]]:
    """Top-left (row, col) of every window over an image of ``shape`` (padded to the window).

    Args:
        shape: (height, width) of the image.
        window: (height, width) of a window.
        overlap: share of a window its neighbour overlaps.
    """
    height, width = max(shape[0], window[0]), max(shape[1], window[1])
    return [(y, x) for y in window_starts(height, window[0], overlap)
            for x in window_starts(width, window[1], overlap)]


@functools.lru_cache(maxsize=8)
def gaussian_weights(window: tuple[int, int], sigma_scale: float = 0.125) -> np.ndarray:
    """(h, w) float32 weights: a Gaussian centred in the window, sigma = side * sigma_scale, max 1.

    Args:
        window: (height, width).
        sigma_scale: sigma as a share of the side (nnU-Net: 1/8).
    """
    axes = []
    for side in window:
        sigma = max(side * sigma_scale, 1e-6)
        d = np.arange(side, dtype=np.float64) - (side - 1) / 2.0
        axes.append(np.exp(-0.5 * (d / sigma) ** 2))
    weights = np.outer(axes[0], axes[1])
    weights /= weights.max()
    # far corners underflow towards 0; keep every pixel's weight positive so that any pixel a
    # window covers gets a defined average
    weights = np.maximum(weights, 1e-6).astype(np.float32)
    weights.flags.writeable = False  # shared by the cache
    return weights


def sliding_window(
    image: np.ndarray,
    window: tuple[int, int],
    predict_batch: Callable[[np.ndarray], np.ndarray],
    *,
    overlap: float = 0.5,
    batch_size: int = 8,
    sigma_scale: float = 0.125,
) -> np.ndarray:
    """Predict a whole image window by window; the blended outputs at the image's own size.

    Args:
        image: (H, W, C) float32 image, any H and W.
        window: (h, w) the model takes.
        predict_batch: maps (n, h, w, C) windows to (n, h, w, K) outputs (e.g. probabilities).
        overlap: share of a window its neighbour overlaps (0.5 default, 0 = tiles).
        batch_size: windows per call of ``predict_batch``.
        sigma_scale: the Gaussian's sigma as a share of the window side.

    Returns:
        (H, W, K) float32: each pixel the Gaussian-weighted mean of the windows covering it.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    height, width = image.shape[:2]
    h, w = int(window[0]), int(window[1])
    pad_h, pad_w = max(0, h - height), max(0, w - width)
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
    corners = window_corners((height, width), (h, w), overlap)
    weights = gaussian_weights((h, w), float(sigma_scale))
    total: np.ndarray | None = None
    norm = np.zeros(image.shape[:2], np.float32)
    batch_size = max(1, int(batch_size))
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        batch = np.stack([image[y:y + h, x:x + w] for y, x in chunk])
        out = np.asarray(predict_batch(batch), dtype=np.float32)
        if out.shape[:3] != (len(chunk), h, w):
            raise ValueError(f"predict_batch returned shape {out.shape} for windows {batch.shape}; "
                             f"expected ({len(chunk)}, {h}, {w}, K)")
        if total is None:
            total = np.zeros(image.shape[:2] + out.shape[3:], np.float32)
        for (y, x), pred in zip(chunk, out):
            total[y:y + h, x:x + w] += pred * (weights[..., None] if pred.ndim == 3 else weights)
            norm[y:y + h, x:x + w] += weights
    assert total is not None
    if total.ndim == 3:
        blended = total / norm[..., None]
    else:
        blended = total / norm
    return blended[:height, :width]
