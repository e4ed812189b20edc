"""Data sets laid out as they are downloaded, read in place: DRIVE, CRACK500 (.mat), Data Science
Bowl 2018 (one folder per case), crop/weed colour masks, street scenes with a void label."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from datahelpers import (
    DOWNLOADED,
    blobs,
    write_cases,
    write_colour,
    write_crack,
    write_downloaded,
    write_drive,
    write_image,
    write_void,
)

from segsearch.data import DataConfig, check, load
from segsearch.data.sources import Pair, read_mask, read_mat, search_below
from segsearch.errors import ConfigError, DataError

DRIVE_LABELS = {
    "images_dir": "training/images",
    "masks_dir": "training/1st_manual",
    "pair": r"^(\d+)_",
}


def _both(source, **options):
    """check() and load() of one configuration; both must read it, with the same class shares."""
    config = DataConfig(source=str(source), image_size=None, val_fraction=0.25, **options)
    report = check(config)
    assert report.ok, (report.errors, report.stop)
    splits = load(config)
    shares = report.to_dict()["classes"]["frequencies"]
    assert shares == pytest.approx(splits.info["class_frequencies"], abs=1e-6)
    return report, splits


# ----------------------------------------------------------------------------------- DRIVE
def test_drive_labels_with_nested_folders_and_pair(tmp_path):
    root, shares = write_drive(tmp_path / "DRIVE")
    report, splits = _both(root, **DRIVE_LABELS)
    assert report.to_dict()["classes"]["frequencies"] == pytest.approx(shares, abs=1e-6)
    assert report.to_dict()["counts"]["pairs"] == 4
    assert (
        report.fingerprint["layout"]
        == r"training/images/ + training/1st_manual/, paired by data.pair '^(\d+)_'"
    )
    assert not any("same for every image" in w for w in report.warnings)
    assert splits.info["image_size"] == [40, 48] and splits.info["channels"] == 3  # LZW RGB TIFFs
    assert sorted(splits.split["train"] + splits.split["val"]) == [
        f"{n}_training.tif" for n in (21, 22, 23, 24)
    ]


def test_drive_root_says_which_folders_to_set(tmp_path):
    root, _ = write_drive(tmp_path / "DRIVE")
    with pytest.raises(
        DataError,
        match=r"the images are one level down, in training/; fix: say which folders to "
        r"read: --set data.images_dir=training/images --set data.masks_dir=training/"
        r"1st_manual \(other mask folders: training/mask/\)",
    ):
        check(root)


def test_drive_field_of_view_masks_are_never_paired_silently(tmp_path):
    root, _ = write_drive(tmp_path / "DRIVE")
    config = DataConfig(source=str(root), images_dir="training/images", image_size=32)
    report = check(config)
    text = "\n".join(report.warnings)
    assert ("2 candidate mask folders: training/1st_manual/ (0 pairs), training/mask/ (4 pairs); "
            "used training/mask/; to use another: --set data.masks_dir=training/1st_manual "
            "--set 'data.pair=^(\\d+)_' (it pairs 4 images)") in text
    assert "the masks in training/mask/ are (nearly) the same for every image" in text
    assert "field-of-view" in text
    info = load(config).info  # run says so too, on its "Data:" line
    assert any("the masks in training/mask/ are (nearly) the same" in w for w in info["warnings"])
    assert "warning: 2 candidate mask folders" in info["description"]


def test_a_wrong_nested_folder_names_the_key(tmp_path):
    root, _ = write_drive(tmp_path / "DRIVE")
    with pytest.raises(
        DataError,
        match=r"no such folder \(data.masks_dir 'training/2nd_manual', relative to data.source "
        r".*its subfolders: training/\)",
    ):
        load(
            DataConfig(
                source=str(root), images_dir="training/images", masks_dir="training/2nd_manual"
            )
        )


def test_pair_that_gives_two_images_one_key(tmp_path):
    root, _ = write_drive(tmp_path / "DRIVE")
    with pytest.raises(
        DataError,
        match=r"data.pair '\^\(\\d\)' gives two images the key '2' \(21_training.tif and "
        r"22_training.tif\); fix",
    ):
        load(DataConfig(source=str(root), images_dir="training/images",
                        masks_dir="training/1st_manual", pair=r"^(\d)"))


def test_default_pairing_strips_common_mask_suffixes(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[:4] = 1
    for i, suffix in enumerate(["", "_mask", "_label", "_labels", "_gt", "_manual1", "_annotation",
                                "_segmentation", "-m"]):
        write_image(tmp_path / "images" / f"s{i}.png", mask * 100)
        write_image(tmp_path / "masks" / f"s{i}{suffix}.png", mask)
    config = DataConfig(source=str(tmp_path), image_size=16, mask_suffix="-m")
    splits = load(config)
    assert splits.info["counts"]["total"] == 9 and splits.info["class_frequencies"] == [0.75, 0.25]


def test_no_pair_at_all_is_an_error_that_suggests_data_pair(tmp_path):
    root, _ = write_drive(tmp_path / "DRIVE")
    with pytest.raises(
        DataError,
        match=r"no image pairs with a mask in .*1st_manual \(images 21_training.tif, "
        r"22_training.tif, 23_training.tif and 1 more; masks 21_manual1.gif, .*\); "
        r"fix: .*give data.pair, a regular expression",
    ):
        load(
            DataConfig(
                source=str(root), images_dir="training/images", masks_dir="training/1st_manual"
            )
        )


# ----------------------------------------------------------------------------------- .mat
@pytest.mark.parametrize("v73", [False, True], ids=["v5", "v7.3"])
def test_crack_mat_labels_with_mat_key_and_values(tmp_path, v73):
    root, shares = write_crack(tmp_path / "CRACK", v73=v73)
    with pytest.raises(
        DataError,
        match=r"crack_0.mat: holds 2 2-D integer arrays, so the mask is not clear; 2-D arrays "
        r"there: groundTruth.(Segmentation|Boundaries) \(24x32 uint8\), groundTruth."
        r"(Segmentation|Boundaries) \(24x32 uint8\); fix: .*--set data.mat_key=KEY",
    ):
        load(DataConfig(source=str(root), image_size=32))
    report, splits = _both(root, mat_key="groundTruth.Segmentation", values={1: 0, 2: 1},
                           class_names=["background", "crack"])
    assert report.to_dict()["classes"]["frequencies"] == pytest.approx(shares, abs=1e-6)
    # the size transposed back (v7.3)
    assert splits.info["num_classes"] == 1 and splits.info["image_size"] == [24, 32]
    skipped = "1 image(s) have no mask in {}: crack_4.jpg; they are skipped".format(
        root / "groundTruth"
    )
    assert skipped in "\n".join(report.warnings) and skipped in splits.info["description"]
    assert "0 background: 87.5%  1 crack: 12.5%" in report.format()


@pytest.mark.parametrize("v73", [False, True], ids=["v5", "v7.3"])
def test_the_one_integer_array_is_found_without_mat_key(tmp_path, v73):
    root, _ = write_crack(tmp_path / "CRACK", v73=v73, boundaries=False, extra_image=False)
    mask = read_mat(root / "groundTruth" / "crack_1.mat")
    assert mask.shape == (24, 32) and mask.dtype == np.uint8
    assert (
        np.array_equal(np.unique(mask), [1, 2]) and np.all(mask[7:10] == 2) and mask[6].max() == 1
    )


def test_mat_in_cells_structs_and_doubles(tmp_path):
    import scipy.io

    seg = np.ones((6, 8))  # MATLAB's default double
    seg[2:4] = 2
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = {"Segmentation": seg, "note": "annotator 1"}
    scipy.io.savemat(tmp_path / "one.mat", {"groundTruth": cell})
    np.testing.assert_array_equal(read_mat(tmp_path / "one.mat"), seg)
    two = np.empty((1, 2), dtype=object)
    two[0, 0], two[0, 1] = (
        {"Segmentation": seg.astype(np.uint16)},
        {"Segmentation": 3 - seg.astype(np.uint16)},
    )
    scipy.io.savemat(tmp_path / "two.mat", {"groundTruth": two})
    with pytest.raises(
        DataError,
        match=r"groundTruth\{1\}.Segmentation \(6x8 uint16\), groundTruth\{2\}.Segmentation",
    ):
        read_mat(tmp_path / "two.mat")
    np.testing.assert_array_equal(
        read_mat(tmp_path / "two.mat", "groundTruth{2}.Segmentation"), 3 - seg
    )
    with pytest.raises(
        DataError,
        match=r"data.mat_key 'groundTruth.Labels' names no 2-D numeric array; the file "
        r"holds: groundTruth\{1\}.Segmentation",
    ):
        read_mat(tmp_path / "two.mat", "groundTruth.Labels")
    (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataError, match=r"bad.mat: cannot read the MATLAB file"):
        read_mat(tmp_path / "bad.mat")


def test_a_value_outside_data_values_names_file_and_value(tmp_path):
    root, _ = write_crack(tmp_path / "CRACK", boundaries=False, extra_image=False)
    with pytest.raises(
        DataError,
        match=r"1 mask value\(s\) are not in data.values: 2 in groundTruth/crack_0.mat, "
        r"groundTruth/crack_1.mat, groundTruth/crack_2.mat and 1 more; fix: add them",
    ):
        load(DataConfig(source=str(root), image_size=32, values={1: 0}))


def test_values_compose_with_ignore_value_and_minus_one(tmp_path):
    root, _ = write_crack(tmp_path / "CRACK", boundaries=False, extra_image=False)
    # 2 (crack) ignored through the map: only background is labelled
    report, splits = _both(root, values={1: 0, 2: -1}, num_classes=2)
    assert splits.info["class_frequencies"] == [1.0, 0.0] and splits.info[
        "ignored_fraction"
    ] == pytest.approx(3 / 24)
    # ignore_value is checked first: it need not be in the map
    _, splits = _both(root, values={1: 0}, ignore_value=2, num_classes=2)
    assert splits.info["ignored_fraction"] == pytest.approx(3 / 24)
    with pytest.raises(ConfigError, match=r"data.values: class id 4 does not fit num_classes 2"):
        load(DataConfig(source=str(root), values={1: 0, 2: 4}, num_classes=2))


# ----------------------------------------------------------------------------------- cases
def test_one_folder_per_case_merges_object_masks(tmp_path):
    root, shares = write_cases(tmp_path / "dsb")
    report, splits = _both(root)
    assert report.to_dict()["classes"]["frequencies"] == pytest.approx(shares, abs=1e-6)
    assert report.fingerprint["layout"].startswith("one folder per case")
    assert splits.info["counts"]["total"] == 4 and splits.info["num_classes"] == 1
    # names are the real relative paths, images/ included
    assert sorted(splits.split["train"] + splits.split["val"]) == [
        f"case0{i}/images/case0{i}.png" for i in range(4)
    ]
    assert any("case04/images/case04.png; they are skipped (to pair them: give each case folder a "
               "masks/ folder" in w for w in report.warnings)
    case = root / "case01"
    merged = read_mask(Pair("x", case / "images" / "case01.png", case / "masks",
                            tuple(sorted((case / "masks").iterdir()))))
    assert merged.dtype == np.uint8 and set(np.unique(merged)) == {0, 1} and int(merged.sum()) == 60


def test_a_case_with_two_images_is_an_error(tmp_path):
    root, _ = write_cases(tmp_path / "dsb")
    write_image(root / "case00" / "images" / "second.png", np.zeros((32, 32), np.uint8))
    for case in ("case01", "case02", "case03", "case04"):
        write_image(root / case / "images" / "second.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DataError, match=r"the images are one level down"):
        load(DataConfig(source=str(root)))


# ----------------------------------------------------------------------------------- colours, void
def test_colour_masks_with_a_table_and_class_names(tmp_path):
    root, shares = write_colour(tmp_path / "weeds")
    colors = {"#000000": 0, "#00ff00": 1, "#ff0000": 2}
    report, splits = _both(
        root, mask_kind="rgb", colors=colors, class_names=["soil", "crop", "weed"]
    )
    assert report.to_dict()["classes"]["frequencies"] == pytest.approx(shares, abs=1e-6)
    assert "0 soil: 90.6%  1 crop: 6.2%  2 weed: 3.1%" in report.format()
    with pytest.raises(
        ConfigError, match=r"data.class_names: 2 names \(soil, crop\) but the masks have 3 classes"
    ):
        load(DataConfig(source=str(root), colors=colors, class_names=["soil", "crop"]))


def test_street_scenes_with_a_void_label(tmp_path):
    root, shares, ignored = write_void(tmp_path / "street")
    assert (
        "if 255 marks void pixels (unlabelled, ignored in training), --set data.ignore_value=255"
        in check(root).stop
    )
    report, splits = _both(root, ignore_value=255)
    assert report.to_dict()["classes"]["frequencies"] == pytest.approx(shares, abs=1e-6)
    assert report.to_dict()["classes"]["ignored_fraction"] == pytest.approx(ignored)
    assert splits.info["ignored_fraction"] == pytest.approx(ignored)
    assert re.search(r"ignored +12.50% of pixels \(value 255\)", report.format())


def test_identical_label_masks_are_warned_about(tmp_path):
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 8:20] = 255
    for i in range(5):
        write_image(tmp_path / "images" / f"{i}.png", np.full((32, 32), 10 * i, np.uint8))
        write_image(tmp_path / "labels" / f"{i}.png", mask)
    splits = load(DataConfig(source=str(tmp_path), image_size=32))
    assert any(w.startswith("the masks in labels/ are (nearly) the same for every image (their "
                            "foreground overlaps 100%") for w in splits.info["warnings"])


def _circle(size: tuple[int, int], r: float) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    return ((((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < r ** 2) * 255).astype(np.uint8)


def test_field_of_view_circles_of_two_radii_count_as_repeated():
    from segsearch.data.masks import foreground_iou, repeated_mask, signature

    # the cold trial's DRIVE copy: circles of radius 56 and 57 in turn (96.5% pixel agreement,
    # IoU ~0.96)
    fov = [signature(_circle((128, 120), 56 + i % 2)) for i in range(6)]
    assert 0.9 <= foreground_iou(fov[0], fov[1], 0) < 0.99
    assert repeated_mask(fov) is not None
    # label masks of different images: mostly background, little overlap -> not repeated
    rng = np.random.default_rng(0)
    labels = []
    for _i in range(6):
        m = np.zeros((128, 120), np.uint8)
        for _ in range(6):
            r, c = rng.integers(0, 110, 2)
            m[r:r + 12, c:c + 3] = 255
        labels.append(signature(m))
    assert repeated_mask(labels) is None


def test_a_folder_of_repeated_masks_is_never_picked_when_another_pairs(tmp_path):
    # mask/ holds one field-of-view circle per image (4 pairs); labels/ the labels, one missing (3
    # pairs): the folder that pairs most used to win
    for i in range(4):
        label = np.zeros((40, 48), np.uint8)
        label[:, 4 + 8 * i:8 + 8 * i] = 255
        write_image(tmp_path / "images" / f"{i}.png", (label // 2 + 10).astype(np.uint8))
        write_image(tmp_path / "mask" / f"{i}.png", _circle((40, 48), 19 + 0.5 * (i % 2)))
        if i < 3:
            write_image(tmp_path / "labels" / f"{i}.png", label)
    report = check(DataConfig(source=str(tmp_path), image_size=32))
    assert report.fingerprint["layout"] == "images/ + labels/, paired by file name"
    text = "\n".join(report.warnings)
    assert (
        "the masks in mask/ are (nearly) the same for every image" in text
        and "not used (it pairs 4 images)" in text
    )
    assert "used labels/" in text
    assert report.to_dict()["classes"]["frequencies"] == pytest.approx(
        [1 - 4 / 48, 4 / 48], abs=1e-6
    )
    # chosen by hand, the repeated folder is read (with the warning)
    report = check(DataConfig(source=str(tmp_path), image_size=32, masks_dir="mask"))
    assert report.fingerprint["layout"] == "images/ + mask/, paired by file name"
    assert any("the masks in mask/ are (nearly) the same" in w for w in report.warnings)


def test_a_misspelt_folder_gets_a_did_you_mean(tmp_path):
    root, _ = write_drive(tmp_path / "DRIVE")
    with pytest.raises(
        DataError,
        match=r"data.masks_dir 'training/1st_manul'.*fix: did you mean training/1st_manual\? "
        r"\(--set data.masks_dir=training/1st_manual\)",
    ):
        load(
            DataConfig(
                source=str(root), images_dir="training/images", masks_dir="training/1st_manul"
            )
        )
    with pytest.raises(DataError, match=r"did you mean training/1st_manual\?"):
        load(DataConfig(source=str(root), images_dir="training/images", masks_dir="1st_manul"))
    # the very name one level down beats a close name at the top ('trimaps' is not 'images')
    pets, _, _ = write_downloaded(tmp_path / "pets", "pets")
    with pytest.raises(DataError, match=r"did you mean annotations/trimaps\? \(--set "
                       r"data.masks_dir=annotations/trimaps\)"):
        load(DataConfig(source=str(pets), masks_dir="trimaps"))
    with pytest.raises(
        DataError, match=r"data.images_dir 'training/imgaes'.*did you mean training/images\?"
    ):
        load(
            DataConfig(
                source=str(root), images_dir="training/imgaes", masks_dir="training/1st_manual"
            )
        )


# ----------------------------------------------------------------------------------- val_source
def _drive_with_test(root):
    """write_drive's training/ and a test/ copy of its first two cases (01_test.tif ...)."""
    import shutil

    root, _ = write_drive(root)
    for path in sorted((root / "training").rglob("2[12]_*")):
        name = path.name.replace("training", "test").replace("21_", "01_").replace("22_", "02_")
        (root / "test" / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "test" / path.parent.name / name)
    return root


