"""Augmentation on the accelerator: the CPU draws each batch's parameters, the device warps.

The NumPy producer (``segsearch.data.augment.transform``) spends its time on per-pixel work: the
coordinate map and four bilinear reads per image pixel, one nearest read per mask pixel. Here the
training items are uploaded ONCE (``Part.stacked``: the decoded, resized cache) and each batch
travels as a few numbers per image (item, centre, zoom, flips and quarter turns as a 2x2 matrix,
the elastic grid, brightness, contrast), drawn by :meth:`BatchPlan.params` with the very rng calls
the NumPy path makes. The device then builds the same coordinate map and reads the batch out of
the uploaded items in ``keras.ops``:

- JAX: one ``jax.jit`` function per plan, dispatched from the PyDataset's threads (asynchronous),
  so a batch is already on the accelerator when ``model.fit`` takes it;
- TensorFlow: a ``tf.data`` map over the parameters (parallel, in TensorFlow's own threads);
- other backends: the same ``keras.ops`` code, run eagerly.

Image pixels are read bilinearly, mask pixels by nearest neighbour (an index, never an
interpolated value), both with the NumPy path's mirrored borders: a fixed seed gives the batches
of the NumPy path, masks equal and images equal to float32 rounding.

``segsearch.data.batches`` takes this path for training batches whenever :func:`supported`
holds (``device=False`` keeps the NumPy path).

Example:
    >>> plan = BatchPlan(splits.train, 16, augment=1.0, seed=3)
    >>> x, y = producer(plan)(0, 0)          # batch 0 of epoch 0, on the accelerator
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from segsearch.data.augment import _spline_matrix

__all__ = ["DEVICE_SOURCE_LIMIT", "pack", "producer", "supported", "tf_dataset", "warp"]

#: Largest training set (bytes of images and masks, float32) uploaded to the accelerator; a larger
#: one is augmented on the CPU.
DEVICE_SOURCE_LIMIT = 4 * 2**30

# (row, col) of the output after k quarter turns, as a matrix applied to (row, col) before them:
# the NumPy path's np.where chain in ``augment._coordinates``.
_TURNS = np.array([[[1, 0], [0, 1]], [[0, 1], [-1, 0]], [[-1, 0], [0, -1]], [[0, -1], [1, 0]]],
                  dtype=np.float32)


def supported(plan: Any) -> bool:
    """Whether ``plan``'s batches can be augmented on the accelerator.

    Training batches (shuffled, augmented) of items held in memory at one size, small enough to
    upload (``DEVICE_SOURCE_LIMIT``).

    Args:
        plan: a ``BatchPlan``.
    """
    stacked = plan.part.stacked
    if not (plan.shuffle and plan.augment.enabled) or stacked is None:
        return False
    return int(stacked[0].nbytes) + int(stacked[1].nbytes) <= DEVICE_SOURCE_LIMIT


def pack(items: np.ndarray, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The parameters of one batch as the arrays :func:`warp` takes.

    Args:
        items: the stacked items the batch reads (n,).
        p: ``augment.batch_params``' result.
    """
    flips = np.stack([np.where(p["flip_y"], -1.0, 1.0), np.where(p["flip_x"], -1.0, 1.0)], axis=1)
    turn = _TURNS[np.asarray(p["rot"], np.int64) % 4] * flips[:, None, :].astype(np.float32)
    out = {
        "item": np.asarray(items, np.int32),
        "turn": turn.astype(np.float32),
        "zoom": np.asarray(p["zoom"], np.float32),
        "center": np.asarray(p["center"], np.float32),
    }
    for key in ("elastic", "brightness", "contrast"):
        if key in p:
            out[key] = np.asarray(p[key], np.float32)
    return out


def _fold(ops: Any, coord: Any, size: int) -> Any:
    """``augment._fold`` in keras.ops: mirror into [-0.5, size - 0.5] about the pixel edges."""
    lo, hi = -0.5, size - 0.5
    below = ops.min(coord) < lo
    above = ops.max(coord) > hi
    out = ops.where(below, ops.abs(coord - lo) + lo, coord)
    out = ops.where(ops.logical_or(below, above), hi - ops.abs(hi - out), out)
    return ops.clip(out, lo, hi)


