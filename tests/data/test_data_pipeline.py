"""batches(): same batches on every path, the in-memory cache, crop mode, and model.fit under TF."""

from __future__ import annotations

import numpy as np
import pytest
from datahelpers import blobs

from segsearch.data import DataConfig, batches, load
from segsearch.data import sources as sources_mod
from segsearch.data.pipeline import BatchPlan, iterate, sequence


@pytest.fixture
def counting(monkeypatch):
    """Count every file decode (images and masks) done through segsearch.data.sources.read_array."""
    calls = {"n": 0}
    real = sources_mod.read_array

    def read(path, **kw):
        calls["n"] += 1
        return real(path, **kw)

    monkeypatch.setattr(sources_mod, "read_array", read)
    return calls


@pytest.fixture
def sample_splits():
    return load(
        DataConfig(
            source="sample", image_size=32, num_classes=3, sample_count=20, val_fraction=0.25
        )
    )


def _epoch(it):
    return [(x.copy(), y.copy()) for x, y in it]


def test_batches_shapes_and_epochs_differ(sample_splits):
    plan = BatchPlan(sample_splits.train, 4, augment=1.0, seed=0)
    assert plan.num_batches == 4
    e0 = _epoch(iterate(plan, epochs=1, start_epoch=0))
    e1 = _epoch(iterate(plan, epochs=1, start_epoch=1))
    assert [b[0].shape for b in e0] == [(4, 32, 32, 1)] * 3 + [(3, 32, 32, 1)]  # 15 samples
    assert all(b[1].shape == b[0].shape and b[1].dtype == np.float32 for b in e0)
    assert not np.array_equal(e0[0][0], e1[0][0])
    assert set(np.unique(np.concatenate([b[1] for b in e0]))) <= {0.0, 1.0, 2.0}


def test_same_batches_whatever_the_threads_or_path(sample_splits):
    kw = dict(augment=1.0, shuffle=True, seed=3)
    plan = BatchPlan(sample_splits.train, 3, **kw)
    one = _epoch(iterate(plan, epochs=2, workers=1))
    many = _epoch(iterate(plan, epochs=2, workers=4))
    seq = sequence(sample_splits.train, 3, workers=2, **kw)  # the no-TensorFlow (PyDataset) path
    via_seq = [seq[i] for i in range(len(seq))]
    seq.on_epoch_end()
    via_seq += [seq[i] for i in range(len(seq))]
    for a, b, c in zip(one, many, via_seq):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[0], c[0])
        np.testing.assert_array_equal(a[1], c[1])
    endless = sequence(sample_splits.train, 3, repeat=True, **kw)
    assert endless.num_batches is None
    np.testing.assert_array_equal(endless[len(seq)][0], via_seq[len(seq)][0])


