"""segsearch.predict: masks at the original size, overlays, crop tiling, never overwriting."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from segsearch.errors import ConfigError, DataError, SegsearchError
from segsearch.predict import find_model, predict


def _save_model(folder: Path, *, classes: int = 1, probability: float = 0.6, size: int = 16,
                channels: int = 1, data: dict | None = None) -> Path:
    """A tiny model: a constant probability (sigmoid), or bright -> class 1, dark -> 2 (softmax)."""
    import keras

    inputs = keras.Input((size, size, channels))
    if classes == 1:
        bias = math.log(probability / (1 - probability))
        out = keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer="zeros",
                                  bias_initializer=keras.initializers.Constant(bias))(inputs)
    else:
        # logits: class 1 where the image is bright, class 2 where it is dark, class 0 never
        kernel = np.tile(np.array([-100.0, 100.0, -100.0])[:classes], (1, 1, channels, 1))
        bias = np.array([-100.0, -50.0, 0.0])[:classes]
        out = keras.layers.Conv2D(classes, 1, activation="softmax",
                                  kernel_initializer=keras.initializers.Constant(kernel),
                                  bias_initializer=keras.initializers.Constant(bias))(inputs)
    model = keras.Model(inputs, out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.keras"
    model.save(path)
    if data is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump({"architecture": "unet", "data": data}))
    return path


def _write_image(path: Path, shape: tuple[int, ...], value: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=shape, dtype=np.uint8) if value is None else \
        np.full(shape, value, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, arr)
    else:
        Image.fromarray(arr).save(path)
    return arr


@pytest.fixture(scope="module")
def binary_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_model(tmp_path_factory.mktemp("binary") / "best", probability=0.6)


def test_binary_masks_have_original_size_and_0_255(binary_model: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    _write_image(images / "grey.png", (20, 30))
    _write_image(images / "colour.jpg", (40, 12, 3))
    written = predict(binary_model, images, tmp_path / "out")
    assert [p.name for p in written] == ["colour.png", "grey.png"]
    grey = np.array(Image.open(tmp_path / "out" / "grey.png"))
    colour = np.array(Image.open(tmp_path / "out" / "colour.png"))
    assert grey.shape == (20, 30) and colour.shape == (40, 12)
    assert grey.dtype == np.uint8 and set(np.unique(grey)) == {255}  # p = 0.6 >= 0.5


def test_a_folder_of_case_folders(binary_model: Path, tmp_path: Path) -> None:
    """Data Science Bowl 2018's stage1_test/<id>/images/<id>.png: masks named by case id."""
    for case, shape in (("0a7d", (20, 30, 4)), ("1b2c", (12, 16, 4))):
        _write_image(tmp_path / "stage1_test" / case / "images" / f"{case}.png", shape)
    written = predict(binary_model, tmp_path / "stage1_test", tmp_path / "out", overlay=True)
    assert [p.name for p in written] == [
        "0a7d.png", "0a7d_overlay.png", "1b2c.png", "1b2c_overlay.png"
    ]
    assert np.array(Image.open(tmp_path / "out" / "0a7d.png")).shape == (20, 30)
    assert np.array(Image.open(tmp_path / "out" / "1b2c.png")).shape == (12, 16)


def test_masks_beside_their_images_are_not_segmented(binary_model: Path, tmp_path: Path) -> None:
    """BUSI's benign/: benign (1).png with benign (1)_mask.png and benign (1)_mask_1.png."""
    for name in ("benign (1).png", "benign (1)_mask.png", "benign (1)_mask_1.png",
                 "lone_mask.png", "tile_mask_2.png"):
        _write_image(tmp_path / "benign" / name, (16, 16))
    written = predict(binary_model, tmp_path / "benign", tmp_path / "out")
    # no image beside lone_mask.png or tile_mask_2.png: they may be images of those names
    assert [p.name for p in written] == ["benign (1).png", "lone_mask.png", "tile_mask_2.png"]


def test_threshold_decides_foreground(binary_model: Path, tmp_path: Path) -> None:
    _write_image(tmp_path / "a.png", (16, 16))
    predict(binary_model, tmp_path / "a.png", tmp_path / "out", threshold=0.7)
    assert set(np.unique(np.array(Image.open(tmp_path / "out" / "a.png")))) == {0}


def test_model_argument_may_be_file_best_folder_or_study(binary_model: Path,
                                                         tmp_path: Path) -> None:
    study = binary_model.parent.parent
    assert find_model(binary_model) == binary_model
    assert find_model(binary_model.parent) == binary_model
    assert find_model(study) == binary_model
    with pytest.raises(ConfigError, match="no such model"):
        find_model(tmp_path / "missing")
    with pytest.raises(ConfigError, match="holds no model.keras"):
        find_model(tmp_path)
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a .keras, .onnx or .tflite model file"):
        find_model(tmp_path / "weights.h5")


def test_never_overwrites_and_writes_nothing_when_refusing(binary_model: Path,
                                                           tmp_path: Path) -> None:
    images = tmp_path / "images"
    _write_image(images / "a.png", (16, 16))
    _write_image(images / "b.png", (16, 16))
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"mine")
    with pytest.raises(SegsearchError, match="b.png exists already and is kept"):
        predict(binary_model, images, out)
    assert (out / "b.png").read_bytes() == b"mine"
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]


