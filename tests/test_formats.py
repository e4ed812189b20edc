"""Export formats (segsearch.formats): SavedModel, ONNX and LiteRT files written with the export,
checked against the Keras model, run by ``segsearch predict``; the space file's export.formats."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_export import train_tiny_unet

from segsearch import formats
from segsearch.errors import ConfigError, StudyError
from segsearch.export import MANIFEST, export_study
from segsearch.records import TrialRecord

ONNX = all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not ONNX, reason="the onnx extra is not installed: pip install "
                                                 "'segsearch[onnx]' (tf2onnx, onnx, onnxruntime)")
ALL = ("keras", "saved_model", "onnx", "litert") if ONNX else ("keras", "saved_model", "litert")
RUNTIMES = ["model.onnx", "model.tflite"] if ONNX else ["model.tflite"]


def _config(study_dir: Path, **export):
    from segsearch.spacefile import load_config

    return load_config({"study": "fmt", "architecture": "unet", "data": {"image_size": 32},
                        "export": {"overlays": 0, **export}},
                       study_dir=study_dir, check_space=False)


def _part(x, y):
    from segsearch.data.dataset import Part

    return Part([f"img{i}.png" for i in range(len(x))], (32, 32), 1, arrays=(x, y))


def _export(config, model_path, part):
    best = TrialRecord(1, "complete", "unet", {"depth": 2, "filters": 4}, 0.5, {"val_dice": 0.5},
                       epochs=1, best_epoch=1)
    config.study_dir.mkdir(parents=True, exist_ok=True)
    return export_study(config.study_dir, config=config, model_path=model_path, best=best,
                        final={"trial": 1, "epochs": 0}, records=[best], val=part)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny real U-Net (32x32, 4 filters, depth 2) trained one epoch, saved; and its data."""
    return train_tiny_unet(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """best/ of a study exported with every format (ONNX when the extra is installed)."""
    path, x, y = trained
    config = _config(tmp_path_factory.mktemp("study") / "fmt", formats=list(ALL))
    return _export(config, path, _part(x, y))


def test_every_format_is_written_and_recorded(exported):
    manifest = json.loads((exported / MANIFEST).read_text())
    for fmt in ALL:
        assert (exported / formats.FILES[fmt]).exists(), fmt
        assert manifest["files"][fmt if fmt != "keras" else "model"] == formats.FILES[fmt]
    checks = yaml.safe_load((exported / "metrics.yaml").read_text())["formats"]
    assert checks["tolerance"] == formats.TOLERANCE and checks["images"] == 6
    assert list(checks["formats"]) == list(ALL)
    for fmt, result in checks["formats"].items():
        assert result["file"] == formats.FILES[fmt]
        assert 0.0 <= result["max_abs_difference"] < 1e-4, (fmt, result)
        assert result["within_tolerance"] is True
    assert checks["formats"]["keras"]["max_abs_difference"] == 0.0  # the same weights reloaded
    assert not list(exported.parent.glob(".best.*"))
    (line,) = formats.summary_lines(checks)
    assert "on 6 validation images" in line and "model.tflite" in line
    assert formats.warning_lines(checks) == []


@pytest.mark.parametrize("name", RUNTIMES)
def test_exported_file_loads_and_matches_keras(exported, name):
    import keras

    reference = keras.saving.load_model(exported / "model.keras")
    runtime = formats.load_runtime(exported / name)
    assert runtime.input_shape == (None, 32, 32, 1) and runtime.output_shape == (None, 32, 32, 1)
    x = np.random.default_rng(5).random((3, 32, 32, 1)).astype("float32")
    want = reference.predict(x, verbose=0)
    np.testing.assert_allclose(runtime.predict(x, batch_size=2), want, atol=1e-5)
    np.testing.assert_allclose(runtime.predict_on_batch(x[:1]), want[:1], atol=1e-5)


@needs_onnx
def test_onnx_alone_from_a_fresh_copy(trained, tmp_path):
    """export_model's copy of the model never ran: Keras's ONNX export needs it called once."""
    import keras

    from segsearch.export import export_model

    model = keras.saving.load_model(trained[0])
    files = export_model(model, tmp_path / "out", formats=("keras", "onnx"))
    assert files == {"model": "model.keras", "onnx": "model.onnx"}
    checks = formats.check(model, tmp_path / "out", ("keras", "onnx"), trained[1][:2])
    assert checks["formats"]["onnx"]["max_abs_difference"] < 1e-4


def test_a_difference_above_the_tolerance_is_a_warning(exported):
    """check() against a reference that is off by 0.01: flagged, and said in a warning line."""

    class Shifted:  # called as a Keras model is
        def __init__(self, runtime):
            self.runtime = runtime

        def __call__(self, x, training=False):
            return self.runtime.predict(x) + 0.01

    x = np.random.default_rng(1).random((2, 32, 32, 1)).astype("float32")
    shifted = Shifted(formats.load_runtime(exported / "model.tflite"))
    checks = formats.check(shifted, exported, ["litert"], x)
    result = checks["formats"]["litert"]
    assert result["max_abs_difference"] == pytest.approx(0.01, abs=1e-4)
    assert result["within_tolerance"] is False
    (warning,) = formats.warning_lines(checks)
    assert "model.tflite differs from the Keras model by up to 1.0e-02" in warning
    assert "tolerance 1.0e-03" in warning


def _images(folder: Path) -> Path:
    rng = np.random.default_rng(3)
    folder.mkdir()
    for name, shape in (("a.png", (45, 37)), ("b.png", (32, 32)), ("c.png", (70, 50))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / name)
    return folder


def _same_masks(out_a: Path, out_b: Path, probabilities: dict[str, np.ndarray]) -> None:
    """The masks agree wherever the Keras probability is not within 1e-4 of the 0.5 threshold."""
    for name, prob in probabilities.items():
        a = np.array(Image.open(out_a / name))
        b = np.array(Image.open(out_b / name))
        assert a.shape == b.shape == prob.shape[:2]
        tie = np.abs(prob[..., 0] - 0.5) < 1e-4
        np.testing.assert_array_equal(a[~tie], b[~tie])


@pytest.mark.parametrize("mode", ["resize", "patch"])
def test_predict_with_onnx_and_tflite_gives_the_keras_masks(exported, tmp_path, mode):
    """Resize mode (the stored config) and patch mode (a config.yaml saying so: 32x32 windows
    over each whole image): the same masks and, within 1e-5, the same probabilities."""
    from segsearch.data.dataset import fit_channels, to_float
    from segsearch.data.sources import read_array
    from segsearch.predict import _load, _predict_probabilities, predict

    best = tmp_path / "best"
    shutil.copytree(exported, best)
    if mode == "patch":
        stored = yaml.safe_load((best / "config.yaml").read_text())
        stored["data"]["resize"] = "patch"
        (best / "config.yaml").write_text(yaml.safe_dump(stored))
    images = _images(tmp_path / "images")
    predict(best, images, tmp_path / "keras")  # the folder picks model.keras
    keras_model = _load(best / "model.keras")
    probabilities = {}
    for file in sorted(images.iterdir()):
        x = fit_channels(to_float(read_array(file), str(file)), 1)
        probabilities[file.name] = _predict_probabilities(keras_model, x, (32, 32), mode)
    for name in RUNTIMES:
        out = tmp_path / name
        written = predict(best / name, images, out)
        assert sorted(p.name for p in written) == ["a.png", "b.png", "c.png"]
        _same_masks(tmp_path / "keras", out, probabilities)
        runtime = _load(best / name)
        for file in sorted(images.iterdir()):
            x = fit_channels(to_float(read_array(file), str(file)), 1)
            np.testing.assert_allclose(_predict_probabilities(runtime, x, (32, 32), mode),
                                       probabilities[file.name], atol=1e-5)


def test_missing_extra_is_one_message_and_nothing_is_written(trained, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tf2onnx", "onnxruntime") else
                        real(name, *a))
    with pytest.raises(ConfigError, match=r"export.formats: onnx needs tf2onnx, onnxruntime, not "
                                          r"installed; pip install 'segsearch\[onnx\]'"):
        formats.require(["onnx"])
    path, x, y = trained
    config = _config(tmp_path / "fmt", formats=["onnx"])
    with pytest.raises(ConfigError, match=r"segsearch\[onnx\]"):
        _export(config, path, _part(x, y))
    assert list(config.study_dir.iterdir()) == []  # no best/, no temporary folder
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"m.onnx: running an ONNX model needs onnxruntime"):
        formats.load_runtime(tmp_path / "m.onnx")


