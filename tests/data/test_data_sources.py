"""Readers and pairing rules: every image format, bit depth and layout, written on the fly."""

from __future__ import annotations

import re

import numpy as np
import pytest
from datahelpers import blobs, write_image

from segsearch.data import DataConfig, load
from segsearch.data.sources import discover, find_pairs, load_arrays, read_array
from segsearch.errors import DataError


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".bmp", ".gif"])
def test_grey_8bit_formats(tmp_path, ext):
    img = (np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)
    path = write_image(tmp_path / f"a{ext}", img)
    out = read_array(path)
    assert out.shape == (32, 32) and out.dtype == np.uint8
    if ext != ".jpg":
        np.testing.assert_array_equal(out, img)


def test_rgb_and_rgba_drop_alpha(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((16, 16, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(read_array(write_image(tmp_path / "a.png", rgba)), rgb)
    np.testing.assert_array_equal(read_array(write_image(tmp_path / "a.tif", rgba)), rgb)
    assert read_array(write_image(tmp_path / "b.jpg", rgb)).shape == (16, 16, 3)


def test_16bit_png_and_tiff_stay_16bit(tmp_path):
    img = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    for ext in (".png", ".tif"):
        out = read_array(write_image(tmp_path / f"a{ext}", img))
        assert out.dtype == np.uint16
        np.testing.assert_array_equal(out, img)


def test_planar_tiff_and_bool_tiff(tmp_path):
    planar = np.random.default_rng(0).integers(0, 255, (3, 12, 10), dtype=np.uint8)
    out = read_array(
        write_image(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate")
    )
    assert out.shape == (12, 10, 3)
    assert read_array(write_image(tmp_path / "b.tif", np.eye(8, dtype=bool))).dtype == np.uint8


def test_palette_image_gives_colours_and_mask_gives_indices(tmp_path):
    from PIL import Image

    idx = np.array([[0, 1], [2, 1]], np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_array(tmp_path / "p.png", palette="index"), idx)
    assert read_array(tmp_path / "p.png").shape == (2, 2, 3)
    img.save(tmp_path / "p.gif")
    np.testing.assert_array_equal(read_array(tmp_path / "p.gif", palette="index"), idx)


def test_truncated_and_garbage_files_name_the_file(tmp_path):
    good = write_image(tmp_path / "a.png", np.zeros((64, 64), np.uint8) + 3)
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    for name in ("cut.png", "junk.jpg"):
        with pytest.raises(DataError, match=rf"{name}: cannot read the file .*fix:"):
            read_array(tmp_path / name)


def test_pairing_same_stem_different_extension_and_suffix(tmp_path):
    imgs, msks = blobs(3)
    write_image(tmp_path / "d" / "images" / "12.png", imgs[0])
    write_image(tmp_path / "d" / "masks" / "12.png", msks[0])
    write_image(tmp_path / "d" / "images" / "case_3.jpg", imgs[1])
    write_image(tmp_path / "d" / "masks" / "case_3.png", msks[1])
    write_image(tmp_path / "d" / "images" / "b.tif", imgs[2])
    write_image(tmp_path / "d" / "masks" / "b_mask.png", msks[2])
    (tmp_path / "d" / "images" / "README.txt").write_text("ignored")
    pairs = find_pairs(tmp_path / "d")
    assert [(p.name, p.mask.name) for p in pairs] == [
        ("12.png", "12.png"),
        ("b.tif", "b_mask.png"),
        ("case_3.jpg", "case_3.png"),
    ]


def test_natural_order_and_folder_aliases(tmp_path):
    imgs, msks = blobs(3)
    for i, n in enumerate(["10", "2", "1"]):
        write_image(tmp_path / "Images" / f"{n}.png", imgs[i])
        write_image(tmp_path / "labels" / f"{n}.png", msks[i])
    assert [p.name for p in find_pairs(tmp_path)] == ["1.png", "2.png", "10.png"]


def test_single_folder_with_mask_suffix(tmp_path):
    imgs, msks = blobs(2)
    for i in range(2):
        write_image(tmp_path / f"s{i}.png", imgs[i])
        write_image(tmp_path / f"s{i}-gt.png", msks[i])
    assert [(p.name, p.mask.name) for p in find_pairs(tmp_path, mask_suffix="-gt")] == [
        ("s0.png", "s0-gt.png"),
        ("s1.png", "s1-gt.png"),
    ]


def test_unpaired_files_are_listed(tmp_path):
    imgs, msks = blobs(8)
    for i in range(8):
        write_image(tmp_path / "images" / f"{i}.png", imgs[i])
    write_image(tmp_path / "masks" / "0.png", msks[0])
    # some images without a mask: listed in a warning and skipped
    assert [p.name for p in find_pairs(tmp_path)] == ["0.png"]
    warning = discover(tmp_path).unpaired_warning()
    assert re.search(r"7 image\(s\) have no mask in .*masks: 1.png, 2.png, 3.png, 4.png, 5.png "
                     r"and 2 more; they are skipped \(every mask found its image, so these "
                     r"images may simply have none, as VOC's JPEGImages/ beside "
                     r"SegmentationClass/; to pair them: name the masks like the images",
                     warning), warning
    for i in range(1, 8):
        write_image(tmp_path / "masks" / f"{i}.png", msks[i])
    write_image(tmp_path / "masks" / "extra.png", msks[0])
    assert len(find_pairs(tmp_path)) == 8
    assert re.search(
        r"1 mask\(s\) have no image .*: extra.png; they are skipped",
        discover(tmp_path).unpaired_warning(),
    )
    # no image pairs at all: an error that says how to pair them
    for i in range(8):
        (tmp_path / "masks" / f"{i}.png").rename(tmp_path / "masks" / f"m{i}.png")
    with pytest.raises(
        DataError,
        match=r"no image pairs with a mask in .*fix: name the masks like the images .*data.pair",
    ):
        find_pairs(tmp_path)


@pytest.mark.parametrize("setup, pattern", [
    ("missing", r"no such folder; fix"),
    ("empty", r"found no images/ and masks/ subfolders .*fix: put the images in"),
    ("empty_subfolders", r"hold no image files .*fix"),
    ("only_images", r"has a images folder but no masks folder \(looked for masks/, labels/.*; its "
                    r"subfolders: images/\); fix: name the masks folder with "
                    r"--set data.masks_dir="),
    ("duplicate", r"two images share the name '1' \(1.png and 1.tif\); fix"),
])
def test_bad_layouts(tmp_path, setup, pattern):
    root = tmp_path / "d"
    if setup != "missing":
        root.mkdir()
    if setup == "empty_subfolders":
        (root / "images").mkdir()
        (root / "masks").mkdir()
    if setup == "only_images":
        write_image(root / "images" / "1.png", np.zeros((8, 8), np.uint8))
    if setup == "duplicate":
        for ext in (".png", ".tif"):
            write_image(root / "images" / f"1{ext}", np.zeros((8, 8), np.uint8))
        write_image(root / "masks" / "1.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=pattern):
        load(DataConfig(source=str(root), image_size=16))


def test_npz_npy_and_npy_folder(tmp_path):
    imgs, msks = blobs(5)
    x, y = np.stack(imgs), np.stack(msks)
    np.savez(tmp_path / "d.npz", images=x, masks=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "x_mask.npy", y[..., None])
    (tmp_path / "f").mkdir()
    np.save(tmp_path / "f" / "images.npy", x)
    np.save(tmp_path / "f" / "masks.npy", y)
    for source in ("d.npz", "x.npy", "f"):
        src = load_arrays(tmp_path / source)
        assert src.images.shape == (5, 32, 32, 1) and src.masks.shape == (5, 32, 32)
        splits = load(DataConfig(source=str(tmp_path / source), image_size=32, val_fraction=0.4))
        assert splits.train.x.shape == (3, 32, 32, 1) and splits.val.x.shape == (2, 32, 32, 1)
        got = np.concatenate([splits.train.y, splits.val.y])
        assert sorted(np.unique(got)) == [0.0, 1.0]
    assert splits.train.names[0].startswith("images.npy[")


def test_bad_arrays(tmp_path):
    np.savez(tmp_path / "a.npz", pictures=np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match=r"a.npz: no images array; it holds \['pictures'\]; fix"):
        load_arrays(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=np.zeros((3, 8, 8)), y=np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match=r"3 images but 2 masks; fix"):
        load_arrays(tmp_path / "b.npz")
    (tmp_path / "c.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"c.npz: cannot read the arrays"):
        load_arrays(tmp_path / "c.npz")
