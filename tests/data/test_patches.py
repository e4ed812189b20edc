"""Patch mode: "auto" picks it for large images, patches hit foreground at the configured rate, an
epoch is a fixed number of steps, masks stay exact, data.scale downsamples first."""

from __future__ import annotations

import numpy as np
import pytest
from _thin import write_thin_lines

from segsearch.data import DataConfig, load
from segsearch.data.pipeline import MIN_STEPS, BatchPlan, default_steps
from segsearch.errors import ConfigError


@pytest.fixture(scope="module")
def thin(tmp_path_factory):
    """Five 300x340 thin-line images (about 3% foreground) in a data folder."""
    return write_thin_lines(tmp_path_factory.mktemp("thin") / "data", 5)


def _load(root, **kw):
    kw.setdefault("image_size", 32)
    kw.setdefault("val_fraction", 0.2)
    kw.setdefault("augment", 0)
    return load(DataConfig(source=str(root), **kw))


def test_auto_is_patch_for_large_images_and_resize_otherwise(thin):
    splits = _load(thin)
    assert DataConfig().resize == "auto"
    assert splits.info["resize"] == "patch" and splits.train.crop
    assert splits.train.item(0)[0].shape == (300, 340, 1)  # own resolution
    assert _load(thin, image_size=(304, 352)).info["resize"] == "resize"  # larger than every image
    assert _load(thin, resize="resize").train.x.shape[1:] == (32, 32, 1)
    crop = _load(thin, resize="crop")  # the former name
    assert crop.info["resize"] == "patch" and crop.train.crop
    sample = load(DataConfig(source="sample", image_size=32, sample_count=8))
    assert sample.info["resize"] == "resize" and not sample.train.crop


def test_scale_downsamples_images_and_masks_first(thin):
    splits = _load(thin, scale=0.5)
    x, y = splits.train.item(0)
    assert x.shape == (150, 170, 1) and y.shape == (150, 170, 1)
    assert set(np.unique(y)) <= {0.0, 1.0}  # nearest: no new ids
    # the scaled images still exceed 32: auto stays patch; scaled below the size it resizes
    assert splits.info["resize"] == "patch"
    assert _load(thin, scale=0.1, image_size=64).info["resize"] == "resize"


@pytest.mark.parametrize("share", [0.0, 0.33, 0.7])
def test_patches_hit_foreground_at_the_configured_rate(thin, share):
    splits = _load(thin, foreground_oversample=share)
    plan = BatchPlan(splits.train, 8, shuffle=True, seed=1, steps=100, foreground=share)
    forced = hits = total = 0
    for index in range(plan.num_batches):
        items = plan.order(0)[index * 8:(index + 1) * 8]
        centers = plan.centers(items, 0, index)
        chosen = np.all(np.isfinite(centers), axis=1)
        forced += int(chosen.sum())
        for item, center in zip(items[chosen], centers[chosen]):
            ids = splits.train.item(int(item))[1][..., 0]
            assert ids[int(center[0]), int(center[1])] == 1  # a foreground pixel
        _, y = plan.batch(0, index)
        # the middle 2x2 of a patch: the chosen pixel lands there (the window fits everywhere
        # but within 16 pixels of the border)
        hits += int(np.count_nonzero(np.any(y[:, 15:17, 15:17, 0] == 1, axis=(1, 2))))
        total += len(y)
    assert total == 800
    assert forced / total == pytest.approx(share, abs=0.05)  # 800 draws: sd <= 0.018
    background = 0.06  # a random centre 2x2 meets a line about this often (3% foreground)
    assert hits / total >= share * 0.85
    assert hits / total <= share + background + 0.05


def test_every_patch_holds_foreground_at_share_one_and_a_rare_class_gets_its_turn(folder):
    # class 1 covers a big block, class 2 a few pixels: both are centred on about equally often
    images, masks = [], []
    rng = np.random.default_rng(0)
    for _ in range(3):
        mask = np.zeros((90, 70), np.uint8)
        mask[10:60, 10:50] = 1
        mask[80:82, 60:62] = 2
        masks.append(mask)
        images.append((rng.integers(0, 50, mask.shape) + 60 * mask).astype(np.uint8))
    splits = load(DataConfig(source=str(folder(images, masks)), image_size=32, val_fraction=0.34,
                             augment=0, foreground_oversample=1.0))
    plan = BatchPlan(splits.train, 8, shuffle=True, steps=40, foreground=1.0)
    classes = []
    for index in range(plan.num_batches):
        items = plan.order(0)[index * 8:(index + 1) * 8]
        for item, (r, c) in zip(items, plan.centers(items, 0, index)):
            classes.append(int(splits.train.item(int(item))[1][int(r), int(c), 0]))
        _, y = plan.batch(0, index)
        assert np.all(np.any(y[..., 0] > 0, axis=(1, 2)))
    assert set(classes) == {1, 2}
    assert classes.count(2) / len(classes) == pytest.approx(0.5, abs=0.1)


def test_patches_are_exact_windows_with_aligned_masks(thin):
    splits = _load(thin)
    plan = BatchPlan(splits.train, 8, shuffle=True, steps=2, foreground=0.5)
    x, y = plan.batch(0, 0)
    items = plan.order(0)[:8]
    for k, item in enumerate(items):
        img, mask = splits.train.item(int(item))
        found = [(a, b) for a in range(300 - 31) for b in range(340 - 31)
                 if np.array_equal(img[a:a + 32, b:b + 32], x[k])]
        assert found, "a patch without augmentation is a window of its image"
        a, b = found[0]
        np.testing.assert_array_equal(mask[a:a + 32, b:b + 32], y[k])


def test_an_epoch_is_a_fixed_number_of_steps_over_every_image(thin):
    splits = _load(thin)
    n = len(splits.train.names)
    expected = max(MIN_STEPS, -(-n * 300 * 340 // (8 * 32 * 32)))  # pixels of the images
    assert default_steps(splits.train, 8) == expected
    plan = BatchPlan(splits.train, 8, shuffle=True)
    assert plan.num_batches == expected
    order = plan.order(3)
    assert len(order) >= expected * 8
    counts = np.bincount(order[:expected * 8], minlength=n)
    assert counts.max() - counts.min() <= 1  # each image as often as any other
    assert not np.array_equal(plan.order(3), plan.order(4))  # a new draw each epoch
    x0, _ = plan.batch(0, 0)
    x1, _ = plan.batch(1, 0)
    assert not np.array_equal(x0, x1)
    small = load(DataConfig(source="sample", image_size=32, sample_count=8, resize="patch"))
    assert default_steps(small.train, 8) == MIN_STEPS  # the floor


@pytest.mark.parametrize("key, value, match", [
    ("scale", 0, r"data.scale: expected a number in \(0, 1\]"),
    ("scale", 1.5, r"data.scale"),
    ("foreground_oversample", -0.1,
     r"data.foreground_oversample: expected a share between 0 and 1"),
    ("foreground_oversample", True, r"data.foreground_oversample"),
    ("overlap", 1.0, r"data.overlap: expected a share 0 <= overlap < 1"),
    ("resize", "tiles", r"resize mode"),
])
def test_bad_patch_options_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        DataConfig(**{key: value})


def test_patch_needs_an_image_size():
    with pytest.raises(ConfigError, match=r"resize 'patch' needs an image_size"):
        DataConfig(resize="patch", image_size=None)
    config = DataConfig(scale=0.5, foreground_oversample=0.5, overlap=0.25, resize="patch")
    assert DataConfig.from_dict(config.to_dict()) == config
