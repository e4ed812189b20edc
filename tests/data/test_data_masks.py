"""Mask kinds: binary 0/255 and 0/1, class ids, colour tables, palettes, ignored pixels, bad
values."""

from __future__ import annotations

import numpy as np
import pytest
from datahelpers import blobs

from segsearch.data import DataConfig, load
from segsearch.data.masks import decide, mask_stats, to_ids
from segsearch.errors import ConfigError, DataError


def _all_y(splits):
    return np.concatenate([splits.train.y, splits.val.y])


def _load(root, **kw):
    kw.setdefault("image_size", 32)
    kw.setdefault("val_fraction", 0.25)
    return load(DataConfig(source=str(root), **kw))


@pytest.mark.parametrize(
    "scale, ext",
    [(255, ".png"), (1, ".png"), (255, ".tif"), (255, ".bmp"), (255, ".gif"), (65535, ".png")],
)
def test_binary_masks(folder, scale, ext):
    images, masks = blobs(4)
    masks = [
        (m.astype(np.uint32) * scale).astype(np.uint16 if scale > 255 else np.uint8) for m in masks
    ]
    splits = _load(folder(images, masks, mask_ext=ext))
    assert splits.info["num_classes"] == 1
    assert set(np.unique(_all_y(splits))) == {0.0, 1.0}
    by_name = dict(
        zip(splits.train.names + splits.val.names, np.concatenate([splits.train.y, splits.val.y]))
    )
    np.testing.assert_array_equal(by_name["0.png"][..., 0], (masks[0] > 0).astype(np.float32))


def test_binary_with_two_classes_is_ids_0_1(folder):
    images, masks = blobs(4)
    splits = _load(folder(images, [m * 255 for m in masks]), num_classes=2)
    assert splits.info["num_classes"] == 2 and set(np.unique(_all_y(splits))) == {0.0, 1.0}


def test_class_ids_inferred_and_given(folder):
    images, masks = blobs(4, num_classes=4)
    root = folder(images, masks)
    assert _load(root).info["num_classes"] == 4
    assert set(np.unique(_all_y(_load(root)))) == {0.0, 1.0, 2.0, 3.0}
    assert _load(root, num_classes=6).info["num_classes"] == 6


def test_ids_out_of_range_name_files(folder):
    images, masks = blobs(4, num_classes=4)
    with pytest.raises(
        DataError,
        match=r"4 mask\(s\) hold values up to 3, but num_classes 3 allows ids 0..2: masks/0.png, "
        r"masks/1.png.*fix: set data.num_classes to 4",
    ):
        _load(folder(images, masks), num_classes=3)
    with pytest.raises(DataError, match=r"binary \(num_classes 1\) allows ids 0 and 1"):
        _load(folder(images, masks), num_classes=1, mask_kind="ids")


def test_ignore_value_becomes_minus_one(folder):
    images, masks = blobs(4, num_classes=3)
    for m in masks:
        m[:2, :] = 255
    splits = _load(folder(images, masks), ignore_value=255)
    y = _all_y(splits)
    assert splits.info["num_classes"] == 3
    assert set(np.unique(y)) == {-1.0, 0.0, 1.0, 2.0}
    assert np.all(y[:, :2] == -1)
    assert splits.info["ignored_fraction"] == pytest.approx(2 / 32)


def test_ids_up_to_150_offer_num_classes_beside_void(folder):
    images, masks = blobs(4, num_classes=3)
    for m in masks:
        m[:2, :] = 150  # ADE20K: ids 0..150, few of them in a few masks
    with pytest.raises(DataError, match=r"the value 150 .*fix: if 150 marks void pixels .*; if it "
                       r"is a class, .*, or keep them as they are with --set "
                       r"data.num_classes=151$"):
        _load(folder(images, masks))


def test_255_without_ignore_value_hints_at_it(folder):
    images, masks = blobs(4, num_classes=3)
    for m in masks:
        m[:2, :] = 255
    root = folder(images, masks)
    # the void value is suggested first, then data.values (not colours) for grey masks
    with pytest.raises(
        DataError,
        match=r"the masks hold class ids 0, 1, 2 and the value 255 \(in masks/0.png, "
        r".*\); fix: if 255 marks void pixels \(unlabelled, ignored in training\), "
        r"--set data.ignore_value=255; if it is a class, map the values to ids with "
        r"--set 'data.values=\{0: 0, 1: 1, 2: 2, 255: 3\}'$",
    ):
        _load(root)
    # num_classes given: a lone value above the ids is a void label, not a reason for 256 classes
    with pytest.raises(
        DataError,
        match=r"hold values up to 255, but num_classes 5 allows ids 0..4: .*fix: if 255 marks "
        r"void pixels .*--set data.ignore_value=255; if it is a class, set "
        r"data.num_classes to 256$",
    ):
        _load(root, num_classes=5)
    for m in masks:
        m[2, :] = 254
    with pytest.raises(
        DataError,
        match=r"fix: if 254, 255 mark void pixels, map them to -1 with --set "
        r"'data.values=\{0: 0, 1: 1, 2: 2, 254: -1, 255: -1\}'; if they are classes",
    ):
        _load(folder(images, masks), num_classes=3)


