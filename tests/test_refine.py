"""A tiny real study with class weights (auto) whose export records TTA and post-processing, and
``segsearch predict`` applying (and overriding) what the export chose; configuration errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_cli import TINY, _run

from segsearch import postprocess, tta
from segsearch.predict import predict


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trial of one epoch on 32x32 sample images, class weights auto, in this process."""
    folder = tmp_path_factory.mktemp("refine") / "study"
    tiny = [*TINY, "--trials", "1"]  # one trial (the last --trials wins)
    with pytest.MonkeyPatch.context() as patch:  # an eager trial (tests/_faults.py): the export's
        patch.setenv("SEGSEARCH_TEST_EAGER", "1")  # choices are tested, not the training
        code, _, err = _run(["run", "unet", "--study-dir", str(folder), "-q", *tiny,
                             "--set", "train.isolation=none", "--set", "train.class_weights=auto",
                             "--set", "export.tta=true"])
    assert code == 0, err
    return folder


def test_export_records_tta_postprocessing_and_class_weights(study: Path) -> None:
    metrics = yaml.safe_load((study / "best" / "metrics.yaml").read_text())
    hyper = yaml.safe_load((study / "best" / "hyperparameters.yaml").read_text())
    section = metrics["test_time_augmentation"]
    assert section["setting"] is True and section["used"] is True  # export.tta: true
    assert section["transforms"] == tta.transforms_for(True, (32, 32))
    assert set(section["without"]) == set(section["with"]) == {
        "val_dice", "val_iou", "val_mean_iou", "val_pixel_accuracy"}
    assert section["gain"] == pytest.approx(section["with"]["val_dice"]
                                            - section["without"]["val_dice"], abs=2e-6)
    assert section["verdict"]["baseline"] == pytest.approx(metrics["baseline"]["val_dice"])
    post = metrics["postprocessing"]
    assert post["setting"] is True and post["scored_by"] == "val_dice"
    assert post["with"] >= post["without"]
    assert all(rule["class"] == 1 for rule in post["rules"])  # class 0 is the background
    kept = [t for t in post["tried"] if t["kept"]]
    assert len(kept) == len(post["rules"])
    assert all(t["score"] > post["without"] for t in kept)  # applied only when it raises it
    assert metrics["refined"]["val_dice"] == pytest.approx(post["with"], abs=1e-6)
    assert hyper["tta"] == {"used": True, "transforms": section["transforms"],
                            "available": section["transforms"]}
    assert hyper["postprocess"] == {"rules": post["rules"], "background": 0}
    # class weights: the hyperparameter (fixed at auto), and the computed weights, recorded
    stored = json.loads((study / "class_weights.json").read_text())
    assert hyper["params"]["class_weights"] == "auto"
    assert hyper["class_weights"] == {"setting": "auto", "weights": stored["weights"]}
    freq = np.array(stored["frequencies"])
    assert float(np.dot(freq, stored["weights"])) == pytest.approx(1.0, abs=1e-4)
    assert stored["weights"][1] > stored["weights"][0] if freq[1] < freq[0] else True
    # the run's output says what predict applies, and that the gain is optimistic
    from segsearch.export import export_notes

    notes = export_notes(study / "best")
    assert len(notes) == 1 and notes[0].startswith("  predict applies test-time augmentation (")
    assert f"val_dice {section['without']['val_dice']:.4f} -> " in notes[0]
    assert notes[0].endswith("(optimistic)") and "note" in metrics["refined"]


def test_evaluate_reproduces_the_exports_figures_on_its_validation_images(study: Path) -> None:
    """refine.evaluate (what bench_search_vs_seed scores held-out images with) gives the figures
    the export recorded when it is handed the same images, transforms and rules."""
    import keras

    from segsearch.data import load
    from segsearch.refine import evaluate
    from segsearch.spacefile import load_config

    config = load_config(study / "config.yaml", study_dir=study)
    val = load(config.data, split=study / "split.json").val
    model = keras.saving.load_model(study / "best" / "model.keras", compile=False)
    metrics = yaml.safe_load((study / "best" / "metrics.yaml").read_text())
    hyper = yaml.safe_load((study / "best" / "hyperparameters.yaml").read_text())
    plain = evaluate(model, val, batch_size=config.train.batch_size)
    section = metrics["test_time_augmentation"]
    for key, value in section["without"].items():
        assert plain[key] == pytest.approx(value, abs=1e-5), key
    refined = evaluate(model, val, transforms=hyper["tta"]["transforms"],
                       rules=hyper["postprocess"]["rules"], background=0,
                       batch_size=config.train.batch_size)
    for key in ("val_dice", "val_iou", "val_mean_iou", "val_pixel_accuracy"):
        assert refined[key] == pytest.approx(metrics["refined"][key], abs=1e-5), key


