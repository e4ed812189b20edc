"""The driver end to end on the real U-Net hypermodel (16x16 or 32x32, 4 filters, 1 epoch):
both engines run, export, resume after an interrupt and add missing trials; a changed space is
refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from segsearch.driver import Study, run
from segsearch.errors import StudyError


def _tiny_npz(folder: Path, size: int) -> Path:
    rng = np.random.default_rng(1)
    x = rng.random((12, size, size, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    path = folder / f"tiny{size}.npz"
    np.savez(path, images=x, masks=y)
    return path


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    return _tiny_npz(tmp_path_factory.mktemp("data"), 32)


@pytest.fixture(scope="module")
def npz16(tmp_path_factory):
    return _tiny_npz(tmp_path_factory.mktemp("data16"), 16)


def _raw(npz, engine, trials, **export):
    return {
        "study": f"e2e-{engine}",
        "architecture": "unet",
        "data": {"source": str(npz), "image_size": 32, "val_fraction": 0.25, "augment": 0},
        "train": {"epochs": 1, "batch_size": 4},
        "search": {"engine": engine, "trials": trials},
        "space": {"filters": 4, "depth": {"min": 1, "max": 2, "default": 2}},
        "export": {"overlays": 2, **export},
    }


class _StopAt:
    def __init__(self, trial):
        self.trial = trial

    def __call__(self, event):
        if event["event"] == "epoch" and event["trial"] == self.trial:
            raise KeyboardInterrupt


def _resumed_raw(npz) -> dict:
    """The resumed study's configuration: the smallest that still searches (16x16, depth 1-2,
    the seed at depth 1, 4 filters, 1 epoch); batches of 9 take the 9 training images in one
    step, so each trial traces its training step once. It trains in this process
    (train.isolation: none): resuming is the driver's and the storage's work; the worker
    processes are test_robust.py's."""
    raw = _raw(npz, "optuna", 2)
    raw["data"]["image_size"] = 16
    raw["train"].update(batch_size=9, isolation="none")
    raw["space"] = {"filters": 4, "depth": {"min": 1, "max": 2, "default": 1}}
    return raw


@pytest.fixture(scope="module")
def optuna_study(npz16, tmp_path_factory):
    """An Optuna study interrupted during trial 1, then resumed by the same command."""
    from segsearch.spacefile import load_config

    config = load_config(_resumed_raw(npz16), study_dir=tmp_path_factory.mktemp("s") / "u",
                         check_space=False)
    with pytest.raises(KeyboardInterrupt):
        Study(config).run(progress=_StopAt(trial=1))
    split = (config.study_dir / "split.json").read_text()
    events = []
    results = Study(config).run(progress=events.append)
    return config, results, events, split


def test_optuna_resumes_a_cut_off_trial_and_exports(optuna_study):
    config, results, events, split = optuna_study
    folder = config.study_dir
    assert [(r.number, r.state) for r in results.trials] == [(0, "complete"), (1, "failed"),
                                                            (2, "complete")]
    assert "cut off" in results.trials[1].reason
    assert results.trials[2].params == results.trials[1].params
    assert (folder / "split.json").read_text() == split  # the split is reused on resume
    assert results.best_model_path == folder / "best" / "model.keras"
    best = folder / "best"
    for name in ("model.keras", "saved_model", "hyperparameters.yaml", "metrics.yaml",
                 "trials.csv", "config.yaml", "overlays"):
        assert (best / name).exists(), name
    hyper = yaml.safe_load((best / "hyperparameters.yaml").read_text())
    assert hyper["trial"] == results.best_trial and hyper["architecture"] == "unet"
    metrics = yaml.safe_load((best / "metrics.yaml").read_text())
    assert metrics["objective"]["value"] == pytest.approx(results.best_value, abs=1e-4)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "study_start" and kinds[-1] == "study_end" and "export" in kinds
    assert events[0]["resumed"] is True and events[0]["trials_done"] == 1
    start = next(e for e in events if e["event"] == "trial_start")
    assert start["trial"] == 2 and start["trials_total"] == 2 and start["params"]["filters"] == 4
    epoch = next(e for e in events if e["event"] == "epoch")
    assert "val_dice" in epoch["metrics"] and epoch["elapsed_s"] >= 0
    json.dumps(events)  # the CLI's --json mode writes them as they are

    reopened = Study.open(folder)
    assert [r.state for r in reopened.trials()] == ["complete", "failed", "complete"]
    before = json.loads((best / "export.json").read_text())["created"]
    assert reopened.export() == best
    assert (best / "export.json").exists() and json.loads((best / "export.json").read_text())[
        "trial"] == results.best_trial
    assert before is not None