def test_val_source_equal_to_source_is_an_error(tmp_path):
    root = _drive_with_test(tmp_path / "DRIVE")
    config = dict(source=str(root), image_size=32, **DRIVE_LABELS)
    with pytest.raises(
        ConfigError,
        match=r"data.val_source: .*DRIVE: 4 of its 4 images are training images .*"
        r"fix: .*--set data.val_images_dir=FOLDER --set data.val_masks_dir=FOLDER",
    ):
        load(DataConfig(val_source=str(root), **config))
    # the same files through another path (a symlink) are found too
    (tmp_path / "alias").symlink_to(root)
    with pytest.raises(
        ConfigError,
        match=r"data.val_source: .*alias/training: 4 of its 4 images are training images",
    ):
        load(DataConfig(val_source=str(tmp_path / "alias" / "training"),
                        **{**config, "images_dir": "training/images"},
                        val_images_dir="images", val_masks_dir="1st_manual"))
    report = check(DataConfig(val_source=str(root), **config))
    assert not report.ok and report.stop.startswith("data.val_source:")
    assert "errors (1): load would stop at these" in report.format()


def test_drive_test_folder_as_validation(tmp_path):
    root = _drive_with_test(tmp_path / "DRIVE")
    config = DataConfig(source=str(root), image_size=32, val_source=str(root),
                        val_images_dir="test/images", val_masks_dir="test/1st_manual",
                        **DRIVE_LABELS)
    splits = load(config)
    assert splits.split["method"] == "folder"
    assert splits.split["val"] == ["01_test.tif", "02_test.tif"] and len(splits.split["train"]) == 4
    report = check(config)
    assert report.ok, (report.errors, report.stop)
    assert "only 4 readable pairs for training and 2 for validation (data.val_source)" in "\n".join(
        report.warnings
    )
    # errors about the validation folder name the val_ keys
    bad = dataclasses.replace(config, val_masks_dir="test/1st_manul")
    with pytest.raises(
        DataError,
        match=r"no such folder \(data.val_masks_dir 'test/1st_manul', relative to "
        r"data.val_source .*did you mean test/1st_manual\? "
        r"\(--set data.val_masks_dir=test/1st_manual\)",
    ):
        load(bad)
    report = check(bad)
    assert "errors (1)" in report.format() and "data.val_masks_dir" in report.format()
    with pytest.raises(
        DataError, match=r"no such folder; fix: give data.val_source an existing folder$"
    ):
        load(dataclasses.replace(config, val_source=str(tmp_path / "nope")))
    with pytest.raises(
        DataError, match=r"no such file; fix: give data.val_source an existing .npz"
    ):
        load(dataclasses.replace(config, val_source=str(tmp_path / "nope.npz")))
    with pytest.raises(
        ConfigError, match=r"data.val_images_dir: is set but data.val_source is not"
    ):
        DataConfig(source=str(root), val_images_dir="test/images")