def test_formats_another_backend_cannot_write(monkeypatch):
    monkeypatch.setattr(formats, "_backend", lambda: "jax")
    assert formats.require(None) == ("keras",)  # the default: keras alone there, as before
    with pytest.raises(ConfigError, match="litert is written on the TensorFlow backend only "
                                          r"\(KERAS_BACKEND is jax\)"):
        formats.require(["litert"])
    monkeypatch.setattr(formats, "_backend", lambda: "tensorflow")
    assert formats.require(None) == ("keras", "saved_model")
    assert formats.require(["litert"]) == ("keras", "litert")


def test_a_failed_conversion_keeps_the_previous_export(exported, trained, tmp_path,
                                                       monkeypatch):
    path, x, y = trained
    config = _config(tmp_path / "fmt", formats=["litert"])
    first = shutil.copytree(exported, config.study_dir / "best")
    (first / "model.tflite").unlink()
    before = (first / MANIFEST).read_text()
    monkeypatch.setitem(formats._KERAS_FORMAT, "litert", "no_such_format")
    with pytest.raises(StudyError, match="model.tflite: Keras could not write the litert export "
                                         r"\(ValueError: .*\); remove litert from export.formats"):
        _export(config, path, _part(x, y))
    assert (first / MANIFEST).read_text() == before and not (first / "model.tflite").exists()
    assert sorted(p.name for p in config.study_dir.iterdir()) == ["best"]