@pytest.mark.parametrize("change, words", [
    ({"space": {"filters": 8, "depth": {"min": 1, "max": 2, "default": 2}}}, "space"),
    ({"data_image_size": 32}, "data.image_size"),
    ({"architecture": "resunet"}, "architectures"),
])
def test_changed_configuration_is_refused(optuna_study, tmp_path, npz16, change, words):
    from segsearch.spacefile import load_config

    config, *_ = optuna_study
    copy = tmp_path / "copy"
    shutil.copytree(config.study_dir, copy)
    raw = _resumed_raw(npz16)
    if "data_image_size" in change:
        raw["data"]["image_size"] = change.pop("data_image_size")
    if change.get("architecture") == "resunet":
        raw["space"] = {"filters": 4}
    raw.update(change)
    changed = load_config(raw, study_dir=copy, check_space=False)
    with pytest.raises(StudyError) as info:
        Study(changed).run()
    message = str(info.value)
    assert words in message and "--fresh" in message and "--study-dir" in message
    assert sorted(p.name for p in copy.iterdir()) == sorted(
        p.name for p in config.study_dir.iterdir())


# the default run covers it: tests/engines/test_keras_tuner_engine.py and test_failures.py run
# real keras-tuner studies
@pytest.mark.slow
def test_keras_tuner_end_to_end(npz, tmp_path):
    folder = tmp_path / "kt"
    results = run(_raw(npz, "keras-tuner", 2, saved_model=False), study_dir=folder,
                  check_space=False)
    assert [r.state for r in results.trials] == ["complete", "complete"]
    assert (folder / "keras_tuner" / "oracle.json").exists()
    assert results.best_model_path == folder / "best" / "model.keras"
    assert results.best_model_path.exists()
    assert yaml.safe_load((folder / "best" / "hyperparameters.yaml").read_text())["params"][
        "filters"] == 4


# ------------------------------------------------------------------ from a Python script
_SCRIPT = """\
import segsearch

SPACE = {space!r}
{guard}
    results = segsearch.run(SPACE, trials=1, epochs=1, study_dir="studies/script")
    print("best", results.best_value)
    print("---")
    again = segsearch.run(SPACE, trials=1, epochs=1, study_dir="studies/script", quiet=True)
    print("again", again.best_value)
"""