# ----------------------------------------------------------------------------------- as downloaded
@pytest.mark.parametrize("name", sorted(DOWNLOADED))
def test_a_data_set_as_downloaded_is_read_from_the_folders_below_it(tmp_path, name):
    root, image_dir, mask_dir = write_downloaded(tmp_path / name, name)
    report, splits = _both(root)
    assert report.to_dict()["counts"]["pairs"] == 4
    assert report.fingerprint["layout"] == f"{image_dir}/ + {mask_dir}/, paired by file name"
    (note,) = [w for w in report.warnings if "no images/ + masks/ at the top" in w]
    assert note.startswith(f"no images/ + masks/ at the top of {root}: read {image_dir}/ + "
                           f"{mask_dir}/, the folders below it that pair the most images (4)")
    assert note.endswith("; to read others: --set data.images_dir=FOLDER --set "
                         "data.masks_dir=FOLDER")
    # VOC's instance masks pair as many images: the note says so
    assert ("also found: VOCdevkit/VOC2012/JPEGImages/ + VOCdevkit/VOC2012/SegmentationObject/ "
            "(4)" in note) == (name == "voc")
    # the labels, not the instance masks or another split's (written as 1 - mask)
    _, masks = blobs(4, (24, 32), seed=len(name))
    share = float(np.mean([m.mean() for m in masks]))
    assert report.to_dict()["classes"]["frequencies"][1] == pytest.approx(share, abs=1e-6)
    # the same folders set by hand read the same, without the note
    config = DataConfig(source=str(root), images_dir=image_dir, masks_dir=mask_dir)
    assert not any("no images/ + masks/ at the top" in w for w in check(config).warnings)