def warp(
    flat_x: Any, flat_y: Any, batch: dict[str, Any], *, src_hw: tuple[int, int],
    out_hw: tuple[int, int], elastic_grid: int = 3,
) -> tuple[Any, Any]:
    """Read one augmented batch out of the uploaded items, in ``keras.ops`` (any backend).

    Args:
        flat_x: the items' images, (N * H * W, C) float32.
        flat_y: their masks, (N * H * W, 1) float32 class ids.
        batch: :func:`pack`'s arrays (as tensors).
        src_hw: (H, W) of every item.
        out_hw: (h, w) of the batch.
        elastic_grid: the Augment's ``elastic_grid`` (used when ``batch`` holds ``elastic``).

    Returns:
        (x, y): float32 (n, h, w, C) images and (n, h, w, 1) masks.
    """
    from keras import ops

    H, W = src_hw
    h, w = out_hw
    item = ops.cast(batch["item"], "int32")
    n = ops.shape(item)[0]
    v = np.arange(h, dtype=np.float32) - (h - 1) / 2.0
    u = np.arange(w, dtype=np.float32) - (w - 1) / 2.0
    ys = ops.broadcast_to(ops.convert_to_tensor(v)[None, :, None], (n, h, w))
    xs = ops.broadcast_to(ops.convert_to_tensor(u)[None, None, :], (n, h, w))
    if "elastic" in batch:
        mh = ops.convert_to_tensor(_spline_matrix(h, elastic_grid))
        mw = ops.convert_to_tensor(_spline_matrix(w, elastic_grid))
        field = batch["elastic"] * float(max(h, w))
        ys = ys + ops.einsum("hg,ngk,wk->nhw", mh, field[:, 0], mw)
        xs = xs + ops.einsum("hg,ngk,wk->nhw", mh, field[:, 1], mw)
    t = batch["turn"][:, :, :, None, None]
    ys, xs = t[:, 0, 0] * ys + t[:, 0, 1] * xs, t[:, 1, 0] * ys + t[:, 1, 1] * xs
    zoom = batch["zoom"][:, None, None]
    ys = ys / zoom + batch["center"][:, 0, None, None]
    xs = xs / zoom + batch["center"][:, 1, None, None]
    ys, xs = _fold(ops, ys, H), _fold(ops, xs, W)
    base = (item * (H * W))[:, None, None]
    # masks: nearest neighbour, an index into the items (a class id is never interpolated)
    yi = ops.clip(ops.cast(ops.floor(ys + 0.5), "int32"), 0, H - 1)
    xi = ops.clip(ops.cast(ops.floor(xs + 0.5), "int32"), 0, W - 1)
    y = ops.take(flat_y, base + yi * W + xi, axis=0)
    # images: bilinear, as augment._gather_bilinear
    y0f, x0f = ops.floor(ys), ops.floor(xs)
    wy, wx = (ys - y0f)[..., None], (xs - x0f)[..., None]
    y0, x0 = ops.cast(y0f, "int32"), ops.cast(x0f, "int32")
    ra = base + ops.maximum(y0, 0) * W
    rb = base + ops.minimum(y0 + 1, H - 1) * W
    xa, xb = ops.maximum(x0, 0), ops.minimum(x0 + 1, W - 1)
    top = ops.take(flat_x, ra + xa, axis=0)
    top = top + (ops.take(flat_x, ra + xb, axis=0) - top) * wx
    bottom = ops.take(flat_x, rb + xa, axis=0)
    bottom = bottom + (ops.take(flat_x, rb + xb, axis=0) - bottom) * wx
    x = top + (bottom - top) * wy
    if "contrast" in batch:
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * batch["contrast"][:, None, None, None] + mean
    if "brightness" in batch:
        x = x + batch["brightness"][:, None, None, None]
    if "contrast" in batch or "brightness" in batch:
        x = ops.clip(x, 0.0, 1.0)
    return x, y


def _warp_for(plan: Any) -> functools.partial:
    stacked = plan.part.stacked
    return functools.partial(warp, src_hw=tuple(stacked[0].shape[1:3]),
                             out_hw=tuple(plan.part.size),
                             elastic_grid=plan.augment.elastic_grid)


def _flat(plan: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = plan.part.stacked
    return (np.ascontiguousarray(x, np.float32).reshape(-1, x.shape[-1]),
            np.ascontiguousarray(y, np.float32).reshape(-1, 1))


def producer(plan: Any) -> Callable[[int, int], tuple[Any, Any]]:
    """``(epoch, index) -> (x, y)``: the plan's batches augmented on the accelerator (JAX: one
    ``jax.jit`` function, asynchronous; other backends: eager ``keras.ops``), for a PyDataset.

    Uploads the plan's items once. Exceptions are recorded in ``plan.errors`` and raised.

    Args:
        plan: a ``BatchPlan`` for which :func:`supported` holds.
    """
    import keras

    if not supported(plan):
        raise ValueError("these batches cannot be augmented on the accelerator (see supported())")
    fn = _warp_for(plan)
    flat_x, flat_y = _flat(plan)
    if keras.backend.backend() == "jax":
        import jax

        src_x, src_y = jax.device_put(flat_x), jax.device_put(flat_y)
        fn = jax.jit(fn)
    else:
        src_x = keras.ops.convert_to_tensor(flat_x)
        src_y = keras.ops.convert_to_tensor(flat_y)

    def produce(epoch: int, index: int) -> tuple[Any, Any]:
        items, p = plan.params(epoch, index)
        try:
            return fn(src_x, src_y, pack(items, p))
        except Exception as e:
            plan.errors.record(e)
            raise

    return produce


def tf_dataset(plan: Any, repeat: bool) -> Any:
    """TensorFlow: the plan's batches as a ``tf.data.Dataset``, the parameters drawn by a generator
    and the warp a parallel map (TensorFlow's threads, no GIL).

    Args:
        plan: a ``BatchPlan`` for which :func:`supported` holds.
        repeat: endless (use ``steps_per_epoch``); else each pass over the dataset is the next
            epoch.
    """
    import tensorflow as tf

    if not supported(plan):
        raise ValueError("these batches cannot be augmented on the accelerator (see supported())")
    fn = _warp_for(plan)
    flat_x, flat_y = _flat(plan)
    first = pack(*plan.params(0, 0))
    signature = {k: tf.TensorSpec((None, *v.shape[1:]), tf.as_dtype(v.dtype))
                 for k, v in first.items()}
    epochs = itertools.count()

    def generator():
        start = 0 if repeat else next(epochs)
        for e in (itertools.count(start) if repeat else (start,)):
            for i in range(plan.num_batches):
                yield pack(*plan.params(e, i))

    src_x, src_y = tf.constant(flat_x), tf.constant(flat_y)
    compiled = tf.function(fn, jit_compile=True)  # XLA: 2.7x TensorFlow's own kernels on a CPU
    ds = tf.data.Dataset.from_generator(generator, output_signature=signature)
    ds = ds.map(lambda b: compiled(src_x, src_y, b), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    if not repeat:
        ds = ds.apply(tf.data.experimental.assert_cardinality(plan.num_batches))
    return ds.prefetch(tf.data.AUTOTUNE)
