"""check(): the data set fingerprint, suggestions, warnings and errors a user sees before a
search."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datahelpers import blobs, write_image

from segsearch.data import check
from segsearch.data.check import suggest_size
from segsearch.errors import DataError


def test_isbi_report(isbi_dir):
    report = check(isbi_dir)
    d = report.to_dict()
    json.dumps(d)
    assert report.ok and d["counts"]["pairs"] == 30
    assert d["images"]["sizes"] == {"512x512": 30} and d["images"]["channels"] == {"1 (grey)": 30}
    assert d["images"]["bit_depths"] == {"8-bit": 30}
    assert d["masks"]["kind"] == "binary 0/255" and d["masks"]["num_classes"] == 1
    assert d["classes"]["frequencies"][1] == pytest.approx(0.78, abs=0.02)
    assert d["classes"]["images_with"] == [30, 30]
    assert d["suggested"] == {"image_size": [512, 512], "depth": [3, 5], "resize": "resize"}
    text = report.format()
    for needle in ("pairs            30", "512x512 x30", "8-bit x30",
                   "binary 0/255 -> num_classes 1", "1: 78.", "encoder depth 3..5",
                   "warnings (1)", "errors (0)",
                   "--image-size 128 trains on 128x128 patches of the 512x512 images"):
        assert needle in text, needle
    assert str(report) == text
    # 255 (cell interior) is read as foreground and is 78% of the pixels: flagged, with the fix
    (warning,) = report.warnings
    assert warning.startswith("majority foreground: class 1 (foreground) covers 78.")
    assert "--set 'data.values={0: 1, 255: 0}'" in warning and "val_mean_iou" in warning
    fixed = check(isbi_dir, values={0: 1, 255: 0}, class_names=["cell", "membrane"])
    assert fixed.ok and not fixed.warnings
    assert fixed.to_dict()["classes"]["frequencies"][1] == pytest.approx(0.22, abs=0.02)
    assert "1 membrane: 22." in fixed.format()
    # background 1: membrane (class 0) is what the objective scores; nothing to flag
    other = check(isbi_dir, background=1).to_dict()
    assert not other["warnings"] and other["classes"]["background"] == 1
    assert other["classes"]["foreground_per_image"]["median"] == pytest.approx(0.22, abs=0.02)
    # every class real: no majority "foreground" to flag either
    assert not check(isbi_dir, background=None).warnings


def test_warnings_for_jpeg_masks_tiny_foreground_and_few_pairs(folder):
    images, masks = blobs(6, size=(64, 64))
    for m in masks:
        m[:] = 0
        m[30:33, 30:32] = 1  # 6 of 4096 pixels
    masks[5][:] = 0
    report = check(folder(images, [m * 255 for m in masks], mask_ext=".jpg"), mask_kind="binary")
    text = "\n".join(report.warnings)
    assert report.ok, report.errors
    assert "masks are saved as JPEG" in text
    assert "tiny foreground: class 1 covers only" in text
    assert "1 of 6 masks have no foreground at all: 5.png" in text
    assert "only 6 readable pairs" in text


def test_classes_that_never_occur_are_one_warning(folder):
    images, masks = blobs(4, num_classes=3)
    root = folder(images, masks)
    (one,) = [w for w in check(root, num_classes=4).warnings if "never occur" in w]
    assert one == "class 3 never occurs in the masks; check num_classes and the masks"
    (many,) = [w for w in check(root, num_classes=151).warnings if "never occur" in w]
    assert many == ("148 of 151 classes never occur in the masks (3, 4, 5, 6, 7, 8, 9, 10 and "
                    "140 more); check num_classes and the masks")


def test_numbered_objects_are_flagged_with_the_instances_kind(folder):
    images, masks = blobs(5, size=(32, 32))
    numbered = []
    for i, m in enumerate(masks):  # ids 0..N, N from 1 to 5: one id per object
        n = np.zeros_like(m)
        for obj in range(1, i + 2):
            n[obj * 5:obj * 5 + 3, 2:8] = obj
        numbered.append(n)
    root = folder(images, numbered)
    (warning,) = [w for w in check(root).warnings if "numbered objects" in w]
    assert warning == ("the masks look like numbered objects, not classes: 5 of 5 hold exactly "
                       "the ids 0..N, with N from 1 to 5; if each id is one object, read every "
                       "object as foreground with --set data.mask_kind=instances")
    fixed = check(root, mask_kind="instances")
    assert fixed.to_dict()["masks"]["num_classes"] == 1
    assert not [w for w in fixed.warnings if "numbered objects" in w]
    # class masks: every mask holds the same classes, not flagged
    classes = check(folder(images, [m * 2 for m in blobs(5, size=(32, 32), num_classes=2)[1]]))
    assert not [w for w in classes.warnings if "numbered objects" in w]


def test_jpeg_intermediate_values_in_auto_mode(folder):
    images, masks = blobs(12, size=(64, 64))
    report = check(folder(images, [m * 255 for m in masks], mask_ext=".jpg"))
    assert not report.ok
    assert any(
        "as JPEG compression leaves" in e and "mask_kind: binary" in e for e in report.errors
    )
    assert "JPEG" in report.format()


def test_errors_are_collected_not_raised(folder):
    images, masks = blobs(12)
    root = folder(images, masks)
    (root / "masks" / "3.png").unlink()
    write_image(root / "masks" / "orphan.png", masks[0])
    (root / "images" / "5.png").write_bytes(b"broken")
    write_image(root / "masks" / "7.png", np.zeros((10, 10), np.uint8))
    report = check(root)
    text = report.format()
    # unpaired files are skipped with a warning; unreadable files and size mismatches stop a run
    assert not report.ok and len(report.errors) == 2, report.errors
    lone = next(w for w in report.warnings if "no mask" in w)
    assert "3.png" in lone and "orphan.png" in lone and "skipped" in lone
    assert any("5.png: cannot read the file" in e for e in report.errors)
    assert any(
        "7.png is 32x32 but its mask masks/7.png is 10x10 (height x width)" in e
        for e in report.errors
    )
    assert "errors (2): load would stop at these" in text
    # what run stops with
    assert report.stop is not None and "5.png: cannot read the file" in report.stop
    assert report.to_dict()["counts"] == {
        "lone_images": 1,
        "lone_masks": 1,
        "pairs": 11,
        "unreadable": 1,
    }


def test_sizes_channels_and_16bit_warnings(folder):
    images, masks = blobs(12, size=(40, 80), num_classes=3)
    images = [(im.astype(np.uint16) * 8) for im in images[:6]] + [
        np.stack([im] * 3, -1) for im in images[6:]
    ]
    report = check(folder(images, masks, image_ext=".tif"))
    d = report.to_dict()
    assert d["images"]["bit_depths"] == {"16-bit": 6, "8-bit": 6}
    assert d["images"]["channels"] == {"1 (grey)": 6, "3 (colour)": 6}
    assert d["masks"]["num_classes"] == 3 and len(d["classes"]["frequencies"]) == 3
    text = "\n".join(report.warnings)
    assert "16-bit image(s) use values below 4096" in text
    assert "some images are grey and some in colour" in text


def test_colour_masks_and_missing_folder(folder, tmp_path):
    images, masks = blobs(10, num_classes=3)
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    root = folder(images, [palette[m] for m in masks])
    assert not check(root).ok
    report = check(root, colors={"#000000": 0, "#ff0000": 1, "#00ff00": 2})
    assert report.ok and report.to_dict()["masks"]["num_classes"] == 3
    with pytest.raises(DataError, match="no such folder"):
        check(tmp_path / "nothing")


def test_npz_and_sample(tmp_path):
    images, masks = blobs(4, num_classes=3)
    np.savez(tmp_path / "d.npz", images=np.stack(images), masks=np.stack(masks))
    d = check(tmp_path / "d.npz").to_dict()
    assert (
        d["counts"]["pairs"] == 4
        and d["masks"]["num_classes"] == 3
        and d["layout"].startswith("arrays")
    )
    report = check("sample", image_size=32, num_classes=3, sample_count=8)
    assert report.to_dict()["synthetic"] is True
    assert "SYNTHETIC" in report.format()


def test_suggest_size():
    assert suggest_size([512] * 3, [512] * 3) == ((512, 512), (3, 5), "resize")
    # never below the architectures' smallest depth (2), even for small images
    assert suggest_size([100], [150]) == ((96, 128), (2, 3), "resize")
    assert suggest_size([32], [32]) == ((32, 32), (2, 2), "resize")
    assert suggest_size([100], [150], min_depth=3) == ((96, 128), (3, 3), "resize")
    assert suggest_size([2048], [2048]) == ((512, 512), (3, 5), "patch")
