"""Dashboards and trackers (issue 16.1): ``search.callbacks`` / ``callbacks=``, TensorBoard runs
(``export.tensorboard``), and a study read by Optuna's own tools (``optuna.load_study``,
``optuna.importance``), as docs say.

One tiny real search (32x32, 4 filters, 1 epoch, 2 finished trials, trial 1 failing on purpose,
one final epoch; trials in a worker process) is shared by most tests: it is configured from a
space file naming callbacks written here, and given one more through ``segsearch.run``.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from segsearch import callbacks as cb
from segsearch.errors import ConfigError, StudyError

#: the callbacks module the space file names (written into a temporary folder on sys.path): an
#: MLflow-like recorder class (instantiated with no argument), a factory, a plain function.
RECORDER = '''
RECORDS = {"class": [], "factory": [], "function": []}

def _row(study, trial):
    # what MLflowCallback reads: the study's name and directions, the trial's number, params,
    # values (value for one objective), state, start and end
    return {"study": study.study_name, "directions": [d.name for d in study.directions],
            "number": trial.number, "params": dict(trial.params), "value": trial.value,
            "values": trial.values, "state": trial.state.name,
            "finished": trial.datetime_complete is not None,
            "others": [t.state.name for t in study.get_trials(deepcopy=False)
                       if t.number != trial.number]}

class Recorder:
    def __init__(self):
        self.rows = RECORDS["class"]

    def __call__(self, study, trial):
        self.rows.append(_row(study, trial))

def make_recorder():
    return lambda study, trial: RECORDS["factory"].append(_row(study, trial))

def record(study, trial):
    RECORDS["function"].append(_row(study, trial))

def boom(study, trial):
    raise ValueError("the tracking server is down")

NOT_CALLABLE = 3

def needs_an_argument(uri):
    return record
'''


def _tiny_npz(folder: Path) -> Path:
    rng = np.random.default_rng(1)
    # 11 images: 3 to validate, 8 to train in whole batches of 4 (a smaller last batch would
    # trace the training step a second time in every trial)
    x = rng.random((11, 32, 32, 1)).astype("float32")
    path = folder / "tiny32.npz"
    np.savez(path, images=x, masks=(x > 0.5).astype("float32"))
    return path


@pytest.fixture(scope="module")
def recorder_module(tmp_path_factory):
    """The module ``tracking_recorder`` importable by name (as a user's own package would be)."""
    folder = tmp_path_factory.mktemp("recorder")
    (folder / "tracking_recorder.py").write_text(textwrap.dedent(RECORDER), encoding="utf-8")
    sys.path.insert(0, str(folder))
    sys.modules.pop("tracking_recorder", None)
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("tracking_recorder", None)


def _space(folder: Path, npz: Path, *, study: str, trials: int, callbacks: list[str],
           **extra: dict) -> Path:
    raw = {
        "study": study,
        "architecture": "unet",
        "data": {"source": str(npz), "image_size": 32, "val_fraction": 0.25, "augment": 0},
        "train": {"epochs": 1, "batch_size": 4, **extra.get("train", {})},
        "search": {"trials": trials, "callbacks": callbacks},
        "space": {"filters": 4, "depth": {"min": 1, "max": 2, "default": 1}},
        "export": {"enabled": False, **extra.get("export", {})},
    }
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tracked(recorder_module, tmp_path_factory):
    """The shared study: (results, study folder, the Python callback's rows, the recorder)."""
    import segsearch

    folder = tmp_path_factory.mktemp("tracked")
    space = _space(folder, _tiny_npz(folder), study="tracked", trials=2,
                   callbacks=["tracking_recorder:Recorder", "tracking_recorder:make_recorder",
                              "tracking_recorder:record"],
                   train={"final_epochs": 1}, export={"tensorboard": True})
    rows: list[tuple[str, int, str]] = []

    def python_callback(study, trial):  # the Python API's: called after the space file's
        rows.append((study.study_name, trial.number, trial.state.name))

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGSEARCH_FAULT", "1:raise")  # trial 1 fails (a RuntimeError)
        patch.setenv("SEGSEARCH_TEST_EAGER", "1")  # eager trials (tests/_faults.py)
        results = segsearch.run(space, study_dir=folder / "study", progress=None,
                                callbacks=[python_callback])
    import tracking_recorder

    return results, folder / "study", rows, tracking_recorder


# ------------------------------------------------------------------------------ callbacks
def test_every_trial_reaches_each_callback_as_optimize_would_call_it(tracked):
    import optuna

    results, folder, rows, recorder = tracked
    stored = optuna.load_study(study_name="tracked", storage=f"sqlite:///{folder / 'study.db'}")
    trials = stored.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    expected = [{"study": "tracked", "directions": ["MAXIMIZE"], "number": t.number,
                 "params": t.params, "value": t.value, "values": t.values,
                 "state": t.state.name, "finished": True} for t in trials]
    for kind in ("class", "factory", "function"):
        got = [{k: v for k, v in row.items() if k != "others"} for row in recorder.RECORDS[kind]]
        assert got == expected, kind
    # each was called once its trial was stored, before the next trial started
    for row in recorder.RECORDS["class"]:
        assert "RUNNING" not in row["others"], row
        assert len([s for s in row["others"] if s != "WAITING"]) == row["number"], row
    assert rows == [("tracked", t.number, t.state.name) for t in trials]
    values = [r["value"] for r in recorder.RECORDS["class"] if r["state"] == "COMPLETE"]
    assert all(isinstance(v, float) and math.isfinite(v) for v in values)
    by_number = {r.number: r for r in results.trials}
    assert [by_number[r["number"]].value for r in recorder.RECORDS["class"]
            if r["state"] == "COMPLETE"] == pytest.approx(values)


def test_the_stored_config_keeps_the_callbacks_and_status_does_not_import_them(tracked,
                                                                                monkeypatch):
    from segsearch.driver import Study

    _, folder, _, _ = tracked
    stored = yaml.safe_load((folder / "config.yaml").read_text())
    assert stored["search"]["callbacks"] == ["tracking_recorder:Recorder",
                                             "tracking_recorder:make_recorder",
                                             "tracking_recorder:record"]
    monkeypatch.setitem(sys.modules, "tracking_recorder", None)  # not importable any more
    assert len(Study.open(folder).trials()) == 3


def test_a_callback_that_raises_stops_the_search_keeps_the_study_and_names_it(
        recorder_module, tmp_path, monkeypatch):
    import segsearch
    from segsearch.driver import Study

    monkeypatch.setenv("SEGSEARCH_TEST_EAGER", "1")  # its one trial trains eagerly (_faults.py)
    space = _space(tmp_path, _tiny_npz(tmp_path), study="raising", trials=1,
                   callbacks=["tracking_recorder:boom"], train={"isolation": "none"})
    with pytest.raises(StudyError) as info:
        segsearch.run(space, study_dir=tmp_path / "study", progress=None)
    message = str(info.value)
    assert "search.callbacks: callback 'tracking_recorder:boom' raised ValueError: the tracking " \
           "server is down after trial 0 (complete); the study is kept" in message
    assert isinstance(info.value.__cause__, ValueError)  # Python callers get the original too
    error_file = tmp_path / "study" / cb.ERROR_FILE
    assert str(error_file) in message and "Traceback" in error_file.read_text()
    assert [r.state for r in Study.open(tmp_path / "study").trials()] == ["complete"]
    # without export.tensorboard (the default) no TensorBoard run is written
    assert not (tmp_path / "study" / "tensorboard").exists()
    stored = yaml.safe_load((tmp_path / "study" / "config.yaml").read_text())
    assert stored["export"]["tensorboard"] is False


# ------------------------------------------------------------------------------ loading errors
def _cli(argv: list[str]) -> tuple[int, str]:
    from segsearch.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.parametrize(("entry", "words"), [
    ("no_such_tracker:Callback", "cannot import module 'no_such_tracker'"),
    ("tracking_recorder:Missing", "'tracking_recorder' has no attribute 'Missing'"),
    ("tracking_recorder:NOT_CALLABLE", "is not callable (its type: int)"),
    ("tracking_recorder", "is not of the form module:attr"),
    ("tracking_recorder:a-b", "is not of the form module:attr"),
])
def test_a_bad_entry_is_one_line_naming_the_key_and_the_entry(recorder_module, tmp_path, entry,
                                                             words):
    space = _space(tmp_path, _tiny_npz(tmp_path), study="bad", trials=1, callbacks=[entry])
    code, err = _cli(["run", str(space), "--study-dir", str(tmp_path / "s")])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{space}: search.callbacks: {entry!r}" in err and words in err, err
    assert not (tmp_path / "s").exists()


def test_a_set_override_is_named_and_keras_tuner_is_refused(recorder_module, tmp_path):
    from segsearch.spacefile import load_config

    with pytest.raises(ConfigError, match=r"^--set search.callbacks=\[nope:x\]: search.callbacks: "
                                          r"'nope:x': cannot import"):
        load_config("unet", sets=["search.callbacks=[nope:x]"], check_space=True)
    with pytest.raises(ConfigError, match="use engine: optuna, or remove search.callbacks"):
        load_config("unet", sets=["search.callbacks=[tracking_recorder:record]"],
                    engine="keras-tuner", check_space=False)
    config = load_config("unet", engine="keras-tuner", check_space=False)
    from segsearch.driver import Study

    with pytest.raises(ConfigError, match="use engine: optuna"):
        Study(config, callbacks=[print])


def test_what_an_entry_names_decides_how_the_callback_is_made(recorder_module):
    import tracking_recorder as rec

    made = cb.resolve(["tracking_recorder:Recorder", "tracking_recorder:make_recorder",
                       "tracking_recorder:record"], [print, "tracking_recorder:record"])
    assert [c.name for c in made] == ["tracking_recorder:Recorder",
                                      "tracking_recorder:make_recorder",
                                      "tracking_recorder:record", "print",
                                      "tracking_recorder:record"]
    assert isinstance(made[0].function, rec.Recorder)  # the class, instantiated
    assert made[1].function.__name__ == "<lambda>"  # the factory's result
    assert made[2].function is rec.record and made[3].function is print
    with pytest.raises(ConfigError, match="'tracking_recorder:needs_an_argument' needs arguments"):
        cb.resolve(["tracking_recorder:needs_an_argument"])
    with pytest.raises(ConfigError, match="callbacks: expected functions"):
        cb.resolve([], [3])


# ------------------------------------------------------------------------------ TensorBoard
def _events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_each_trial_and_the_final_training_write_a_tensorboard_run(tracked):
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    results, folder, _, _ = tracked
    board = folder / "tensorboard"
    assert sorted(p.name for p in board.iterdir()) == ["final", "trial_0000", "trial_0001",
                                                       "trial_0002"]
    for record in results.trials:
        events = _events(board / f"trial_{record.number:04d}")
        tags = set(events.Tags()["scalars"])
        if record.state == "complete":  # the trial's value is the HParams metric
            assert {"loss", "dice", "val_loss", "val_dice", "val_dice_ema", "time_s",
                    "hparams/val_dice"} <= tags
            assert [e.step for e in events.Scalars("val_dice")] == [1]
            assert events.Scalars("val_dice")[0].value == pytest.approx(record.values["val_dice"])
            assert [e.value for e in events.Scalars("hparams/val_dice")] == pytest.approx(
                [record.value])
        else:  # trial 1 failed in its first batch: no epoch ended, no value
            assert record.number == 1 and tags == set()
        # the HParams session: the trial's hyperparameters, under the run's name
        content = events.PluginTagToContent(metadata.PLUGIN_NAME)
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content[metadata.SESSION_START_INFO_TAG]).session_start_info
        assert start.group_name == f"trial_{record.number:04d}"
        got = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
               for k, v in start.hparams.items()}
        assert got == record.params
    final = _events(board / "final")
    assert [e.step for e in final.Scalars("val_dice")] == [2]  # continues the best trial's epoch
    start = plugin_data_pb2.HParamsPluginData.FromString(final.PluginTagToContent(
        metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]).session_start_info
    assert start.group_name == "final" and start.hparams["depth"].number_value == \
        results.best_params["depth"]