def test_the_search_below_never_takes_field_of_view_masks_and_leaves_the_error(tmp_path):
    root, _ = write_drive(tmp_path / "DRIVE")  # training/mask pairs by name, but is one mask
    assert search_below(root) is None
    with pytest.raises(DataError, match="the images are one level down"):
        load(DataConfig(source=str(root)))


def test_a_second_annotator_s_masks_are_neither_images_nor_labels(tmp_path):
    root = tmp_path / "CHASE_DB1"
    images, masks = blobs(4, (24, 32))
    for i, (image, mask) in enumerate(zip(images, masks)):
        write_image(root / f"Image_0{i}L.jpg", np.stack([image] * 3, -1))
        write_image(root / f"Image_0{i}L_1stHO.png", mask * 255)
        write_image(root / f"Image_0{i}L_2ndHO.png", (1 - mask) * 255)
    report, _ = _both(root)
    counts = report.to_dict()["counts"]
    assert counts["pairs"] == 4 and counts["lone_images"] == 0
    assert any("4 second annotator's mask(s) (Image_00L_2ndHO.png, Image_01L_2ndHO.png, "
               "Image_02L_2ndHO.png and 1 more) are not used" in w for w in report.warnings)
    share = float(np.mean([m.mean() for m in masks]))
    assert report.to_dict()["classes"]["frequencies"][1] == pytest.approx(share, abs=1e-6)