def _script(npz, folder, guard: bool):
    """Run README's kind of script with ``python3 script.py`` (this checkout on PYTHONPATH)."""
    import os
    import subprocess
    import sys

    space = _raw(npz, "optuna", 1, enabled=False)
    space["train"]["final_epochs"] = 0
    space["space"]["depth"] = 1
    guard_line = 'if __name__ == "__main__":' if guard else "if True:  # no __main__ guard"
    path = folder / "script.py"
    path.write_text(_SCRIPT.format(space=space, guard=guard_line))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return subprocess.run([sys.executable, str(path)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_script_without_the_main_guard_is_told_to_add_it(npz, tmp_path):
    done = _script(npz, tmp_path, guard=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one message: no traceback, no TensorFlow start-up lines
    assert lines[0].startswith("segsearch: error: the trial worker process could not start")
    assert 'if __name__ == "__main__":' in lines[0] and str(tmp_path / "script.py") in lines[0]
    assert "Traceback" not in done.stderr and "bootstrapping" not in done.stderr
    assert "best" not in done.stdout


@pytest.mark.slow
def test_a_script_with_the_main_guard_runs_and_shows_its_progress(npz, tmp_path):
    done = _script(npz, tmp_path, guard=True)
    assert done.returncode == 0, done.stderr
    out, quiet = done.stdout.split("---\n")
    assert "trial 1/1 (#0)" in out and "  complete  val_dice" in out and "best 0." in out
    assert quiet.startswith("again 0."), quiet  # quiet=True: nothing but the script's own line
    for noise in ("cuda", "absl", "cpu_feature_guard", "oneDNN", "Traceback"):
        assert noise not in done.stderr, done.stderr


def test_a_worker_that_cannot_start_says_why_in_one_line(npz, tmp_path, monkeypatch):
    from segsearch.spacefile import load_config

    site = tmp_path / "site"  # its sitecustomize breaks the worker's start, not this process
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "from segsearch import workshop\n\n\n"
        "def training_context(self, progress=None, *, deadline=None):\n"
        "    raise ModuleNotFoundError(\"No module named 'scipy'\", name='scipy')\n\n\n"
        "workshop.Workshop.training_context = training_context\n")
    monkeypatch.setenv("PYTHONPATH", f"{site}:{Path(__file__).resolve().parents[1]}")
    config = load_config(_raw(npz, "optuna", 1, enabled=False), study_dir=tmp_path / "w",
                         check_space=False)
    with pytest.raises(StudyError) as caught:
        Study(config).run()
    message = str(caught.value)
    assert message.startswith("ModuleNotFoundError while starting the trial worker process at "
                              "sitecustomize.py:5: No module named 'scipy'; install it: "
                              "pip install scipy (traceback: ")
    assert "\n" not in message
    assert "in training_context" in (config.study_dir / "worker_error.txt").read_text()


def test_data_background_null_reaches_the_model_s_objective_and_the_baseline(npz, tmp_path):
    import keras_tuner

    from segsearch.spacefile import load_config

    raw = _raw(npz, "optuna", 1)
    counted = Study(load_config(raw, study_dir=tmp_path / "a", check_space=False))
    assert counted.hypermodel().background == 0
    assert counted.baseline()["constants"][0]["val_dice"] == 0  # all background: no foreground
    raw["data"]["background"] = None  # every class is a real one
    study = Study(load_config(raw, study_dir=tmp_path / "b", check_space=False))
    hm = study.hypermodel()
    assert hm.background is None
    model = hm.build(keras_tuner.HyperParameters())
    x, y = study.workshop.load_data().val.x, study.workshop.load_data().val.y
    scores = model.evaluate(x, y, verbose=0, return_dict=True)
    from segsearch import metrics

    every = metrics.Dice(1, background=None)
    every.update_state(y, model.predict(x, verbose=0))
    assert scores["dice"] == pytest.approx(float(every.result()), abs=1e-6)
    assert study.baseline()["constants"][0]["val_dice"] > 0.3  # class 0 counts now


def test_trials_running_at_once_each_get_their_own_index() -> None:
    """Two workers: the second trial to start is trial 2/N, not a second 1/N."""
    from types import SimpleNamespace

    from segsearch.driver import _Emitter
    from segsearch.records import Objective
    from segsearch.spacefile import load_config

    config = load_config("unet", trials=4, epochs=1)
    study = SimpleNamespace(config=config, objective=Objective(("val_dice",), ("maximize",)),
                            budget_epochs=lambda: 4)
    seen: list[dict] = []
    emit = _Emitter(seen.append, study)
    for event in ({"event": "trial_start", "trial": 0}, {"event": "trial_start", "trial": 1},
                  {"event": "epoch", "trial": 1}, {"event": "trial_end", "trial": 0,
                                                   "state": "complete", "value": 0.5},
                  {"event": "trial_start", "trial": 2}, {"event": "trial_end", "trial": 1,
                                                         "state": "complete", "value": 0.4}):
        emit(event)
    assert [(e["event"], e["trial"], e["index"]) for e in seen] == [
        ("trial_start", 0, 1), ("trial_start", 1, 2), ("epoch", 1, 2), ("trial_end", 0, 1),
        ("trial_start", 2, 3), ("trial_end", 1, 2)]
