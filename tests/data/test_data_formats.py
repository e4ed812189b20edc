"""Images as instruments and tools write them: compressed, 16-bit and multi-page TIFF, GIF, BMP,
JPEG."""

from __future__ import annotations

import numpy as np
import pytest
from datahelpers import blobs, write_image

from segsearch.data import DataConfig, check, load, sources
from segsearch.data.sources import read_array
from segsearch.errors import DataError

GREY = (np.arange(24 * 32).reshape(24, 32) % 251).astype(np.uint8)
RGB = np.stack([GREY, GREY[::-1], 255 - GREY], -1)
_Y, _X = np.mgrid[:24, :32]
SMOOTH = np.stack([_X * 7, _Y * 9, 200 - _X * 3], -1).astype(np.uint8)  # what JPEG keeps well


def _pillow(path, arr, **kw):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", "packbits", "raw"])
@pytest.mark.parametrize("arr", [GREY, RGB], ids=["grey", "rgb"])
def test_lossless_tiff_compressions(tmp_path, compression, arr):
    out = read_array(_pillow(tmp_path / "a.tif", arr, compression=compression))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)


def test_jpeg_compressed_tiff(tmp_path):
    out = read_array(_pillow(tmp_path / "a.tif", SMOOTH, compression="jpeg", quality=95))
    assert out.shape == SMOOTH.shape and np.abs(out.astype(int) - SMOOTH).mean() < 3


def test_16bit_tiff_lzw_and_png_stay_16bit(tmp_path):
    arr = GREY.astype(np.uint16) * 257
    for path in (_pillow(tmp_path / "a.tif", arr, compression="tiff_lzw"),
                 _pillow(tmp_path / "a.png", arr),
                 write_image(tmp_path / "b.tif", arr, compression="zlib")):
        out = read_array(path)
        assert out.dtype == np.uint16, path
        np.testing.assert_array_equal(out, arr)


def test_multipage_tiff_gives_the_first_page_with_a_note(tmp_path):
    pages = np.stack([GREY + i for i in range(5)])
    notes: list[str] = []
    out = read_array(
        write_image(tmp_path / "stack.tif", pages, photometric="minisblack"), notes=notes
    )
    np.testing.assert_array_equal(out, GREY)
    assert notes == [
        "TIFF file(s) of several pages, of which only the first page is read: stack.tif (5 pages)"
    ]
    # Pillow writes multi-page files too
    from PIL import Image

    Image.fromarray(GREY).save(tmp_path / "pil.tif", save_all=True, compression="tiff_lzw",
                               append_images=[Image.fromarray(GREY[::-1])])
    notes.clear()
    np.testing.assert_array_equal(read_array(tmp_path / "pil.tif", notes=notes), GREY)
    assert "pil.tif (2 pages)" in notes[0]


def test_gif_bmp_jpeg(tmp_path):
    np.testing.assert_array_equal(read_array(_pillow(tmp_path / "a.bmp", RGB)), RGB)
    # grey palette
    np.testing.assert_array_equal(read_array(_pillow(tmp_path / "a.gif", GREY)), GREY)
    assert (
        np.abs(
            read_array(_pillow(tmp_path / "a.jpg", SMOOTH, quality=95)).astype(int) - SMOOTH
        ).mean()
        < 3
    )


def _no_tifffile(monkeypatch):
    """tifffile as without imagecodecs: it refuses LZW / JPEG compressed files."""
    import tifffile

    class Refuses:
        def __init__(self, *a, **k):
            raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile, "TiffFile", Refuses)


def test_pillow_reads_what_tifffile_cannot(tmp_path, monkeypatch):
    path = _pillow(tmp_path / "a.tif", RGB, compression="tiff_lzw")
    _no_tifffile(monkeypatch)
    np.testing.assert_array_equal(read_array(path), RGB)


def test_undecodable_tiff_names_the_cause_not_a_reexport(tmp_path, monkeypatch):
    path = tmp_path / "a.tif"
    path.write_bytes(b"II*\x00" + b"\x00" * 20)  # a TIFF header and nothing Pillow can use
    _no_tifffile(monkeypatch)
    with pytest.raises(
        DataError,
        match=r"a.tif: cannot decode this TIFF's compression \(tifffile: ValueError: .*"
        r"imagecodecs.*; Pillow: .*\); fix: pip install imagecodecs",
    ) as info:
        read_array(path)
    assert "export" not in str(info.value)


def test_a_data_set_of_lzw_tiffs_and_gif_masks_loads(tmp_path):
    images, masks = blobs(6, size=(24, 32))
    for i, (img, msk) in enumerate(zip(images, masks)):
        _pillow(tmp_path / "images" / f"{i}.tif", img, compression="tiff_lzw")
        _pillow(tmp_path / "masks" / f"{i}.gif", msk * 255)
    splits = load(DataConfig(source=str(tmp_path), image_size=None))
    assert splits.info["image_size"] == [24, 32] and splits.info["num_classes"] == 1
    want = float(np.mean(np.stack(masks)))
    assert splits.info["class_frequencies"][1] == pytest.approx(want, abs=1e-6)
    assert check(tmp_path).ok


def test_multipage_note_reaches_run_and_check(tmp_path):
    images, masks = blobs(4)
    for i, (img, msk) in enumerate(zip(images, masks)):
        write_image(tmp_path / "images" / f"{i}.tif", np.stack([img] * 5), photometric="minisblack")
        write_image(tmp_path / "masks" / f"{i}.png", msk)
    splits = load(DataConfig(source=str(tmp_path), image_size=32))
    note = "4 TIFF file(s) of several pages, of which only the first page is read: 0.tif (5 pages)"
    assert any(w.startswith(note) for w in splits.info["warnings"])
    assert "warning: " + note in splits.info["description"]
    assert any(w.startswith(note) for w in check(tmp_path).warnings)


def test_read_counts_are_unchanged_by_notes(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = sources.read_array

    def counting(path, **kw):
        calls["n"] += 1
        return real(path, **kw)

    monkeypatch.setattr(sources, "read_array", counting)
    images, masks = blobs(4)
    for i, (img, msk) in enumerate(zip(images, masks)):
        write_image(tmp_path / "images" / f"{i}.png", img)
        write_image(tmp_path / "masks" / f"{i}.png", msk)
    load(DataConfig(source=str(tmp_path), image_size=32, cache=True))
    assert calls["n"] == 2 * (4 + 1)  # every pair once, the first one twice (the memory estimate)
