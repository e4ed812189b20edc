"""Augmentation on the accelerator (segsearch.data.device): the NumPy batches, masks exact."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from segsearch.data import Augment, DataConfig, batches, load
from segsearch.data import device as accelerator
from segsearch.data.dataset import Part
from segsearch.data.pipeline import BatchPlan

REPO = Path(__file__).resolve().parents[2]


def _part(crop: bool, n: int = 5, side: int = 48, size: int = 32, channels: int = 2) -> Part:
    rng = np.random.default_rng(0)
    x = rng.random((n, side, side, channels), dtype=np.float32)
    y = rng.integers(-1, 4, (n, side, side, 1)).astype(np.float32)  # -1: ignored pixels
    return Part([f"i{i}" for i in range(n)], (size, size) if crop else (side, side), channels,
                arrays=(x, y), crop=crop)


def _compare(plan: BatchPlan, keys) -> None:
    produce = accelerator.producer(plan)
    for epoch, index in keys:
        want_x, want_y = plan.batch(epoch, index)
        got_x, got_y = (np.asarray(a) for a in produce(epoch, index))
        assert got_x.shape == want_x.shape and got_y.shape == want_y.shape
        np.testing.assert_allclose(got_x, want_x, atol=1e-4)
        # a mask is read by index: only ids of the source, and the NumPy path's pixels, up to a
        # float32 tie in the nearest-neighbour rounding
        assert set(np.unique(got_y)) <= set(np.unique(plan.part.stacked[1]))
        assert np.mean(got_y != want_y) <= 1e-3


@pytest.mark.parametrize("crop", [False, True], ids=["resize", "patches"])
def test_device_batches_are_the_numpy_batches(crop):
    plan = BatchPlan(_part(crop), 3, augment=Augment(strength=2.0), seed=5, steps=4)
    assert accelerator.supported(plan)
    _compare(plan, [(0, 0), (0, 1), (1, plan.num_batches - 1)])


def test_each_transform_alone_matches():
    for aug in (Augment(scale=0, brightness=0, contrast=0, elastic=0),  # flips and turns
                Augment(flip=False, rotate90=False, elastic=0),  # zoom, photometric
                Augment(flip=False, rotate90=False, scale=0, brightness=0, contrast=0)):  # elastic
        _compare(BatchPlan(_part(False), 4, augment=aug, seed=1), [(0, 0), (2, 1)])


def test_what_takes_the_device_path():
    part = _part(False)
    assert not accelerator.supported(BatchPlan(part, 2, augment=None))  # nothing to warp
    assert not accelerator.supported(BatchPlan(part, 2, augment=1.0, shuffle=False))
    ragged = Part(["a", "b"], (32, 32), 1, crop=True,
                  arrays=([np.zeros((40, 40, 1), np.float32), np.zeros((36, 44, 1), np.float32)],
                          [np.zeros((40, 40, 1), np.float32), np.zeros((36, 44, 1), np.float32)]))
    plan = BatchPlan(ragged, 2, augment=1.0)
    assert not accelerator.supported(plan)  # items of several sizes: the NumPy producer
    with pytest.raises(ValueError, match="accelerator"):
        accelerator.producer(plan)
    with pytest.raises(ValueError, match="accelerator"):
        batches(ragged, 2, augment=1.0, device=True)
    x, y = next(iter(batches(ragged, 2, augment=1.0)))  # auto: falls back
    assert x.shape == (2, 32, 32, 1)


def test_batches_on_tensorflow_use_the_device_path_and_fit():
    import keras
    import tensorflow as tf

    splits = load(DataConfig(source="sample", image_size=32, num_classes=3, sample_count=12,
                             val_fraction=0.25))
    ds = batches(splits.train, 4, augment=1.0, seed=2)
    assert isinstance(ds, tf.data.Dataset)
    plan = BatchPlan(splits.train, 4, augment=1.0, seed=2)
    for epoch in range(2):  # each pass is the next epoch, the NumPy path's batches
        got = [(x.numpy(), y.numpy()) for x, y in ds]
        assert len(got) == plan.num_batches
        for index, (gx, gy) in enumerate(got):
            wx, wy = plan.batch(epoch, index)
            np.testing.assert_allclose(gx, wx, atol=1e-4)
            assert np.mean(gy != wy) <= 1e-3
    inputs = keras.Input((32, 32, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same",
                                                    activation="softmax")(inputs))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(batches(splits.train, 4, augment=1.0, repeat=True), steps_per_epoch=2, epochs=1,
              verbose=0)


JAX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    from segsearch.data import Augment, batches
    from segsearch.data import device as accelerator
    from segsearch.data.dataset import Part
    from segsearch.data.pipeline import BatchPlan

    rng = np.random.default_rng(0)
    x = rng.random((4, 40, 40, 1), dtype=np.float32)
    y = rng.integers(0, 3, (4, 40, 40, 1)).astype(np.float32)
    part = Part(list("abcd"), (32, 32), 1, arrays=(x, y), crop=True)
    plan = BatchPlan(part, 3, augment=Augment(strength=2.0), seed=4, steps=2)
    got = accelerator.producer(plan)(1, 1)
    want = plan.batch(1, 1)
    assert type(got[0]).__module__.startswith("jax"), type(got[0])
    np.testing.assert_allclose(np.asarray(got[0]), want[0], atol=1e-4)
    assert np.mean(np.asarray(got[1]) != want[1]) <= 1e-3
    data = batches(part, 3, augment=1.0, seed=4, steps=2)
    inputs = keras.Input((32, 32, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same",
                                                    activation="softmax")(inputs))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(data, epochs=1, verbose=0)
    assert "tensorflow" not in sys.modules, "the JAX path imported TensorFlow"
    print("ok")
""")


def test_jax_path_matches_and_needs_no_tensorflow():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
