"""batches(): feed a model fast: in-memory arrays, augmentation in parallel threads, prefetching.

Every batch is a pure function of (seed, epoch, batch index): its items come from the epoch's
seeded permutation and its augmentation from a generator seeded with all three. So the batches are
the same whichever path delivers them and however many threads build them:

- under the TensorFlow backend, a ``tf.data.Dataset`` (built on the NumPy producer, prefetched);
- under JAX or PyTorch (no TensorFlow needed), a ``keras.utils.PyDataset`` whose worker threads
  build batches ahead of the model;
- ``iterate`` gives the NumPy batches directly (no Keras at all).

An exception raised while a batch is built (a missing module, an unreadable file) is kept, with its
traceback, in the plan's :class:`ProducerErrors` before it goes on: TensorFlow reports it only as
"UnknownError ... Graph execution error", and :func:`producer_error` gives the original back from
the dataset ``batches`` returned.

Augmented training batches of in-memory items of one size are warped on the accelerator
(``segsearch.data.device``: the items uploaded once, each batch drawn here as its random
parameters); the others are augmented vectorised over a batch in NumPy, which releases the GIL in
its inner loops, so threads run in parallel. Decoded arrays stay in memory (the Part's cache):
after ``load`` no epoch touches the disk, unless the data did not fit (``DataConfig.cache``).

Example:
    >>> splits = load(DataConfig(source="data/membrane", image_size=128))
    >>> model.fit(batches(splits.train, 8, augment=1.0),
    ...           validation_data=batches(splits.val, 8, shuffle=False))
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from segsearch.data.augment import Augment, batch_params, transform
from segsearch.data.dataset import Part

__all__ = ["BatchPlan", "ProducerErrors", "batches", "default_workers", "default_steps", "iterate",
           "producer_error", "py_dataset", "sequence", "MIN_STEPS"]

#: The fewest optimiser steps a patch-mode epoch has (see ``default_steps``).
MIN_STEPS = 16

#: attribute of the datasets ``batches`` returns that holds their plan's ProducerErrors.
_ERRORS_ATTR = "segsearch_producer_errors"


class ProducerErrors:
    """The first exception raised while a plan's batches were built, with its traceback.

    Threads of the producer record into it (the first one is kept: the others are usually the same
    error again); the trial reads it when training fails, since tf.data hides the original.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self.traceback: str | None = None

    def record(self, error: BaseException) -> None:
        """Keep ``error`` (and its formatted traceback) unless one is kept already.

        Args:
            error: the exception raised while a batch was built.
        """
        with self._lock:
            if self.error is None:
                self.error = error
                self.traceback = "".join(
                    traceback.format_exception(type(error), error, error.__traceback__))


def producer_error(data: Any) -> ProducerErrors | None:
    """The exception the producer behind ``data`` raised, if any (None when it raised none).

    Args:
        data: what :func:`batches` or :func:`sequence` returned (anything else gives None).
    """
    errors = getattr(data, _ERRORS_ATTR, None)
    if isinstance(errors, ProducerErrors) and errors.error is not None:
        return errors
    return None


def default_workers() -> int:
    """Threads that build batches: the CPU count, at most 16."""
    return max(1, min(16, os.cpu_count() or 1))


def default_steps(part: Part, batch_size: int, minimum: int = MIN_STEPS) -> int:
    """Steps of a patch-mode epoch: about as many patch pixels as the training images hold.

    ``ceil(image pixels / (batch_size * patch pixels))``, at least ``minimum``: 24 images of
    512x512 in patches of 128x128, 8 a batch, give 48 steps.

    Args:
        part: the training part.
        batch_size: patches per step.
        minimum: the floor, so that an epoch of few images is still worth a pruning decision.
    """
    h, w = part.size
    sizes = part.item_sizes or [part.size] * len(part.names)
    pixels = sum(int(a) * int(b) for a, b in sizes)
    return max(int(minimum), math.ceil(pixels / (int(batch_size) * h * w)))