# ------------------------------------------------------------------------------ Optuna's tools
def test_optuna_load_study_and_param_importances_read_a_segsearch_study(tracked):
    import optuna

    _, folder, _, _ = tracked
    study = optuna.load_study(study_name="tracked", storage=f"sqlite:///{folder / 'study.db'}")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 2 and study.best_trial.number in {t.number for t in complete}
    importances = optuna.importance.get_param_importances(study)
    assert set(importances) <= set(study.best_trial.params) and importances
    assert sum(importances.values()) == pytest.approx(1.0)


NO_TENSORFLOW = '''
import sys
sys.modules["tensorflow"] = None  # as on a machine without TensorFlow: importing it fails
import numpy as np, keras
from segsearch.tensorboard_logs import TensorBoardLog

class Monitor(keras.callbacks.Callback):  # what run_trial's epoch monitor offers the log
    history, own_best, stop_state = [], None, None
    def on_epoch_end(self, epoch, logs=None):
        self.history.append({"epoch": epoch + 1, "loss": float(logs["loss"])})
        self.own_best = self.history[-1]["loss"]

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
monitor = Monitor()
log = TensorBoardLog(sys.argv[1], {"learning_rate": 0.1, "decoder/upsampling": "bilinear"},
                     "loss", monitor)
model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=2, verbose=0, callbacks=[monitor, log])
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
events = EventAccumulator(sys.argv[1])
events.Reload()
print(keras.backend.backend(), sorted(events.Tags()["scalars"]),
      [e.step for e in events.Scalars("loss")], events.Tags()["tensors"])
'''


def test_the_tensorboard_writer_needs_no_tensorflow_with_the_jax_backend(tmp_path):
    import importlib.util
    import os
    import subprocess

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == (
        "jax ['hparams/loss', 'loss'] [1, 2] ['_hparams_/session_start_info']")


def test_a_callbacks_module_in_the_current_folder_is_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `segsearch` command (unlike python -m) has no current folder on sys.path."""
    from segsearch import callbacks

    (tmp_path / "my_tracker_cb.py").write_text("def record(study, trial):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert callable(callbacks.load("my_tracker_cb:record"))
    with pytest.raises(ConfigError, match="cannot import module 'no_such_cb_module'"):
        callbacks.load("no_such_cb_module:record")
