"""Export: the files of best/, a model that reloads without segsearch, and an atomic swap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from segsearch import export as export_mod
from segsearch.export import MANIFEST, export_study, recover
from segsearch.records import TrialRecord


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small real U-Net from the hypermodel (compiled with segsearch's losses, metrics), saved."""
    return train_tiny_unet(tmp_path_factory.mktemp("trained"))


def train_tiny_unet(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A U-Net (32x32, 4 filters, depth 2) trained one epoch on 6 images, saved in ``folder``:
    (model.keras, images, masks). tests/test_formats.py shares it."""
    import keras
    import keras_tuner

    from segsearch import hypermodels

    hm = hypermodels.get("unet", (32, 32, 1), 1, space={"filters": 4, "depth": 2},
                         jit_compile=False)
    model = hm.build(keras_tuner.HyperParameters())
    rng = np.random.default_rng(0)
    x = rng.random((6, 32, 32, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    y[0, :2, :2] = -1  # ignored pixels
    model.run_eagerly = True  # one epoch of two steps: eager costs less than tracing them
    model.fit(x, y, epochs=1, batch_size=3, verbose=0)
    path = folder / "model.keras"
    model.save(path)
    keras.backend.clear_session()
    return path, x, y


def _parts(trained):
    from segsearch.data.dataset import Part

    _, x, y = trained
    return Part([f"img{i}.png" for i in range(len(x))], (32, 32), 1, arrays=(x, y))


def _config(folder: Path):
    from segsearch.spacefile import load_config

    return load_config({"study": "exp", "architecture": "unet", "data": {"image_size": 32},
                        "export": {"overlays": 2, "saved_model": False}},
                       study_dir=folder / "exp", check_space=False)


@pytest.fixture
def parts(trained):
    return _parts(trained)


@pytest.fixture
def config(tmp_path):
    return _config(tmp_path)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """One export of the trained U-Net, shared by the tests that read it or start from a copy of
    it: (its configuration, best/)."""
    config = _config(tmp_path_factory.mktemp("exported"))
    return config, _export(config, trained, _parts(trained))


def _export(config, trained, parts, **kw):
    path, _, _ = trained
    best = TrialRecord(3, "complete", "unet", {"depth": 2, "filters": 4}, 0.5, {"val_dice": 0.5},
                       epochs=1, best_epoch=1)
    config.study_dir.mkdir(parents=True, exist_ok=True)
    return export_study(config.study_dir, config=config, model_path=path, best=best,
                        final={"trial": 3, "epochs": 0}, records=[best], val=parts, **kw)


def test_export_writes_every_file(exported, parts):
    config, best = exported
    assert best == config.study_dir / "best"
    names = sorted(p.name for p in best.iterdir())
    assert names == sorted(["config.yaml", MANIFEST, "hyperparameters.yaml", "metrics.yaml",
                            "model.keras", "overlays", "trials.csv"])
    hyper = yaml.safe_load((best / "hyperparameters.yaml").read_text())
    assert hyper["architecture"] == "unet" and hyper["params"] == {"depth": 2, "filters": 4}
    assert hyper["input_shape"] == [32, 32, 1] and hyper["num_classes"] == 1
    metrics = yaml.safe_load((best / "metrics.yaml").read_text())
    assert set(metrics["validation"]) >= {"val_dice", "val_mean_iou", "val_loss"}
    assert metrics["objective"]["name"] == "val_dice"
    assert metrics["objective"]["value"] == metrics["validation"]["val_dice"]
    overlays = sorted((best / "overlays").iterdir())
    assert [p.name for p in overlays] == ["00_img0.png", "01_img1.png"]
    from PIL import Image

    image = Image.open(overlays[0])
    # four panels (image, truth, prediction, errors), 32x32 enlarged 8x to 256, title and legend
    assert image.mode == "RGB" and image.size[0] > 4 * 256 and image.size[1] > 256
    assert not list(config.study_dir.glob(".best.*"))
    # per-class figures and the trivial baseline computed with the same metric code
    assert set(metrics["per_class"]) == {"class 0", "class 1"}
    assert metrics["per_class"]["class 0"]["background"] is True
    base = metrics["baseline"]
    y = parts.y
    fg = float((y == 1).sum()) / float((y >= 0).sum())
    assert base["best_constant_class"] == 1  # all-foreground has a dice above 0, all-background 0
    assert base["val_dice"] == pytest.approx(2 * fg / (1 + fg), abs=1e-5)
    assert base["best_by_metric"]["val_pixel_accuracy"]["class"] == (0 if fg < 0.5 else 1)
    verdict = metrics["verdict"]
    assert verdict["baseline"] == pytest.approx(base["val_dice"], abs=1e-6)
    assert verdict["clear"] == (verdict["margin"] >= verdict["needed"])
    assert metrics["selection"]["kept"] == "trial"


def _colours(image, box):
    return {tuple(c) for c in np.asarray(image.crop(box)).reshape(-1, 3).tolist()}


def test_overlay_panel_size_colours_errors_and_legend():
    from segsearch.export import (
        FALSE_NEGATIVE,
        FALSE_POSITIVE,
        WRONG_CLASS,
        _palette,
        overlay_panel,
    )

    image = np.full((300, 340, 3), 100, np.uint8)
    truth = np.zeros((300, 340), np.int64)
    truth[50:100, 50:100] = 1
    truth[150:200, 150:200] = 2
    pred = truth.copy()
    pred[50:100, 50:75] = 0  # false negatives (class 1 missed)
    pred[250:260, 10:20] = 2  # false positives
    pred[150:160, 150:200] = 1  # wrong class
    names = ["background", "vessel", "crack"]
    figure = overlay_panel(image, truth, pred, num_classes=3, class_names=names,
                           title="img.png  val_dice 0.5000")
    w, h = figure.size
    assert 4 * 340 < w < 4 * 340 + 200 and 300 < h < 300 + 200  # the image's own size
    top = h - 300
    panels = _colours(figure, (0, 0, w, h))
    palette = _palette(3)
    for cls in (1, 2):  # every class in its colour (tinted) somewhere
        tint = tuple(int(v) for v in np.clip(0.5 * 100 + 0.5 * palette[cls], 0, 255).astype(int))
        assert tint in panels
    errors = _colours(figure, (0, 0, w, h - 0))
    assert {FALSE_POSITIVE, FALSE_NEGATIVE, WRONG_CLASS} <= errors
    legend = _colours(figure, (0, h - max(12, top // 3) - 12, w, h))
    assert tuple(int(v) for v in palette[1]) in legend and FALSE_POSITIVE in legend
    big = overlay_panel(np.zeros((2048, 1024, 3), np.uint8), np.zeros((2048, 1024), np.int64),
                        np.zeros((2048, 1024), np.int64))
    assert big.size[1] < 1024 + 200  # long side brought down to 1024


def test_overlays_without_background_tint_every_class():
    from segsearch.export import WRONG_CLASS, _palette, overlay_panel

    image = np.full((40, 40, 3), 100, np.uint8)
    truth = np.zeros((40, 40), np.int64)
    pred = truth.copy()
    pred[:5] = 1
    figure = overlay_panel(image, truth, pred, num_classes=2, background=None)
    colours = _colours(figure, (0, 0) + figure.size)
    tint0 = tuple(int(v) for v in np.clip(0.5 * 100 + 0.5 * _palette(2)[0], 0, 255).astype(int))
    assert tint0 in colours and WRONG_CLASS in colours


def test_exported_model_reloads_in_safe_mode_without_segsearch(exported, trained, tmp_path):
    import keras

    best = exported[1]
    x = trained[1][:2]
    np.save(tmp_path / "x.npy", x)
    expected = keras.saving.load_model(best / "model.keras").predict(x, verbose=0)
    np.save(tmp_path / "expected.npy", expected)
    script = textwrap.dedent(f"""
        import sys, numpy as np, keras
        model = keras.saving.load_model({str(best / 'model.keras')!r}, safe_mode=True)
        assert not model.compiled, "the export is an inference copy"
        out = model.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)
        np.testing.assert_allclose(out, np.load({str(tmp_path / 'expected.npy')!r}), atol=1e-5)
        assert not any(m.startswith("segsearch") for m in sys.modules), "segsearch was imported"
        print("reloaded", out.shape)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reloaded (2, 32, 32, 1)" in done.stdout