def test_the_search_below_never_hides_an_error_of_the_usual_layout(tmp_path):
    root, _, _ = write_downloaded(tmp_path / "kvasir", "kvasir")  # a good pair one level down
    images, masks = blobs(2)
    for name in ("0.png", "0.tif"):  # ... and a broken one at the top
        write_image(root / "images" / name, images[0])
    write_image(root / "masks" / "0.png", masks[0])
    with pytest.raises(DataError, match="two images share the name '0'"):
        load(DataConfig(source=str(root)))


def test_two_mask_folders_that_pair_alike_are_named_in_the_note(tmp_path):
    root = tmp_path / "MontgomerySet"  # the left and the right lung, one folder each
    images, masks = blobs(4)
    for i, (image, mask) in enumerate(zip(images, masks)):
        write_image(root / "CXR_png" / f"MCUCXR_000{i}_0.png", image)
        write_image(root / "ManualMask" / "leftMask" / f"MCUCXR_000{i}_0.png", mask * 255)
        write_image(root / "ManualMask" / "rightMask" / f"MCUCXR_000{i}_0.png", mask * 255)
    report = check(DataConfig(source=str(root), image_size=None))
    assert report.fingerprint["layout"] == ("CXR_png/ + ManualMask/leftMask/, paired by file "
                                            "name")
    assert any("also found: CXR_png/ + ManualMask/rightMask/ (4): check that these are the "
               "images and labels you want" in w for w in report.warnings)