def test_unreadable_runtime_file_is_one_message(tmp_path):
    (tmp_path / "model.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ConfigError, match=r"model.tflite: cannot open the model \("):
        formats.load_runtime(tmp_path / "model.tflite")
    from segsearch.predict import find_model

    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"not a .keras, .onnx or .tflite model file"):
        find_model(tmp_path / "model.pt")
    assert find_model(tmp_path / "model.tflite") == tmp_path / "model.tflite"


# ----------------------------------------------------------------------------------- space file
def test_export_formats_in_the_space_file(tmp_path):
    from segsearch.spacefile import load_config

    def export(**section):
        return _config(tmp_path / "s", **section).export

    assert export().formats is None  # the default: keras + saved_model on TensorFlow
    assert export(formats=["onnx", "keras", "litert"]).formats == ("keras", "onnx", "litert")
    assert export(formats="litert, onnx").formats == ("keras", "onnx", "litert")
    assert export(formats=[]).formats == ("keras",)
    # export.saved_model, deprecated: false drops it, true adds it; then it is read into formats
    assert export(saved_model=False).formats == ("keras",)
    assert export(saved_model=True).formats is None
    assert export(saved_model=True, formats=["onnx"]).formats == ("keras", "saved_model", "onnx")
    assert export(saved_model=False, formats=["saved_model"]).formats == ("keras",)
    assert export(saved_model=False).saved_model is None
    with pytest.raises(ConfigError, match=r"export.formats: unknown format 'onx'; did you mean "
                                          r"'onnx'\? Valid: keras, saved_model, onnx, litert"):
        export(formats=["onx"])
    with pytest.raises(ConfigError, match=r"--set export.formats=3: export.formats: must be a "
                                          r"list"):
        load_config("unet", sets=["export.formats=3"], check_space=False)
    with pytest.raises(ConfigError, match=r"export.saved_model: must be true or false"):
        export(saved_model="yes please")
    config = load_config("unet", sets=["export.formats=[litert]", "export.saved_model=false"],
                         study_dir=tmp_path / "u", check_space=False)
    assert config.export.formats == ("keras", "litert")
    again = load_config(config.to_dict(), study_dir=config.study_dir, check_space=False)
    assert again == config and again.to_dict()["export"]["formats"] == ["keras", "litert"]


def test_run_refuses_a_format_it_cannot_write_before_the_search(tmp_path, monkeypatch):
    """segsearch run with export.formats: onnx and the extra missing: one line, exit 2, no study
    folder (nothing trained first)."""
    import contextlib
    import io

    from segsearch.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", "unet", "--study-dir", str(tmp_path / "s"), "--trials", "1",
                     "--epochs", "1", "--image-size", "32", "--set", "export.formats=onnx"])
    assert code == 2 and err.getvalue().count("\n") == 1, err.getvalue()
    assert "export.formats: onnx needs onnxruntime, not installed; pip install " \
           "'segsearch[onnx]'" in err.getvalue()
    assert not (tmp_path / "s").exists()
