"""Augmentation: image and mask stay aligned, masks gain no ids, strength 0 is off, seeds
reproduce."""

from __future__ import annotations

import numpy as np
import pytest

from segsearch.data.augment import Augment, apply


def _blocks(n=6, size=48, classes=4, seed=0):
    """Masks of random rectangles of ids 0..classes-1 with some -1 (ignored) pixels."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        for cls in range(1, classes):
            a, b = rng.integers(0, size - 12, 2)
            y[i, a:a + rng.integers(6, 20), b:b + rng.integers(6, 20)] = cls
        y[i, :3, :5] = -1
    return y


GEOMETRIC = Augment(strength=1.0, brightness=0.0, contrast=0.0, scale=0.3, elastic=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_equal_to_its_mask_still_matches_after_augmentation(seed):
    y = (_blocks(seed=seed) > 0).astype(np.float32)  # binary 0/1
    x = y.copy()  # an image whose content IS its mask
    xa, ya = apply(x, y, GEOMETRIC, rng=seed)
    assert not np.array_equal(ya, y)  # something moved
    exact = (xa == 0) | (xa == 1)  # bilinear read of a uniform neighbourhood
    assert exact.mean() > 0.8
    np.testing.assert_array_equal(xa[exact], ya[exact])
    assert np.mean(np.abs(xa - ya) < 0.5) > 0.97  # and nearly everywhere else too


def test_flip_and_rotation_move_image_and_mask_identically():
    rng = np.random.default_rng(0)
    x = rng.random((16, 20, 20, 2)).astype(np.float32)
    y = _blocks(16, 20)
    only = Augment(strength=1, scale=0, brightness=0, contrast=0, elastic=0)
    xa, ya = apply(x, y, only, rng=1)
    for i in range(16):
        found = False
        for k in range(4):
            for flip in (False, True):
                cand_x = np.rot90(x[i], k)
                cand_y = np.rot90(y[i], k)
                if flip:
                    cand_x, cand_y = cand_x[::-1], cand_y[::-1]
                if np.array_equal(cand_x, xa[i]):
                    np.testing.assert_array_equal(cand_y, ya[i])
                    found = True
        assert found, f"item {i} is not a flip/rotation of its source"


def test_no_new_class_ids_and_ignored_stays_ignored():
    y = _blocks(8, 40, classes=5)
    x = np.random.default_rng(0).random(y.shape).astype(np.float32)
    for seed in range(3):
        xa, ya = apply(x, y, Augment(strength=2.0, scale=0.3, elastic=0.05), rng=seed)
        assert set(np.unique(ya)) <= set(np.unique(y))
        assert 0 <= xa.min() and xa.max() <= 1 and xa.dtype == np.float32 and ya.dtype == np.float32


def test_strength_zero_is_identity_and_seeds_reproduce():
    y = _blocks()
    x = np.random.default_rng(1).random(y.shape).astype(np.float32)
    xa, ya = apply(x, y, 0, rng=0)
    np.testing.assert_array_equal(xa, x)
    np.testing.assert_array_equal(ya, y)
    a = apply(x, y, 1.0, rng=5)
    b = apply(x, y, 1.0, rng=5)
    c = apply(x, y, 1.0, rng=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_photometric_changes_only_the_image():
    y = _blocks()
    x = np.full(y.shape, 0.5, np.float32) + 0.1 * (y > 0)
    only = Augment(
        strength=1, flip=False, rotate90=False, scale=0, elastic=0, brightness=0.2, contrast=0.3
    )
    xa, ya = apply(x, y, only, rng=0)
    np.testing.assert_array_equal(ya, y)
    assert not np.allclose(xa, x)


def test_elastic_is_smooth_and_bounded():
    """A U-Net-paper elastic field moves pixels a few pixels, smoothly: neighbours stay
    neighbours."""
    h = 64
    grid = np.broadcast_to(
        np.arange(h, dtype=np.float32)[None, :, None, None] / h, (1, h, h, 1)
    ).copy()
    xa, _ = apply(grid, np.zeros_like(grid),
                  Augment(strength=1, flip=False, rotate90=False, scale=0, brightness=0, contrast=0,
                          elastic=0.03), rng=0)
    shift = (xa - grid)[0, 8:-8, 8:-8, 0] * h  # rows moved, in pixels
    assert 0.2 < np.abs(shift).max() < 0.03 * h * 5
    assert np.abs(np.diff(shift, axis=0)).max() < 1.0


def test_non_square_rotates_by_180_only():
    y = _blocks(4, 24)[:, :, :16]
    x = np.random.default_rng(0).random(y.shape).astype(np.float32)
    xa, ya = apply(x, y, Augment(scale=0, elastic=0, brightness=0, contrast=0), rng=0)
    assert xa.shape == x.shape and ya.shape == y.shape


def test_augment_from_config():
    assert Augment.from_config(True) == Augment()
    assert Augment.from_config(False).enabled is False
    assert Augment.from_config(0.3).strength == 0.3
    assert (
        Augment(
            strength=1, flip=False, rotate90=False, scale=0, brightness=0, contrast=0, elastic=0
        ).enabled
        is False
    )
    assert Augment().to_dict()["elastic_grid"] == 3


@pytest.mark.parametrize("n,grid", [(2, 2), (5, 3), (32, 3), (64, 4), (300, 5), (565, 9)])
def test_spline_matrix_is_scipys_natural_cubic_spline(n, grid):
    """The NumPy spline basis (no scipy at run time) equals scipy's natural CubicSpline."""
    interpolate = pytest.importorskip("scipy.interpolate")
    from segsearch.data.augment import _spline_matrix

    knots = np.linspace(0.0, n - 1.0, grid)
    ref = interpolate.CubicSpline(knots, np.eye(grid), axis=0, bc_type="natural")(
        np.arange(n, dtype=float)
    )
    got = _spline_matrix(n, grid)
    assert got.shape == (n, grid)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)  # a constant field stays constant