def test_more_downloaded_names_pair(tmp_path):
    images, masks = blobs(3)
    for i, (image, mask) in enumerate(zip(images, masks)):  # CVC-ClinicDB, GlaS
        write_image(tmp_path / "CVC-ClinicDB" / "Original" / f"{i}.tif", image)
        write_image(tmp_path / "CVC-ClinicDB" / "Ground Truth" / f"{i}.tif", mask * 255)
        write_image(tmp_path / "glas" / f"train_{i}.bmp", image)
        write_image(tmp_path / "glas" / f"train_{i}_anno.bmp", mask)
    cvc = check(DataConfig(source=str(tmp_path / "CVC-ClinicDB"), image_size=None))
    assert cvc.fingerprint["layout"] == "Original/ + Ground Truth/, paired by file name"
    glas = check(DataConfig(source=str(tmp_path / "glas"), image_size=None))
    assert glas.to_dict()["counts"]["pairs"] == 3


def test_class_folders_of_images_and_masks_side_by_side_are_one_data_set(tmp_path):
    root = tmp_path / "Dataset_BUSI_with_GT"  # BUSI: benign/, malignant/, normal/
    images, masks = blobs(6)
    for i, (image, mask) in enumerate(zip(images, masks)):
        group = ("benign", "malignant", "normal")[i % 3]
        write_image(root / group / f"{group} ({i}).png", np.stack([image] * 3, -1))
        write_image(root / group / f"{group} ({i})_mask.png", mask * 255)
    write_image(root / "benign" / "benign (0)_mask_1.png", masks[1] * 255)  # a second lesion
    report, splits = _both(root)
    assert report.fingerprint["layout"] == ("one folder per group, masks named <image><suffix>: "
                                            "benign/ (2), malignant/ (2), normal/ (2)")
    assert sorted(splits.split["train"] + splits.split["val"])[:2] == [
        "benign/benign (0).png", "benign/benign (3).png"]
    assert report.to_dict()["counts"]["lone_images"] == 0
    assert any("1 further mask(s) of an image (benign/benign (0)_mask_1.png) are not read" in w
               for w in report.warnings)
    share = float(np.mean([m.mean() for m in masks]))
    assert report.to_dict()["classes"]["frequencies"][1] == pytest.approx(share, abs=1e-6)