class BatchPlan:
    """Which items, and which random augmentation, make batch ``index`` of epoch ``epoch``.

    Args:
        part: the data (a Part from ``load``).
        batch_size: items per batch; the last batch of an epoch may be smaller.
        augment: an Augment, a strength, a mapping of Augment fields, or None for none.
        shuffle: a new seeded order each epoch (and, in patch mode, random patches); False keeps
            the files' order and the fixed tiles (for validation).
        seed: seed of the order and of the augmentation.
        steps: in patch mode with shuffle, batches per epoch (default ``default_steps``); each
            batch takes its images from seeded permutations of the images, so each image
            gives about as many patches as any other.
        foreground: in patch mode with shuffle, the chance that a patch is centred on a random
            foreground pixel (a foreground class of the image picked at random first).
    """

    def __init__(self, part: Part, batch_size: int, *, augment: Any = None, shuffle: bool = True,
                 seed: int = 0, steps: int | None = None, foreground: float = 0.33) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if len(part) == 0:
            raise ValueError("the part holds no samples")
        self.part = part
        self.batch_size = batch_size
        self.augment = Augment.from_config(augment)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.patches = bool(part.crop and self.shuffle)
        self.foreground = float(foreground)
        if self.patches:
            self.num_batches = int(steps) if steps else default_steps(part, batch_size)
        else:
            self.num_batches = math.ceil(len(part) / batch_size)
        self.errors = ProducerErrors()
        self._orders: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()

    def order(self, epoch: int) -> np.ndarray:
        """The samples' order in ``epoch``."""
        if not self.shuffle:
            return np.arange(len(self.part))
        if epoch not in self._orders:
            rng = np.random.default_rng([self.seed, epoch, 1])
            if self.patches:  # images, each once before any twice
                n = len(self.part.names)
                rounds = -(-self.num_batches * self.batch_size // n)
                self._orders[epoch] = np.concatenate([rng.permutation(n) for _ in range(rounds)])
            else:
                self._orders[epoch] = rng.permutation(len(self.part))
            while len(self._orders) > 4:
                self._orders.popitem(last=False)
        return self._orders[epoch]

    def batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Build batch ``index`` of ``epoch``: (x (B, H, W, C), y (B, H, W, 1)) float32.

        An exception is recorded in ``self.errors`` (see :class:`ProducerErrors`) and raised.
        """
        try:
            return self._batch(epoch, index)
        except Exception as e:
            self.errors.record(e)
            raise

    def _inputs(self, epoch: int, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The items of batch ``index`` of ``epoch`` and what places their windows."""
        samples = self.order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, epoch, index, 2])
        part = self.part
        centers = None
        if self.patches:
            items, offsets = samples, None
            centers = self.centers(samples, epoch, index)
        else:
            items = part.owner[samples]
            offsets = part.offsets[samples]
        aug = self.augment if self.augment.enabled else None
        return items, {"aug": aug, "rng": rng, "offsets": offsets, "random_crop": self.patches,
                       "centers": centers}

    def params(self, epoch: int, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The items of a batch and its random parameters (``augment.batch_params``), drawn as
        :meth:`batch` draws them; the accelerator path (``segsearch.data.device``) applies them.

        Needs items of one size in memory (``part.stacked``). An exception is recorded in
        ``self.errors`` and raised.
        """
        try:
            items, kw = self._inputs(epoch, index)
            stacked = self.part.stacked
            if stacked is None:
                raise ValueError("the accelerator path needs the items in memory, of one size")
            src_hw = [stacked[0].shape[1:3]] * len(items)
            return items, batch_params(src_hw, self.part.size, kw.pop("aug"), kw.pop("rng"), **kw)
        except Exception as e:
            self.errors.record(e)
            raise

    def _batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        items, kw = self._inputs(epoch, index)
        part = self.part
        aug, rng, offsets = kw["aug"], kw["rng"], kw["offsets"]
        random_crop, centers = kw["random_crop"], kw["centers"]
        stacked = part.stacked
        if stacked is not None:
            images, masks = stacked
        else:
            loaded = {int(i): part.item(int(i)) for i in np.unique(items)}
            images = {i: v[0] for i, v in loaded.items()}
            masks = {i: v[1] for i, v in loaded.items()}
        return transform(images, masks, items, part.size, aug, rng, offsets=offsets,
                         random_crop=random_crop, centers=centers)

    def centers(self, items: np.ndarray, epoch: int, index: int) -> np.ndarray:
        """Where the patches of a batch are centred: (n, 2) (row, col), NaN rows = anywhere.

        Each patch is, with chance ``foreground``, centred on a foreground pixel of its image: a
        foreground class present in the image first (each equally likely), then one of its pixels.
        An image without foreground gives a random patch.

        Args:
            items: the images of the batch.
            epoch: the epoch (seeds the draw with ``index``).
            index: the batch index.
        """
        n = len(items)
        rng = np.random.default_rng([self.seed, epoch, index, 3])
        forced = rng.random(n) < self.foreground
        pick = rng.random((n, 2))
        out = np.full((n, 2), np.nan)
        for j in np.flatnonzero(forced):
            classes = self.part.foreground(int(items[j]))
            if not classes:
                continue
            points = classes[min(int(pick[j, 0] * len(classes)), len(classes) - 1)]
            out[j] = points[min(int(pick[j, 1] * len(points)), len(points) - 1)]
        return out


def iterate(
    plan: BatchPlan, *, epochs: int | None = 1, start_epoch: int = 0, workers: int | None = None,
    prefetch: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield the plan's batches in order, built ahead by a thread pool.

    Args:
        plan: the BatchPlan.
        epochs: how many epochs (None: forever).
        start_epoch: the first epoch number (its order and augmentation).
        workers: threads building batches (default ``default_workers()``).
        prefetch: batches built ahead (default 2 x workers).
    """
    workers = workers or default_workers()
    prefetch = prefetch or 2 * workers
    keys = ((e, i)
            for e in (itertools.count(start_epoch) if epochs is None
                      else range(start_epoch, start_epoch + epochs))
            for i in range(plan.num_batches))
    if workers <= 1:
        for e, i in keys:
            yield plan.batch(e, i)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="segsearch-batches")
    pending: collections.deque = collections.deque()
    try:
        for key in itertools.islice(keys, prefetch):
            pending.append(pool.submit(plan.batch, *key))
        while pending:
            result = pending.popleft().result()
            for key in itertools.islice(keys, 1):
                pending.append(pool.submit(plan.batch, *key))
            yield result
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def sequence(
    part: Part, batch_size: int, *, augment: Any = None, shuffle: bool = True, seed: int = 0,
    repeat: bool = False, workers: int | None = None, steps: int | None = None,
    foreground: float = 0.33,
):
    """The batches as a ``keras.utils.PyDataset`` (works with every Keras backend, no TensorFlow
    needed).

    Args:
        part: the data.
        batch_size: items per batch.
        augment: an Augment, a strength, a mapping of Augment fields, or None.
        shuffle: new order (and random crop windows) each epoch.
        seed: seed of order and augmentation.
        repeat: an endless dataset (use ``steps_per_epoch``); else one epoch per pass.
        workers: threads Keras uses to build batches ahead (default ``default_workers()``).
        steps: patch mode: batches per epoch (see BatchPlan).
        foreground: patch mode: share of foreground-centred patches (see BatchPlan).
    """
    plan = BatchPlan(part, batch_size, augment=augment, shuffle=shuffle, seed=seed, steps=steps,
                     foreground=foreground)
    return py_dataset(plan, plan.batch, repeat=repeat, workers=workers)