def test_rgb_colour_table(folder):
    images, masks = blobs(4, num_classes=3)
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    rgb = [palette[m] for m in masks]
    table = {"#000000": 0, "#ff0000": 1, "0,255,0": 2}
    splits = _load(folder(images, rgb), colors=table)
    assert splits.info["num_classes"] == 3
    by_name = dict(zip(splits.train.names + splits.val.names, _all_y(splits)))
    np.testing.assert_array_equal(by_name["1.png"][..., 0], masks[1])
    # list form, position = class id, and -1 for an ignored colour
    splits = _load(folder(images, rgb), colors={"#000000": 0, "#ff0000": 1, "#00ff00": -1})
    assert splits.info["num_classes"] == 1 and -1.0 in _all_y(splits)


def test_unknown_colour_and_colour_without_table(folder):
    images, masks = blobs(4, num_classes=3)
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    rgb = [palette[m] for m in masks]
    root = folder(images, rgb)
    with pytest.raises(
        DataError,
        match=r"1 mask colour\(s\) are not in data.colors: #0000ff in masks/0.png, masks/1.png, "
        r"masks/2.png.*fix: add them",
    ):
        _load(root, colors={"#000000": 0, "#ff0000": 1})
    with pytest.raises(
        DataError,
        match=r"mask\(s\) are in colour, e.g. .* with 3 colours; fix: give each colour its "
        r"class id \(-1 ignores one\), e.g. --set 'data.colors=\{\"#000000\": 0, "
        r"\"#0000ff\": 1, \"#ff0000\": 2\}', or save",
    ):
        _load(root)


def test_grey_levels_through_colour_table(folder):
    images, masks = blobs(4, num_classes=3)
    grey = [(m * 127).astype(np.uint8) for m in masks]  # 0, 127, 254
    with pytest.raises(
        DataError,
        match=r"mask values 0, 127, 254 look like grey levels.*fix: map them to class ids "
        r"with --set 'data.values=\{0: 0, 127: 1, 254: 2\}'",
    ):
        _load(folder(images, grey))
    splits = _load(folder(images, grey), colors={0: 0, 127: 1, 254: 2})
    assert set(np.unique(_all_y(splits))) == {0.0, 1.0, 2.0}


def test_indexed_palette_masks_are_ids(folder, tmp_path):
    from PIL import Image

    images, masks = blobs(4, num_classes=3)
    root = folder(images, masks)
    for i, m in enumerate(masks):
        p = Image.fromarray(m, mode="P")
        p.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (253 * 3))
        p.save(root / "masks" / f"{i}.png")
    splits = _load(root)
    assert splits.info["num_classes"] == 3 and set(np.unique(_all_y(splits))) == {0.0, 1.0, 2.0}


def test_jpeg_masks_are_refused_in_auto_and_thresholded_in_binary(folder):
    images, masks = blobs(4, size=(64, 64))
    root = folder(images, [m * 255 for m in masks], mask_ext=".jpg")
    with pytest.raises(
        DataError,
        match=r"intermediate values .*as JPEG compression leaves.*fix: save the masks losslessly "
        r".*mask_kind: binary",
    ):
        _load(root)
    splits = _load(root, mask_kind="binary", image_size=64)
    y = _all_y(splits)
    assert set(np.unique(y)) == {0.0, 1.0}
    by_name = dict(zip(splits.train.names + splits.val.names, y))
    assert np.mean(by_name["0.png"][..., 0] == masks[0]) > 0.98


def test_instance_masks_make_every_object_foreground(folder):
    images, masks = blobs(4, num_classes=2)
    numbered = []
    for m in masks:  # GlaS: each object its own id (1, 2, ...)
        n = m.astype(np.uint8) * 1
        n[: n.shape[0] // 2] *= 3
        numbered.append(n)
    assert _load(folder(images, numbered)).info["num_classes"] == 4  # ids read as classes
    splits = _load(folder(images, numbered), mask_kind="instances")
    assert splits.info["num_classes"] == 1
    assert splits.info["mask_kind"] == "instance ids, every value above 0 is foreground"
    by_name = dict(zip(splits.train.names + splits.val.names, _all_y(splits)))
    assert np.array_equal(by_name["0.png"][..., 0], masks[0].astype(np.float32))


def test_float_and_16bit_id_masks(folder):
    images, masks = blobs(4, num_classes=3)
    root = folder(images, [m.astype(np.float32) for m in masks], mask_ext=".tif")
    assert _load(root).info["num_classes"] == 3
    root = folder(
        images, [m.astype(np.uint16) for m in masks], mask_ext=".tif", root=root.parent / "u16"
    )
    assert set(np.unique(_all_y(_load(root)))) == {0.0, 1.0, 2.0}
    bad = [m.astype(np.float32) + 0.5 for m in masks]
    with pytest.raises(DataError, match=r"non-integer or negative values"):
        _load(folder(images, bad, mask_ext=".tif", root=root.parent / "f"))


def test_decide_and_to_ids_directly():
    m = np.array([[0, 255], [255, 0]], np.uint8)
    rule = decide([mask_stats(m, "m.png")])
    assert rule.kind == "binary" and rule.num_classes == 1
    np.testing.assert_array_equal(to_ids(m, rule, "m.png"), [[0, 1], [1, 0]])
    with pytest.raises(ConfigError, match="class id 4 does not fit num_classes 3"):
        decide(
            [mask_stats(m, "m.png")], colors=(((0, 0, 0), 0), ((255, 255, 255), 4)), num_classes=3
        )