@pytest.fixture
def exported(study: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the export whose record says: TTA used (two transforms), keep the largest
    foreground component; and a folder of two images (one not square)."""
    best = tmp_path / "best"
    shutil.copytree(study / "best", best)
    hyper = yaml.safe_load((best / "hyperparameters.yaml").read_text())
    hyper["tta"] = {"used": True, "transforms": ["rot0", "fliplr"],
                    "available": ["rot0", "fliplr", "rot180"]}
    hyper["postprocess"] = {"rules": [{"class": 1, "keep_largest": True, "min_size": None}],
                            "background": 0}
    (best / "hyperparameters.yaml").write_text(yaml.safe_dump(hyper))
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("a.png", (40, 40)), ("b.png", (36, 50))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(images / name)
    return best, images


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_predict_applies_the_exports_choices_and_the_flags_override(exported, tmp_path,
                                                                    monkeypatch) -> None:
    best, images = exported
    seen: list[list[str]] = []
    real = tta.predict

    def spy(fn, x, names, **kw):
        seen.append(list(names))
        return real(fn, x, names, **kw)

    monkeypatch.setattr(tta, "predict", spy)
    predict(best, images, tmp_path / "default")
    assert seen == [["rot0", "fliplr"]] * 2
    seen.clear()
    predict(best, images, tmp_path / "raw", tta=False, postprocess=False)
    assert seen == [["rot0"]] * 2
    seen.clear()
    predict(best, images, tmp_path / "forced", tta=True, postprocess=False)
    assert seen == [["rot0", "fliplr", "rot180"]] * 2
    seen.clear()
    predict(best, images, tmp_path / "tta_only", postprocess=False)
    default, tta_only = _masks(tmp_path / "default"), _masks(tmp_path / "tta_only")
    for name, mask in tta_only.items():
        cleaned = postprocess.apply(mask // 255, [{"class": 1, "keep_largest": True}], 0) * 255
        assert np.array_equal(default[name], cleaned.astype(np.uint8)), name
        assert default[name].shape == mask.shape


def test_cli_predict_flags(exported, tmp_path) -> None:
    best, images = exported
    code, out, err = _run(["predict", str(best), str(images), "--out", str(tmp_path / "o"),
                           "--no-tta", "--no-postprocess"])
    assert code == 0, err
    code, _, err = _run(["predict", str(best), str(images), "--out", str(tmp_path / "p"),
                         "--tta", "--no-tta"])
    assert code == 2 and "not allowed with argument" in err


@pytest.mark.parametrize(("sets", "expected"), [
    (["train.class_weights=[1, -1]"], "train.class_weights: weights must be >= 0"),
    (["train.class_weights=[1, 2, 3]"],
     "train.class_weights: 3 weights but binary masks have 2 classes"),
    (["train.class_weights=often"], "train.class_weights: must be none, auto or a list"),
    (["data.num_classes=3", "train.class_weights=[1, 2]"],
     "train.class_weights: 2 weights but data.num_classes is 3"),
    (["space.class_weights=[none, given]"], "'given' needs train.class_weights"),
    (["space.class_weights=[none, sometimes]"], "space.class_weights: 'sometimes' is not a valid"),
    (["export.tta=maybe"], "export.tta: must be true, false or 'auto'"),
    (["export.postprocess=1"], "export.postprocess: must be true or false"),
])
def test_configuration_errors_are_one_line_and_exit_2(tmp_path, sets, expected) -> None:
    extra = [item for s in sets for item in ("--set", s)]
    code, _, err = _run(["run", "unet", "--study-dir", str(tmp_path / "s"), *TINY, *extra])
    assert code == 2, err
    assert err.startswith("segsearch: error: ") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err
