"""The built-in synthetic sample: deterministic, binary and multi-class, any size, says it is
synthetic."""

from __future__ import annotations

import numpy as np
import pytest

from segsearch.data import DataConfig, load, make_sample


def test_deterministic_and_seeded():
    a = make_sample(4, (32, 48), 3, seed=1)
    b = make_sample(4, (32, 48), 3, seed=1)
    c = make_sample(4, (32, 48), 3, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(
    "size, classes, channels",
    [((32, 32), 1, 1), ((40, 72), 4, 3), ((8, 8), 2, 1), ((96, 64), 7, 1)],
)
def test_shapes_ranges_and_classes(size, classes, channels):
    x, y, names = make_sample(6, size, classes, channels=channels)
    assert x.shape == (6, *size, channels) and y.shape == (6, *size, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    ids = set(np.unique(y).tolist())
    assert ids <= set(range(max(2, classes))) and 0 in ids
    if classes == 1:
        assert ids == {0.0, 1.0}
    assert len(names) == 6 and names[0] == "synthetic_000.png"


def test_shapes_are_visible_in_the_image():
    x, y, _ = make_sample(8, (64, 64), 1)
    assert x[y == 1].mean() > x[y == 0].mean() + 0.2


def test_load_sample_says_synthetic():
    splits = load(DataConfig(source="sample", image_size=32, num_classes=3, sample_count=10))
    assert splits.info["synthetic"] is True
    assert "SYNTHETIC" in splits.info["description"] and "not real" in splits.info["description"]
    assert splits.info["source"] == "sample" and splits.split["synthetic"] is True
    assert len(splits.train) == 8 and len(splits.val) == 2 and splits.info["num_classes"] == 3
    assert splits.train.x.shape == (8, 32, 32, 1)