def test_tf_dataset_gives_the_same_batches_and_fits(sample_splits):
    import keras
    import tensorflow as tf

    assert keras.backend.backend() == "tensorflow"
    ds = batches(sample_splits.train, 5, augment=0.5, seed=1, device=False)  # NumPy producer
    assert isinstance(ds, tf.data.Dataset)
    plan = BatchPlan(sample_splits.train, 5, augment=0.5, seed=1)
    for epoch in range(2):  # each pass over the dataset is the next epoch
        got = [(x.numpy(), y.numpy()) for x, y in ds]
        want = _epoch(iterate(plan, epochs=1, start_epoch=epoch))
        assert len(got) == len(want) == 3
        for (gx, gy), (wx, wy) in zip(got, want):
            np.testing.assert_array_equal(gx, wx)
            np.testing.assert_array_equal(gy, wy)
    val = batches(sample_splits.val, 5, shuffle=False)
    vx = np.concatenate([x.numpy() for x, _ in val])
    np.testing.assert_array_equal(vx, sample_splits.val.x)  # no augmentation, files' order

    inputs = keras.Input((32, 32, 1))
    model = keras.Model(
        inputs, keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(inputs)
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(ds, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    endless = batches(sample_splits.train, 5, repeat=True)
    model.fit(endless, steps_per_epoch=2, epochs=1, verbose=0)


def test_pydataset_fits_a_model(sample_splits):
    import keras

    seq = sequence(sample_splits.train, 5, augment=1.0)
    inputs = keras.Input((32, 32, 1))
    model = keras.Model(
        inputs, keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(inputs)
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(seq, epochs=2, verbose=0)
    assert seq.epoch >= 2  # Keras ends an epoch after each pass (and once more at the end of fit)


def test_cache_second_epoch_reads_no_file(folder, counting):
    images, masks = blobs(6)
    config = DataConfig(source=str(folder(images, masks)), image_size=32)
    splits = load(config)
    after_load = counting["n"]
    assert after_load >= 12 and splits.train.cached and splits.info["cached"] is True
    plan = BatchPlan(splits.train, 2, augment=1.0)
    _epoch(iterate(plan, epochs=2))
    _ = splits.train.x, splits.val.y
    assert counting["n"] == after_load


def test_without_cache_every_epoch_reads_the_files(folder, counting):
    images, masks = blobs(6)
    cached = load(DataConfig(source=str(folder(images, masks)), image_size=32, augment=0))
    config = DataConfig(source=str(folder(images, masks)), image_size=32, cache=False)
    splits = load(config)
    assert not splits.train.cached
    before = counting["n"]
    plan = BatchPlan(splits.train, 2, shuffle=False)
    first = _epoch(iterate(plan, epochs=1))
    assert counting["n"] - before == 2 * len(splits.train.names)  # image + mask per pair
    np.testing.assert_array_equal(np.concatenate([b[0] for b in first]), cached.train.x)


def test_crop_mode_tiles_and_random_windows(folder):
    images, masks = blobs(5, size=(48, 40), num_classes=3)
    config = DataConfig(
        source=str(folder(images, masks)), image_size=16, resize="crop", val_fraction=0.2
    )
    splits = load(config)
    assert splits.train.crop and len(splits.train.names) == 4
    assert len(splits.train) == 4 * 3 * 3  # 48 -> 3 tiles, 40 -> 3 tiles (overlapping)
    assert splits.train.x.shape == (36, 16, 16, 1) and splits.info["counts"]["train_samples"] == 36
    name = splits.val.names[0]
    i = int(name.split(".")[0])
    np.testing.assert_array_equal(splits.val.x[0, ..., 0], images[i][:16, :16] / np.float32(255))
    np.testing.assert_array_equal(splits.val.y[0, ..., 0], masks[i][:16, :16])
    fixed = _epoch(iterate(BatchPlan(splits.val, 4, shuffle=False), epochs=1))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in fixed]), splits.val.x)
    plan = BatchPlan(splits.train, 36, shuffle=True, augment=None, steps=1)
    (x, y), = _epoch(iterate(plan, epochs=1))
    # windows anywhere, not just tiles
    assert not any(np.array_equal(x[0], t) for t in splits.train.x)
    # a random window is still a true window of one image (pixel-exact, mask aligned)
    found = False
    for k in range(len(images)):
        img = images[k] / np.float32(255)
        for a in range(48 - 15):
            for b in range(40 - 15):
                if np.array_equal(img[a:a + 16, b:b + 16], x[0, ..., 0]):
                    np.testing.assert_array_equal(masks[k][a:a + 16, b:b + 16], y[0, ..., 0])
                    found = True
    assert found


def test_crop_mode_pads_small_images_with_ignored_pixels(folder):
    images, masks = blobs(3, size=(12, 20))
    splits = load(
        DataConfig(
            source=str(folder(images, masks)), image_size=16, resize="crop", val_fraction=0.34
        )
    )
    y = np.concatenate([splits.train.y, splits.val.y])
    assert y.shape[1:] == (16, 16, 1) and np.all(y[:, 12:] == -1)
    assert splits.info["ignored_fraction"] > 0


def test_numpy_producer_needs_neither_tensorflow_nor_keras():
    """What the PyDataset path calls (BatchPlan / iterate) runs with TensorFlow and Keras
    unimportable."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from segsearch.data import DataConfig, load\n"
        "from segsearch.data.pipeline import BatchPlan, iterate\n"
        "s = load(DataConfig(source='sample', image_size=32, sample_count=8))\n"
        "xs = [x.shape for x, y in iterate(BatchPlan(s.train, 4, augment=1.0), epochs=2, "
        "workers=2)]\n"
        "print(xs)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[(4, 32, 32, 1), (2, 32, 32, 1), (4, 32, 32, 1), (2, 32, 32, 1)]"