def test_saved_model_for_serving(trained, tmp_path):
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(trained[0])
    files = export_mod.export_model(model, tmp_path / "out", saved_model=True)
    assert files == {"model": "model.keras", "saved_model": "saved_model"}
    served = tf.saved_model.load(str(tmp_path / "out" / "saved_model"))
    out = served.serve(tf.constant(trained[1][:1]))
    np.testing.assert_allclose(out.numpy(), model.predict(trained[1][:1], verbose=0), atol=1e-5)


def test_failed_export_leaves_the_previous_one(config, trained, parts, exported, monkeypatch):
    import shutil

    first = config.study_dir / "best"  # the previous export: a copy of the shared one
    shutil.copytree(exported[1], first)
    before = json.loads((first / MANIFEST).read_text())

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export_mod, "write_overlays", broken)
    from segsearch.errors import StudyError

    # one line for the CLI: best/ named, what failed, that the previous export is kept
    with pytest.raises(StudyError, match=r"best: disk full \(writing the export; the previous "):
        _export(config, trained, parts)
    assert json.loads((first / MANIFEST).read_text()) == before
    assert (first / "model.keras").exists()
    assert not list(config.study_dir.glob(".best.*"))


def _fake_export(folder: Path, label: str, complete: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.keras").write_text(label)
    if complete:
        (folder / MANIFEST).write_text(json.dumps({"label": label}))
    return folder


def test_recover_finishes_an_interrupted_swap(tmp_path):
    # killed between "old export aside" and "new export into place": the new one is complete
    _fake_export(tmp_path / ".best.old-1", "old")
    _fake_export(tmp_path / ".best.tmp-2", "new")
    recover(tmp_path)
    assert (tmp_path / "best" / "model.keras").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_recover_rolls_back_when_the_new_export_is_incomplete(tmp_path):
    _fake_export(tmp_path / ".best.old-1", "old")
    _fake_export(tmp_path / ".best.tmp-2", "half", complete=False)
    recover(tmp_path)
    assert (tmp_path / "best" / "model.keras").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_recover_removes_leftovers_next_to_a_complete_best(tmp_path):
    _fake_export(tmp_path / "best", "current")
    _fake_export(tmp_path / ".best.tmp-3", "half", complete=False)
    _fake_export(tmp_path / ".best.old-2", "older")
    recover(tmp_path)
    assert (tmp_path / "best" / "model.keras").read_text() == "current"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_a_best_folder_segsearch_did_not_write_is_kept(config, trained, parts):
    mine = config.study_dir / "best"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    _export(config, trained, parts)
    kept = list(config.study_dir.glob("best.user-*"))
    assert len(kept) == 1 and (kept[0] / "notes.txt").read_text() == "my notes"
    assert (config.study_dir / "best" / MANIFEST).exists()


def test_patch_mode_overlays_show_each_whole_image(config, trained):
    """Patch mode: an overlay per validation image, whole at its own size (not one image's
    window-sized tiles), predicted through the same sliding windows as validation."""
    from PIL import Image

    from segsearch.data.dataset import Part

    rng = np.random.default_rng(1)
    images = [rng.random((70, 90, 1)).astype("float32") for _ in range(3)]
    masks = [(im > 0.5).astype("float32") for im in images]
    val = Part(["a.png", "b.png", "c.png"], (32, 32), 1, arrays=(images, masks), crop=True)
    assert len(val) > len(val.names)  # tiles: 3x3 windows of 32 over each 70x90 image
    best = _export(config, trained, val)  # export.overlays: 2
    overlays = sorted((best / "overlays").iterdir())
    assert [p.name for p in overlays] == ["00_a.png", "01_b.png"]
    from segsearch.export import overlay_figure

    # the figure of the whole 70x90 image (its size does not depend on the prediction)
    whole = overlay_figure(images[0], np.zeros((70, 90), np.int64), masks[0], name="a.png",
                           num_classes=1)
    window = overlay_figure(images[0][:32, :32], np.zeros((32, 32), np.int64),
                            masks[0][:32, :32], name="a.png", num_classes=1)
    assert whole.size != window.size
    assert all(Image.open(p).size == whole.size for p in overlays)