def test_overlays_and_repeated_stems(binary_model: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    _write_image(images / "a.png", (16, 24, 3))
    _write_image(images / "a.tif", (10, 10))
    written = predict(binary_model, images, tmp_path / "out", overlay=True)
    names = sorted(p.name for p in written)
    assert names == ["a_png.png", "a_png_overlay.png", "a_tif.png", "a_tif_overlay.png"]
    overlay = np.array(Image.open(tmp_path / "out" / "a_png_overlay.png"))
    assert overlay.ndim == 3 and overlay.shape[-1] == 3 and overlay.dtype == np.uint8
    # the export's drawing: image | prediction, small images enlarged by a whole factor (256 // 24
    # = 10), so two panels of 240 px side by side, then the legend
    assert 2 * 240 < overlay.shape[1] < 2 * 240 + 100 and 160 < overlay.shape[0] < 160 + 150
    from segsearch.export import FALSE_POSITIVE, _palette

    colours = {tuple(c) for c in overlay.reshape(-1, 3).tolist()}
    assert tuple(int(v) for v in _palette(2)[1]) in colours  # the legend's foreground swatch
    assert FALSE_POSITIVE not in colours  # no truth: no errors panel


def test_multiclass_masks_hold_class_ids(tmp_path: Path) -> None:
    model = _save_model(tmp_path / "best", classes=3)
    image = np.zeros((12, 20), np.uint8)
    image[:, 10:] = 255  # right half bright -> class 1; left half dark -> class 2
    Image.fromarray(image).save(tmp_path / "x.png")
    predict(model, tmp_path / "x.png", tmp_path / "out")
    mask = np.array(Image.open(tmp_path / "out" / "x.png"))
    assert mask.shape == (12, 20)
    assert set(np.unique(mask[:, :9])) == {2} and set(np.unique(mask[:, 11:])) == {1}


def test_crop_mode_tiles_at_full_resolution(tmp_path: Path) -> None:
    model = _save_model(tmp_path / "best", classes=3, data={"resize": "crop",
                                                             "image_size": [16, 16]})
    image = np.zeros((40, 24), np.uint8)
    image[20:] = 255
    Image.fromarray(image).save(tmp_path / "big.png")
    predict(model, tmp_path / "big.png", tmp_path / "out")
    mask = np.array(Image.open(tmp_path / "out" / "big.png"))
    assert mask.shape == (40, 24)
    assert set(np.unique(mask[:20])) == {2} and set(np.unique(mask[20:])) == {1}


def test_input_errors(binary_model: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        predict(binary_model, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(DataError, match="no such image"):
        predict(binary_model, tmp_path / "nowhere", tmp_path / "out")
    _write_image(tmp_path / "a.png", (16, 16))
    with pytest.raises(ConfigError, match="does not fit this model"):
        predict(binary_model, tmp_path / "a.png", tmp_path / "out", image_size=32)
    with pytest.raises(ConfigError, match="threshold"):
        predict(binary_model, tmp_path / "a.png", tmp_path / "out", threshold=1.5)


@pytest.mark.parametrize("data", [{"resize": "patch", "image_size": [32, 32]},
                                  {"resize": "auto", "image_size": [32, 32]},
                                  {"resize": "patch", "image_size": [32, 32], "overlap": 0.25}])
def test_patch_mode_predicts_thin_lines_whole_at_the_input_size(tmp_path: Path, data) -> None:
    """A 300x340 image (no power of two divides it) through 32x32 windows: the mask has the
    image's size and, for a per-pixel model, exactly the per-pixel answer (no seams, no shift)."""
    from _thin import thin_lines

    model = _save_model(tmp_path / "best", classes=3, size=32, data=data)
    images, _ = thin_lines(1, (300, 340), seed=4)
    Image.fromarray(images[0]).save(tmp_path / "thin.png")
    predict(model, tmp_path / "thin.png", tmp_path / "out")
    mask = np.array(Image.open(tmp_path / "out" / "thin.png"))
    assert mask.shape == (300, 340)
    expected = np.where(images[0] / 255.0 > 0.25, 1, 2)  # the model: 100x - 50 > -100x
    np.testing.assert_array_equal(mask, expected)


def test_patch_mode_with_scale_writes_masks_at_the_input_size(tmp_path: Path) -> None:
    model = _save_model(tmp_path / "best", classes=3, size=32,
                        data={"resize": "patch", "image_size": [32, 32], "scale": 0.5})
    _write_image(tmp_path / "odd.png", (301, 97))
    _write_image(tmp_path / "small.png", (20, 25))  # smaller than a window, even before scaling
    predict(model, tmp_path, tmp_path / "out", overlay=True)
    assert np.array(Image.open(tmp_path / "out" / "odd.png")).shape == (301, 97)
    assert np.array(Image.open(tmp_path / "out" / "small.png")).shape == (20, 25)
    overlay = np.array(Image.open(tmp_path / "out" / "odd_overlay.png"))
    assert overlay.shape[0] > 301 and 2 * 97 < overlay.shape[1] < 2 * 97 + 100  # 2 panels


def _capture_overlays(monkeypatch) -> list[dict]:
    """Record what predict's overlays draw (the export's overlay_panel)."""
    import segsearch.export

    calls: list[dict] = []
    draw = segsearch.export.overlay_panel

    def recording(image, truth, pred, **kwargs):
        calls.append({"image": image, "truth": truth, "pred": pred, **kwargs})
        return draw(image, truth, pred, **kwargs)

    monkeypatch.setattr(segsearch.export, "overlay_panel", recording)
    return calls


def test_overlays_are_the_exports_with_class_names_and_no_truth_panel(tmp_path: Path,
                                                                      monkeypatch) -> None:
    calls = _capture_overlays(monkeypatch)
    model = _save_model(tmp_path / "best", classes=3, data={
        "class_names": ["sky", "road", "car"], "background": None})
    image = np.zeros((12, 20), np.uint8)
    image[:, 10:] = 255
    Image.fromarray(image).save(tmp_path / "x.png")
    predict(model, tmp_path / "x.png", tmp_path / "out", overlay=True)
    (call,) = calls
    assert call["truth"] is None and call["title"] == "x.png"
    assert call["class_names"] == ("sky", "road", "car") and call["background"] is None
    assert call["num_classes"] == 3 and call["pred"].shape == (12, 20)
    assert set(np.unique(call["pred"][:, 11:])) == {1}


def test_masks_add_truth_errors_and_the_score(tmp_path: Path, monkeypatch) -> None:
    """--masks: the true masks, read as training reads them (data.values stored with the
    model), give the overlay its truth and errors panels and the image's score in its title."""
    from segsearch.export import FALSE_POSITIVE

    calls = _capture_overlays(monkeypatch)
    model = _save_model(tmp_path / "best", probability=0.6, data={"values": {"0": 1, "255": 0}})
    images, masks = tmp_path / "images", tmp_path / "masks"
    _write_image(images / "a.png", (16, 16))
    truth = np.full((16, 16), 255, np.uint8)  # value 255 -> class 0
    truth[:4] = 0  # value 0 -> class 1: a quarter of the image
    masks.mkdir()
    Image.fromarray(truth).save(masks / "a_mask.png")  # a mask suffix pairs too
    written = predict(model, images, tmp_path / "out", masks=masks)  # overlays implied
    assert sorted(p.name for p in written) == ["a.png", "a_overlay.png"]
    (call,) = calls
    assert call["truth"].shape == (16, 16)
    assert (call["truth"][:4] == 1).all() and (call["truth"][4:] == 0).all()
    # the model says foreground (0.6) everywhere: dice 2 * 64 / (64 + 256) = 0.4
    assert call["title"] == "a.png   val_dice 0.4000 (this image)"
    overlay = np.array(Image.open(tmp_path / "out" / "a_overlay.png"))
    assert FALSE_POSITIVE in {tuple(c) for c in overlay.reshape(-1, 3).tolist()}
    assert overlay.shape[1] > 4 * 256  # image | truth | prediction | errors


def test_masks_missing_or_of_another_size_stop_before_writing(binary_model: Path,
                                                              tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    _write_image(images / "a.png", (16, 16))
    _write_image(images / "b.png", (16, 16))
    _write_image(masks / "a.png", (16, 16), value=255)
    with pytest.raises(DataError, match=r"holds no mask for b\.png"):
        predict(binary_model, images, tmp_path / "out", masks=masks)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="no such folder of masks"):
        predict(binary_model, images, tmp_path / "out", masks=tmp_path / "nowhere")
    _write_image(masks / "b.png", (8, 16), value=0)
    with pytest.raises(DataError, match="the mask is 8x16 but b.png is 16x16"):
        predict(binary_model, images, tmp_path / "out", masks=masks)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_predict_says_what_it_applies_besides_the_network(tmp_path) -> None:
    import yaml

    from segsearch.predict import describe_choices

    best = tmp_path / "best"
    best.mkdir()
    (best / "model.keras").write_bytes(b"")
    (best / "model.onnx").write_bytes(b"")
    (best / "hyperparameters.yaml").write_text(yaml.safe_dump({
        "tta": {"used": True, "transforms": ["rot0", "fliplr"], "available": ["rot0", "fliplr"]},
        "postprocess": {"rules": [{"class": 1, "rule": "largest"}], "background": 0}}))
    assert describe_choices(best) == ("test-time augmentation (2 transforms) and 1 "
                                      "post-processing rule")
    assert describe_choices(best / "model.onnx", False, False) == "the network's output as it is"
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "model.onnx").write_bytes(b"")
    said = describe_choices(loose / "model.onnx")
    assert said.startswith("the network's output as it is: no hyperparameters.yaml beside "
                           "model.onnx") and "best/ folder" in said
    assert "augmentation, threshold and post-processing are not known" in said
    assert describe_choices(loose / "model.onnx", threshold=0.4).startswith(
        "the network's output as it is at the threshold 0.4 (--threshold): no ")