def py_dataset(plan: BatchPlan, produce: Callable[[int, int], tuple[Any, Any]], *,
               repeat: bool = False, workers: int | None = None):
    """A ``keras.utils.PyDataset`` over ``produce(epoch, index)`` (``plan.batch``, or the
    accelerator's producer from ``segsearch.data.device``).

    Args:
        plan: the BatchPlan (its batches per epoch and its ProducerErrors).
        produce: builds batch ``index`` of ``epoch``.
        repeat: an endless dataset (use ``steps_per_epoch``); else one epoch per pass.
        workers: threads Keras uses to build batches ahead (default ``default_workers()``).
    """
    import keras

    class SegmentationBatches(keras.utils.PyDataset):
        """Batches of (images, class-id masks) for ``model.fit``; a new epoch after each pass."""

        def __init__(self) -> None:
            super().__init__(workers=workers or default_workers(), use_multiprocessing=False,
                             max_queue_size=2 * (workers or default_workers()))
            self.plan = plan
            self.epoch = 0
            setattr(self, _ERRORS_ATTR, plan.errors)

        @property
        def num_batches(self) -> int | None:
            return None if repeat else plan.num_batches

        def __len__(self) -> int:
            if repeat:
                raise TypeError("an endless (repeat=True) dataset has no length")
            return plan.num_batches

        def __getitem__(self, index: int) -> tuple[Any, Any]:
            if repeat:
                return produce(index // plan.num_batches, index % plan.num_batches)
            if not 0 <= index < plan.num_batches:
                raise IndexError(index)
            return produce(self.epoch, index)

        def on_epoch_end(self) -> None:
            self.epoch += 1

    return SegmentationBatches()


def _tf_dataset(plan: BatchPlan, repeat: bool, workers: int | None):
    """A tf.data.Dataset over the NumPy producer; each pass over it is the next epoch."""
    import tensorflow as tf

    h, w = plan.part.size
    c = plan.part.channels
    epochs = itertools.count()

    def generator():
        if repeat:
            yield from iterate(plan, epochs=None, workers=workers)
        else:
            yield from iterate(plan, epochs=1, start_epoch=next(epochs), workers=workers)

    ds = tf.data.Dataset.from_generator(
        generator,
        output_signature=(
            tf.TensorSpec((None, h, w, c), tf.float32),
            tf.TensorSpec((None, h, w, 1), tf.float32),
        ),
    )
    if not repeat:
        ds = ds.apply(tf.data.experimental.assert_cardinality(plan.num_batches))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    setattr(ds, _ERRORS_ATTR, plan.errors)
    return ds


def batches(
    part: Part,
    batch_size: int,
    *,
    augment: Augment | float | Mapping[str, Any] | bool | None = None,
    shuffle: bool = True,
    seed: int = 0,
    repeat: bool = False,
    steps: int | None = None,
    foreground: float = 0.33,
    device: bool | None = None,
):
    """Batches of (x, y) for ``model.fit``: tf.data under TensorFlow, a PyDataset otherwise.

    Both give the same batches for the same arguments. One pass is one epoch (the next pass draws
    a new order and new augmentation), or, with ``repeat=True``, an endless stream to use with
    ``steps_per_epoch``.

    Args:
        part: ``splits.train`` or ``splits.val`` from ``load``.
        batch_size: items per batch (the last batch of an epoch may be smaller).
        augment: None (none; for validation), an Augment, a strength (1.0 = default), or a mapping
            of Augment fields, e.g. ``config.augment``.
        shuffle: a new seeded order each epoch (and random windows in crop mode); False for
            validation.
        seed: seed of the order and the augmentation.
        repeat: loop forever instead of one epoch per pass.
        steps: patch mode (``part.crop`` and shuffle): batches per epoch, each of ``batch_size``
            random patches (default ``default_steps``).
        foreground: patch mode: share of the patches centred on a foreground pixel
            (``data.foreground_oversample``).
        device: augment on the accelerator (``segsearch.data.device``: the items are uploaded
            once, each batch travels as its random parameters). None: whenever the batches are
            augmented training batches of in-memory items of one size; False: always the NumPy
            producer; True: the accelerator or a ValueError.

    Example:
        >>> train = batches(splits.train, 8, augment=config.augment, seed=trial_seed)
        >>> val = batches(splits.val, 8, shuffle=False)
        >>> model.fit(train, validation_data=val, epochs=20)
    """
    import keras

    from segsearch.data import device as accelerator

    plan = BatchPlan(part, batch_size, augment=augment, shuffle=shuffle, seed=seed, steps=steps,
                     foreground=foreground)
    tensorflow = keras.backend.backend() == "tensorflow"
    if device or (device is None and accelerator.supported(plan)):
        if tensorflow:
            ds = accelerator.tf_dataset(plan, repeat)
            setattr(ds, _ERRORS_ATTR, plan.errors)
            return ds
        return py_dataset(plan, accelerator.producer(plan), repeat=repeat,
                          workers=min(2, default_workers()))  # dispatch only: few threads
    if tensorflow:
        return _tf_dataset(plan, repeat, None)
    return py_dataset(plan, plan.batch, repeat=repeat)
