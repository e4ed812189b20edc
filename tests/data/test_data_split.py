"""Seeded splits, validation folders, and the recorded split reused by a resumed study."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datahelpers import blobs

from segsearch.data import DataConfig, load
from segsearch.data.split import make_split, val_count
from segsearch.errors import DataError


def test_make_split_is_deterministic_and_order_free():
    names = [f"{i}.png" for i in range(20)]
    a = make_split(names, val_fraction=0.25, seed=3)
    b = make_split(list(reversed(names)), val_fraction=0.25, seed=3)
    c = make_split(names, val_fraction=0.25, seed=4)
    assert a == b and a["val"] != c["val"]
    assert len(a["val"]) == 5 and sorted(a["train"] + a["val"]) == sorted(names)
    assert val_count(2, 0.01) == 1 and val_count(10, 0.99) == 9


def test_too_few_pairs(folder):
    images, masks = blobs(1)
    with pytest.raises(
        DataError,
        match=r"found 1 image/mask pair\(s\), but a train/validation split needs at least 2.*fix",
    ):
        load(DataConfig(source=str(folder(images, masks)), image_size=32))


def test_load_records_and_reuses_the_split(folder, tmp_path):
    images, masks = blobs(10)
    root = folder(images, masks)
    config = DataConfig(source=str(root), image_size=32, val_fraction=0.3, seed=5)
    first = load(config)
    assert first.split["method"] == "fraction" and len(first.split["val"]) == 3
    assert first.info["split"]["val"] == first.split["val"] == list(first.val.names)
    (tmp_path / "split.json").write_text(json.dumps(first.split))
    # another seed would draw another split; the record wins
    other = DataConfig(source=str(root), image_size=32, val_fraction=0.3, seed=6)
    assert load(other).split["val"] != first.split["val"]
    for record in (first.split, tmp_path / "split.json"):
        again = load(other, split=record)
        assert list(again.val.names) == first.split["val"]
        np.testing.assert_array_equal(again.val.x, first.val.x)


def test_changed_files_break_a_recorded_split(folder):
    images, masks = blobs(6)
    root = folder(images, masks)
    config = DataConfig(source=str(root), image_size=32)
    record = load(config).split
    (root / "images" / "5.png").unlink()
    (root / "masks" / "5.png").unlink()
    with pytest.raises(
        DataError,
        match=r"file\(s\) of the recorded (train|val) split are no longer there: 5.png; fix",
    ):
        load(config, split=record)
    record2 = load(config).split
    folder(images[:1], masks[:1], names=["new"], root=root)
    with pytest.raises(
        DataError, match=r"1 file\(s\) were added since the split was recorded: new.png"
    ):
        load(config, split=record2)
    with pytest.raises(DataError, match=r"'train' must be a list of file names"):
        load(config, split={"val": []})


def test_explicit_validation_folder(folder, tmp_path):
    images, masks = blobs(6)
    train_root = folder(images[:4], masks[:4], root=tmp_path / "train")
    val_root = folder(images[4:], masks[4:], root=tmp_path / "val", names=["0", "1"])
    config = DataConfig(source=str(train_root), val_source=str(val_root), image_size=32)
    splits = load(config)
    assert splits.split["method"] == "folder" and len(splits.train) == 4 and len(splits.val) == 2
    np.testing.assert_array_equal(splits.val.x[0, ..., 0], images[4] / np.float32(255))
    again = load(config, split=splits.split)
    assert again.split == splits.split
    with pytest.raises(
        DataError, match=r"used a validation folder .*but data.val_source is not set"
    ):
        load(DataConfig(source=str(train_root), image_size=32), split=splits.split)
