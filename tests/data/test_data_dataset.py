"""load(): every image kind end to end, sizes and channels, the real ISBI slices, bad input
errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datahelpers import blobs, write_image

from segsearch.data import DataConfig, load
from segsearch.errors import DataError


def _load(root, **kw):
    kw.setdefault("image_size", 32)
    kw.setdefault("val_fraction", 0.25)
    return load(DataConfig(source=str(root), **kw))


def _by_name(splits):
    names = splits.train.names + splits.val.names
    return dict(zip(names, np.concatenate([splits.train.x, splits.val.x]))), dict(
        zip(names, np.concatenate([splits.train.y, splits.val.y]))
    )


def test_isbi_slices(isbi_dir):
    splits = load(DataConfig(source=str(isbi_dir), image_size=(64, 64), resize="resize",
                             val_fraction=0.2, seed=0))
    info = splits.info
    assert (
        info["counts"]["total"] == 30
        and info["counts"]["train"] == 24
        and info["counts"]["val"] == 6
    )
    assert (
        info["num_classes"] == 1 and info["channels"] == 1 and info["mask_kind"] == "binary 0/255"
    )
    assert info["synthetic"] is False and "SYNTHETIC" not in info["description"]
    assert info["foreground_fraction"] == pytest.approx(0.78, abs=0.02)
    assert splits.train.x.shape == (24, 64, 64, 1) and splits.val.y.shape == (6, 64, 64, 1)
    assert (
        splits.train.x.dtype == np.float32
        and 0 <= splits.train.x.min()
        and splits.train.x.max() <= 1
    )
    assert set(np.unique(splits.train.y)) == {0.0, 1.0}
    assert info["bit_depths"] == [8] and info["split"]["val"] == list(splits.val.names)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".bmp", ".gif"])
def test_grey_images_of_each_format(folder, ext):
    images, masks = blobs(4)
    splits = _load(folder(images, masks, image_ext=ext))
    xs, ys = _by_name(splits)
    x = xs[f"0{ext}"][..., 0]
    assert splits.info["channels"] == 1
    if ext == ".jpg":
        assert np.abs(x - images[0] / 255).mean() < 0.03
    else:
        np.testing.assert_array_equal(x, images[0] / np.float32(255))
    np.testing.assert_array_equal(ys[f"0{ext}"][..., 0], masks[0])


def test_16bit_images_scale_by_65535(folder, tmp_path):
    images, masks = blobs(4)
    images16 = [(im.astype(np.uint16) * 257) for im in images]
    for ext in (".png", ".tif"):
        splits = _load(folder(images16, masks, image_ext=ext, root=tmp_path / ext[1:]))
        xs, _ = _by_name(splits)
        np.testing.assert_allclose(xs[f"0{ext}"][..., 0], images16[0] / 65535, atol=1e-6)
        assert splits.info["bit_depths"] == [16]


def test_rgb_rgba_and_mixed_channels(folder, tmp_path):
    images, masks = blobs(4)
    rgb = [np.stack([im, im // 2, 255 - im], axis=-1) for im in images]
    rgba = [np.concatenate([c, np.full(c.shape[:2] + (1,), 9, np.uint8)], axis=-1) for c in rgb]
    splits = _load(folder(rgba, masks))
    xs, _ = _by_name(splits)
    assert splits.info["channels"] == 3
    np.testing.assert_array_equal(xs["0.png"], rgb[0] / np.float32(255))
    mixed = folder(rgb[:2] + images[2:], masks, root=tmp_path / "mixed")
    splits = _load(mixed)
    xs, _ = _by_name(splits)
    assert splits.info["channels"] == 3 and xs["3.png"].shape == (32, 32, 3)
    np.testing.assert_array_equal(xs["3.png"][..., 0], xs["3.png"][..., 2])  # grey repeated
    grey = _load(mixed, channels=1)
    assert grey.train.x.shape[-1] == 1


def test_different_sizes_resized_and_masks_keep_their_ids(folder, tmp_path):
    images, masks = blobs(3, size=(40, 60), num_classes=4)
    more_i, more_m = blobs(3, size=(25, 25), num_classes=4, seed=1)
    splits = _load(folder(images + more_i, masks + more_m), image_size=(24, 36), val_fraction=0.34,
                   resize="resize")
    assert splits.train.x.shape[1:] == (24, 36, 1)
    assert set(np.unique(np.concatenate([splits.train.y, splits.val.y]))) == {0.0, 1.0, 2.0, 3.0}
    with pytest.raises(
        DataError,
        match=r"images have 2 different sizes .*data.image_size is not set; "
        r"fix: set data.image_size",
    ):
        _load(folder(images + more_i, masks + more_m), image_size=None)
    same = _load(folder(images, masks, root=tmp_path / "same"), image_size=None, val_fraction=0.34)
    assert same.train.x.shape[1:] == (40, 60, 1)


def test_size_mismatch_names_the_pair(folder):
    images, masks = blobs(4)
    root = folder(images, masks)
    write_image(root / "masks" / "2.png", np.zeros((20, 32), np.uint8))
    with pytest.raises(
        DataError,
        match=r"2.png is 32x32 but its mask masks/2.png is 20x32 \(height x width\); "
        r"fix: save the mask at the image's size",
    ):
        _load(root)


def test_unreadable_files_are_named_all_at_once(folder):
    images, masks = blobs(5)
    root = folder(images, masks)
    (root / "images" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "masks" / "3.png").write_bytes((root / "masks" / "0.png").read_bytes()[:40])
    with pytest.raises(
        DataError,
        match=r"images/1.png: cannot read the file .*fix: .*\(the same problem in 1 more: 3.png\)",
    ):
        _load(root)


def test_float_images_out_of_range(folder):
    images, masks = blobs(4)
    root = folder([im.astype(np.float32) for im in images], masks, image_ext=".tif")
    with pytest.raises(
        DataError, match=r"floating-point pixels outside \[0, 1\].*fix: scale the image"
    ):
        _load(root)
    ok = folder(
        [im.astype(np.float32) / 255 for im in images],
        masks,
        image_ext=".tif",
        root=root.parent / "ok",
    )
    assert _load(ok).train.x.max() <= 1


def test_importing_segsearch_data_does_not_import_tensorflow():
    code = ("import sys, segsearch.data; "
            "print(any(m in sys.modules for m in ('tensorflow', 'keras', 'torch', 'jax')))")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo, env=env
    )
    assert out.stdout.strip() == "False"