def test_hrf_labels_beside_field_of_view_masks(tmp_path):
    root = tmp_path / "HRF"  # images/01_dr.JPG, manual1/01_dr.tif, mask/01_dr_mask.tif
    images, masks = blobs(4)
    fov = np.zeros((32, 32), np.uint8)
    fov[2:30, 2:30] = 255
    for i, (image, mask) in enumerate(zip(images, masks)):
        write_image(root / "images" / f"0{i}_dr.JPG", np.stack([image] * 3, -1))
        write_image(root / "manual1" / f"0{i}_dr.tif", mask * 255)
        write_image(root / "mask" / f"0{i}_dr_mask.tif", fov)
    report = check(DataConfig(source=str(root), image_size=None))
    assert report.fingerprint["layout"] == "images/ + manual1/, paired by file name"
    share = float(np.mean([m.mean() for m in masks]))
    assert report.to_dict()["classes"]["frequencies"][1] == pytest.approx(share, abs=1e-6)


def test_deepglobe_images_and_masks_side_by_side_with_an_image_suffix(tmp_path):
    root = tmp_path / "deepglobe"  # train/100034_sat.jpg + train/100034_mask.png; test/ images only
    images, masks = blobs(4)
    for i, (image, mask) in enumerate(zip(images, masks)):
        write_image(root / "train" / f"10003{i}_sat.jpg", np.stack([image] * 3, -1))
        write_image(root / "train" / f"10003{i}_mask.png", mask * 255)
        write_image(root / "test" / f"10003{i}_sat.jpg", np.stack([image] * 3, -1))
    report, splits = _both(root)
    assert report.fingerprint["layout"] == ("one folder per group, masks named <image><suffix>: "
                                            "train/ (4)")
    assert sorted(splits.split["train"] + splits.split["val"])[0] == "train/100030_sat.jpg"
    # the same folder given directly pairs by the image suffix too
    assert check(DataConfig(source=str(root / "train"))).to_dict()["counts"]["pairs"] == 4


