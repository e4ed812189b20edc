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
    # compared at each one's best threshold (export.threshold: auto, the default)
    compared = section["compared_at_thresholds"]
    assert section["gain"] == pytest.approx(compared["with"]["val_dice"]
                                            - compared["without"]["val_dice"], abs=2e-6)
    assert compared["without"]["val_dice"] >= section["without"]["val_dice"]
    assert hyper["threshold"] == metrics["threshold"]["chosen"] == compared["with"]["threshold"]
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
                       batch_size=config.train.batch_size, threshold=hyper["threshold"])
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


def test_predict_applies_the_exports_threshold_unless_one_is_given(exported, tmp_path,
                                                                   monkeypatch) -> None:
    import segsearch.predict as predict_mod
    from segsearch.predict import describe_choices

    best, images = exported
    hyper = yaml.safe_load((best / "hyperparameters.yaml").read_text())
    (best / "hyperparameters.yaml").write_text(yaml.safe_dump({**hyper, "threshold": 0.7}))
    used: list[float] = []
    real = predict_mod._mask
    monkeypatch.setattr(predict_mod, "_mask", lambda p, t: used.append(t) or real(p, t))
    predict(best, images, tmp_path / "chosen")
    predict(best, images, tmp_path / "given", threshold=0.3)
    assert used == [0.7, 0.7, 0.3, 0.3]
    said = describe_choices(best)
    assert said == "test-time augmentation (2 transforms), the threshold 0.7 (chosen on " \
                   "validation) and 1 post-processing rule"
    assert describe_choices(best, threshold=0.3, postprocess=False) == (
        "test-time augmentation (2 transforms) and the threshold 0.3 (--threshold; the export "
        "chose 0.7)")
    softmax = {**hyper, "num_classes": 3, "threshold": None}
    (best / "hyperparameters.yaml").write_text(yaml.safe_dump(softmax))
    assert describe_choices(best, tta=False, postprocess=False, threshold=0.3) == (
        "the argmax of 3 classes (--threshold is for one-channel models)")
    (best / "hyperparameters.yaml").write_text(yaml.safe_dump({**hyper, "threshold": "high"}))
    with pytest.raises(Exception, match="threshold: must be a number between 0 and 1"):
        predict(best, images, tmp_path / "bad")


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
    (["export.threshold=1.5"], "export.threshold: must be 'auto' or a number between 0 and 1"),
])
def test_configuration_errors_are_one_line_and_exit_2(tmp_path, sets, expected) -> None:
    extra = [item for s in sets for item in ("--set", s)]
    code, _, err = _run(["run", "unet", "--study-dir", str(tmp_path / "s"), *TINY, *extra])
    assert code == 2, err
    assert err.startswith("segsearch: error: ") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err


class _Identity:
    """A stand-in model whose probabilities are its input (one channel): the threshold choice
    is tested on probabilities set by hand, with no network."""

    def __init__(self, channels: int = 1) -> None:
        self.input_shape = (None, 16, 16, channels)
        self.output_shape = (None, 16, 16, channels)

    def predict(self, x, verbose=0, batch_size=None):
        return np.asarray(x, np.float32)


class _Val:
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y, self.crop = x, y, False


def _overconfident(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities that put every background pixel in [0.3, 0.65) and every foreground one in
    [0.65, 1): 0.5 calls part of the background foreground; 0.65 separates them exactly."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((4, 16, 16)) < 0.4).astype(np.int64)
    probs = np.where(truth == 1, rng.uniform(0.65, 1.0, truth.shape),
                     rng.uniform(0.3, 0.65, truth.shape))
    return probs[..., None].astype(np.float32), truth


@pytest.mark.parametrize(("setting", "expected"), [("auto", 0.65), (0.5, 0.5), (0.7, 0.7)])
def test_the_threshold_is_chosen_on_the_validation_images(setting, expected) -> None:
    from segsearch.refine import THRESHOLDS, choose, evaluate
    from segsearch.spacefile import load_config

    x, y = _overconfident()
    config = load_config({"architecture": "unet", "data": {"augment": False},
                          "export": {"threshold": setting}})
    metrics, params = choose(_Identity(), _Val(x, y), config)
    cut = metrics["threshold"]
    assert params["threshold"] == expected == cut["chosen"] == metrics["refined"]["threshold"]
    at = evaluate(_Identity(), _Val(x, y), threshold=expected)
    assert metrics["refined"]["val_dice"] == pytest.approx(at["val_dice"], abs=1e-5)
    if setting == "auto":
        assert 0.65 in THRESHOLDS and cut["at_chosen"] == pytest.approx(1.0)
        assert cut["gain"] > 0.05 and cut["at_0.5"] < 0.9
        assert max(cut["tried"].values()) == cut["tried"][0.65] == cut["at_chosen"]
        assert "optimistic" in metrics["refined"]["note"]  # chosen on the images it is scored on
    else:
        assert "tried" not in cut and "note" not in metrics["refined"]


def test_an_auto_threshold_stays_at_half_unless_another_scores_higher() -> None:
    from segsearch.refine import choose
    from segsearch.spacefile import load_config

    rng = np.random.default_rng(1)
    y = (rng.random((4, 16, 16)) < 0.5).astype(np.int64)
    x = np.where(y == 1, 0.9, 0.1)[..., None].astype(np.float32)  # every threshold in 0.1..0.9
    config = load_config({"architecture": "unet", "data": {"augment": False}})  # ties 0.5
    metrics, params = choose(_Identity(), _Val(x, y), config)
    assert params["threshold"] == 0.5 and metrics["threshold"]["gain"] == 0
    assert "note" not in metrics["refined"]


def test_a_softmax_model_has_no_threshold() -> None:
    from segsearch.refine import choose
    from segsearch.spacefile import load_config

    probs, y = _overconfident()
    x = np.concatenate([1 - probs, probs], axis=-1)
    config = load_config({"architecture": "unet", "data": {"augment": False, "num_classes": 2}})
    metrics, params = choose(_Identity(2), _Val(x, y), config)
    assert params["threshold"] is None and metrics["refined"]["threshold"] is None
    assert metrics["threshold"]["note"] == "2-class softmax output: the argmax, no threshold"


def test_tta_is_compared_at_each_ones_own_threshold(monkeypatch) -> None:
    """Averaging the transforms spreads the probabilities: with ``auto`` the plain and the TTA
    predictions are each scored at their best threshold before TTA is chosen."""
    from segsearch import refine
    from segsearch.spacefile import load_config

    x, y = _overconfident()
    real = refine._predictions

    def shifted(pairs, names, **kw):  # TTA's probabilities: the same, 0.1 lower
        probs, truths = real(pairs, names, **kw)
        return ([p - 0.1 for p in probs] if len(names) > 1 else probs), truths

    monkeypatch.setattr(refine, "_predictions", shifted)
    config = load_config({"architecture": "unet", "data": {"augment": True},
                          "export": {"tta": "auto"}})
    metrics, params = refine.choose(_Identity(), _Val(x, y), config)
    section = metrics["test_time_augmentation"]
    compared = section["compared_at_thresholds"]
    assert compared["without"] == {"threshold": 0.65, "val_dice": 1.0}
    assert compared["with"] == {"threshold": 0.55, "val_dice": 1.0}
    assert section["gain"] == 0 and section["used"] is False  # equal at their own thresholds
    assert params["threshold"] == 0.65