def test_a_layout_not_found_names_the_folders_below_and_the_set_lines(tmp_path):
    root = tmp_path / "ETIS-LaribPolypDB"  # ETIS-LaribPolypDB/1.tif with GroundTruth/p1.tif
    images, masks = blobs(3)
    for i, (image, mask) in enumerate(zip(images, masks)):
        write_image(root / "ETIS-LaribPolypDB" / f"{i + 1}.tif", image)
        write_image(root / "GroundTruth" / f"p{i + 1}.tif", mask * 255)
    with pytest.raises(DataError, match=re.escape(
            "the folders below with image files: ETIS-LaribPolypDB/ (3), GroundTruth/ (3), but "
            "none pairs another by file name: read two of them with --set data.images_dir=FOLDER "
            "--set data.masks_dir=FOLDER, and data.pair when their file names differ")):
        load(DataConfig(source=str(root)))
    config = DataConfig(source=str(root), images_dir="ETIS-LaribPolypDB",
                        masks_dir="GroundTruth", pair=r"(\d+)")
    assert check(config).to_dict()["counts"]["pairs"] == 3


def test_split_folders_side_by_side_are_not_one_pool(tmp_path):
    root = tmp_path / "roboflow-export"  # train/, valid/, test/: X.jpg + X_mask.png each
    images, masks = blobs(8)
    for i, (image, mask) in enumerate(zip(images, masks)):
        split = ("train",) * 4 + ("valid",) * 2 + ("test",) * 2
        write_image(root / split[i] / f"img{i}.jpg", np.stack([image] * 3, -1))
        write_image(root / split[i] / f"img{i}_mask.png", mask * 255)
    report = check(DataConfig(source=str(root), image_size=None))
    assert report.to_dict()["counts"]["pairs"] == 4
    (note,) = [w for w in report.warnings if "no images/ + masks/ at the top" in w]
    assert note.endswith(f"read the images and masks side by side in train/ (4), the training "
                         f"split; not read: test/ (2), valid/ (2); to validate on valid/: --set "
                         f"data.val_source={root / 'valid'}")
    splits = load(DataConfig(source=str(root), val_source=str(root / "valid"), image_size=32))
    assert sorted(splits.split["val"]) == ["img4.jpg", "img5.jpg"]
    assert len(splits.split["train"]) == 4
