"""The ``segsearch`` command: fast help, one-line errors, progress display, and end-to-end runs."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segsearch.cli import JsonProgress, TextProgress, format_trials, main

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "optuna", "keras_tuner", "jax", "torch")
#: A search small enough for a test: 32x32 images, 2 trials, 1 epoch, 4 filters, depth 1 (half
#: the layers of depth 2 to trace), no final training; 20 images: 16 to train, two whole batches
#: of 8, so each trial traces its training step once (a last, smaller batch traces it again).
TINY = ["--trials", "2", "--epochs", "1", "--image-size", "32",
        "--set", "space.filters=4", "--set", "space.depth=1", "--set", "train.final_epochs=0",
        "--set", "export.saved_model=false", "--set", "export.overlays=1",
        "--set", "data.sample_count=20"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    """Run main(argv) in this process; return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse (--help, usage errors)
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def _python(code: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


# ----------------------------------------------------------------------------------- help
def test_help_imports_nothing_heavy() -> None:
    """--help is fast because it imports neither TensorFlow nor Keras nor an engine (what it
    costs in seconds is benchmarks' business: a wall-clock limit fails on a busy machine)."""
    script = f"""
import contextlib, io, json, sys
from segsearch.cli import main
codes = []
for argv in (["--help"], ["run", "--help"], ["status", "--help"], ["export", "--help"],
             ["predict", "--help"], ["data", "--help"], ["data", "check", "--help"],
             ["spaces", "--help"], ["--version"], ["spaces"]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            codes.append(main(argv))
        except SystemExit as e:
            codes.append(e.code)
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps({{"codes": codes, "heavy": heavy}}))
"""
    result = _python(script)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["heavy"] == [], f"--help imported {report['heavy']}"
    assert set(report["codes"]) == {0}
    process = subprocess.run([sys.executable, "-m", "segsearch", "--help"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert process.returncode == 0 and "segsearch run" in process.stdout


def test_help_lists_every_command_and_option() -> None:
    code, out, _ = _run(["--help"])
    assert code == 0
    for word in ("run", "status", "export", "predict", "data", "spaces"):
        assert word in out
    code, out, _ = _run(["run", "--help"])
    for option in ("--data", "--trials", "--epochs", "--image-size", "--engine", "--study-dir",
                   "--storage", "--fresh", "--rebuild-storage", "--set", "--quiet", "--json"):
        assert option in out


def test_spaces_lists_the_shipped_files() -> None:
    code, out, _ = _run(["spaces"])
    assert code == 0
    for name in ("auto", "deeplabv3plus", "resblock_unet", "resnet50_unet", "resunet", "unet"):
        assert f"\n{name} " in "\n" + out


# ----------------------------------------------------------------------------------- errors
def _space(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


CLI_ERRORS = [
    ("architecture: unet\ntrain: {epoch: 3}\n", [], "did you mean 'epochs'?"),
    ("architecture: unet\ntrain: {epochs: many}\n", [], "train.epochs: must be an integer"),
    ("architecture: unet\ntrain: {epochs: 2, min_epochs: 5}\n", [], "must be <= train.epochs"),
    ("architecture: unet\nspace: {depth: {min: 4, max: 2}}\n", [], "min must be <= max"),
    ("architecture: unet\nsearch: {engine: optuan}\n", [], "did you mean 'optuna'?"),
    ("architecture: unet\nsearch: {algorithm: bayesian}\n", [], "belongs to engine 'keras-tuner'"),
    ("study: ../up\narchitecture: unet\n", [], "study: must be a plain folder name"),
    ("architecture: unet\narchitecture: resunet\n", [], "duplicate key 'architecture'"),
    ("architecture: [unet\n", [], "not valid YAML"),
    ("architecture: unet\n", ["--set", "train.epoch=2"], "--set train.epoch=2"),
    ("architecture: unet\n", ["--set", "space.deep=2"], "did you mean 'depth'?"),
    ("architecture: unet\n", ["--engine", "keras-tuner", "--storage", "sqlite:///s.db"],
     "a storage URL is for engine optuna"),
    ("architecture: unet\n", ["--engine", "ray"], "invalid choice: 'ray'"),
    ("architecture: unet\n", ["--trials", "0"], "must be >= 1"),
    # issue 12: YAML aliases that loop or explode, absurd sizes: caught before anything is made
    ("architecture: &a [*a]\n", [], "architecture[0]: refers to itself"),
    ("architecture: unet\nspace: &s {x: *s}\n", [], "not valid YAML"),
    ("architecture: unet\nspace:\n  a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
     + "".join(f"  {n}: &{n} [{', '.join(['*' + p] * 10)}]\n"
               for p, n in zip("abcdef", "bcdefg")), [], "space.g: more than 100000 values"),
    ("architecture: unet\nspace: {x: " + "[" * 60 + "]" * 60 + "}\n", [],
     "nested more than 50 levels"),
    ("architecture: unet\n", ["--set", "space.x=&a [*a]"], "refers to itself"),
    ("architecture: unet\n", ["--image-size", "200000"], "each side must be <= 8192 pixels"),
    # a flag that stands for a key is named as typed, not as the --set it becomes
    ("architecture: unet\n", ["--engine", "keras-tuner", "--workers-per-gpu", "2"],
     "error: --workers-per-gpu 2: search.workers_per_gpu: parallel workers need engine optuna"),
    ("architecture: unet\n", ["--gpus", "0,x"], "error: --gpus 0,x: search.gpus"),
]


@pytest.mark.parametrize(("text", "extra", "expected"), CLI_ERRORS,
                         ids=[e[2][:32] for e in CLI_ERRORS])
def test_user_errors_print_one_line_and_exit_2(tmp_path: Path, text: str, extra: list[str],
                                               expected: str) -> None:
    code, out, err = _run(["run", _space(tmp_path, text), "--study-dir", str(tmp_path / "s"),
                           *extra])
    assert code == 2
    assert err.startswith("segsearch: error: ") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()  # nothing was started


def test_missing_files_are_user_errors(tmp_path: Path) -> None:
    for argv in (["run", str(tmp_path / "nope.yaml")], ["status", str(tmp_path / "nope")],
                 ["export", str(tmp_path / "nope")], ["data", "check", str(tmp_path / "nope")],
                 ["predict", str(tmp_path / "nope"), str(tmp_path), "--out", str(tmp_path / "o")]):
        code, _, err = _run(argv)
        assert code == 2 and err.startswith("segsearch: error: ") and err.count("\n") == 1, argv


def _one_pair_data(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "a.png")
    return root


@pytest.mark.parametrize("case", ["missing", "one_pair", "mismatch"])
def test_a_data_error_leaves_no_study_folder(tmp_path: Path, case: str) -> None:
    """A data error stops `run` before anything is written: no study folder, no split.json."""
    data = tmp_path / "data"
    if case == "one_pair":
        _one_pair_data(data)
    elif case == "mismatch":
        _one_pair_data(data)
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(data / "images" / "b.png")
    study = tmp_path / "studies" / "s"
    code, _, err = _run(["run", "unet", "--data", str(data), "--study-dir", str(study), *TINY])
    assert code == 2 and err.startswith("segsearch: error: ") and err.count("\n") == 1, err
    assert not study.exists() and not study.parent.exists(), sorted(tmp_path.rglob("*"))


def test_fresh_with_a_data_error_moves_nothing_aside(tmp_path: Path) -> None:
    """--fresh on a configuration that cannot run keeps the old study where it is."""
    study = tmp_path / "s"
    study.mkdir()
    (study / "keep.txt").write_text("the user's\n")
    code, _, err = _run(["run", "unet", "--data", str(tmp_path / "nope"), "--study-dir",
                         str(study), "--fresh", *TINY])
    assert code == 2, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert (study / "keep.txt").read_text() == "the user's\n"


def test_a_real_process_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = _space(tmp_path, "architecture: unet\nsearch: {trials: -1}\n")
    for argv in (["run", bad], ["run", str(tmp_path / "missing.yaml")], ["run"]):
        process = subprocess.run([sys.executable, "-m", "segsearch", *argv], cwd=tmp_path,
                                 capture_output=True, text=True, timeout=60,
                                 env={**_env(), "PYTHONPATH": str(REPO)})
        assert process.returncode == 2, process.stderr
        assert process.stderr.startswith("segsearch") and "Traceback" not in process.stderr
        assert process.stderr.strip().count("\n") == 0, process.stderr


def test_a_study_folder_on_a_symbolic_link_loop_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for folder, expected in ((tmp_path / "a", "points (through others) back to itself"),
                             (tmp_path / "a" / "s", "Too many levels of symbolic links")):
        code, _, err = _run(["run", "unet", "--study-dir", str(folder), *TINY])
        assert code == 2 and err.startswith(f"segsearch: error: {folder}: "), err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_running_out_of_memory_is_one_line_and_leaves_no_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import segsearch.data

    def load(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("Unable to allocate 596. GiB for an array with shape (2, 200000, "
                          "200000)")

    monkeypatch.setattr(segsearch.data, "load", load)
    code, _, err = _run(["run", "unet", "--study-dir", str(tmp_path / "s"), *TINY])
    assert code == 2 and err.startswith("segsearch: error: out of memory: Unable to allocate")
    assert "--image-size" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()  # the folder this run made is gone again


def test_a_failed_write_names_its_file_and_leaves_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from segsearch.records import atomic_write_text

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as caught:
        atomic_write_text(tmp_path / "trials.csv", "number\n")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(
        tmp_path / "trials.csv")
    assert list(tmp_path.iterdir()) == []
    from segsearch.errors import os_error_message

    assert os_error_message(caught.value).startswith(
        f"{tmp_path / 'trials.csv'}: No space left on device; the disk is full")


def test_sigterm_is_an_interrupt_that_exits_143(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    import segsearch.driver

    class Terminated:
        def __init__(self, config: Any, fresh: bool = False, **options: Any) -> None:
            pass

        def run(self, progress: Any = None) -> Any:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(segsearch.driver, "Study", Terminated)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = _run(["run", "unet", "--study-dir", str(tmp_path / "s"), "--quiet"])
    assert code == 143
    assert err.strip().startswith("segsearch: terminated (SIGTERM) after ")
    assert "run the same command again to resume" in err and str(tmp_path / "s") in err
    assert signal.getsignal(signal.SIGTERM) == before  # restored after the command


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


# ----------------------------------------------------------------------------------- progress
EVENTS: list[dict[str, Any]] = [
    {"event": "study_start", "trials_total": 2, "trials_done": 0, "resumed": False,
     "data": "SYNTHETIC sample", "path": "studies/x"},
    {"event": "trial_start", "trial": 0, "index": 1, "trials_total": 2,
     "params": {"depth": 2, "learning_rate": 0.0001}},
    {"event": "epoch", "trial": 0, "index": 1, "trials_total": 2, "epoch": 1, "epochs": 2,
     "metrics": {"val_dice": 0.5, "val_loss": 0.4, "time_s": 1.0}, "best_value": None,
     "elapsed_s": 3.0, "eta_s": 70.0},
    {"event": "trial_end", "trial": 0, "index": 1, "trials_total": 2, "state": "complete",
     "value": 0.5, "epochs": 2, "duration_s": 2.0, "best_value": 0.5, "reason": None},
    {"event": "trial_start", "trial": 1, "index": 2, "trials_total": 2, "params": {"depth": 3}},
    {"event": "trial_end", "trial": 1, "index": 2, "trials_total": 2, "state": "infeasible",
     "value": None, "epochs": 0, "duration_s": 0.1, "best_value": 0.5,
     "reason": "input size 30x30 is not divisible by 8"},
    {"event": "final_start", "trial": 0, "epochs": 3},
    {"event": "final_epoch", "epoch": 3, "epochs": 5, "metrics": {"val_dice": 0.6},
     "eta_s": 4},
    {"event": "export", "path": "studies/x/best"},
    {"event": "study_end", "best_value": 0.6, "path": "studies/x"},
    {"event": "something_new", "anything": np.float32(1.5)},
]


def test_text_progress_shows_trial_epoch_metric_best_and_time_left() -> None:
    stream = io.StringIO()
    show = TextProgress("val_dice", stream, live=False)
    for event in EVENTS:
        show(event)
    text = stream.getvalue()
    assert "trial 1/2 (#0)  depth=2 learning_rate=1.00e-04" in text
    assert "epoch 1/2  val_dice 0.5  elapsed 3s  left ~1m10s" in text
    assert "complete  val_dice 0.5  (2 epochs, 2s)  best 0.5" in text
    assert "infeasible  (0 epochs, 0s)  - input size 30x30 is not divisible by 8" in text
    assert "Training the best configuration (trial #0) for 3 more epochs" in text
    assert "Exported the best model to studies/x/best" in text


def test_progress_says_when_the_final_training_did_not_beat_its_trial() -> None:
    stream = io.StringIO()
    show = TextProgress("val_dice", stream, live=False)
    show({"event": "final_end", "trial": 1, "state": "complete", "trial_kept": True,
          "final_best": 0.1585, "trial_value": 0.9908, "model": "trials/0001/model.keras"})
    show({"event": "final_end", "trial": 2, "state": "complete", "trial_kept": False,
          "final_best": 0.8, "trial_value": 0.7, "model": "final/model.keras"})
    lines = stream.getvalue().splitlines()
    assert lines == ["  the final training's best average (0.1585) did not beat trial #1's 0.9908: "
                     "its checkpoint (trials/0001/model.keras) stays the best model"]


def test_progress_says_an_unchanged_export_is_up_to_date_not_exported() -> None:
    stream = io.StringIO()
    TextProgress("val_dice", stream, live=False)(
        {"event": "export", "path": "studies/x/best", "unchanged": True})
    text = stream.getvalue()
    assert "studies/x/best is up to date" in text and "Exported" not in text


def test_progress_shows_the_baseline_and_the_final_training_s_own_best() -> None:
    stream = io.StringIO()
    show = TextProgress("val_dice", stream, live=False)
    for event in (
        {"event": "study_start", "baseline": {"best_constant_class": 0, "class_name": "sky",
                                              "val_dice": 0.25, "val_mean_iou": 0.1}},
        {"event": "trial_end", "trial": 0, "index": 1, "trials_total": 1, "state": "complete",
         "value": 0.5, "epochs": 2, "baseline": 0.25},
        {"event": "epoch", "trial": 1, "index": 2, "trials_total": 2, "epoch": 1, "epochs": 2,
         "metrics": {"val_dice": 0.3, "val_dice_ema": 0.3}, "baseline": 0.25, "best_value": 0.5},
        {"event": "final_start", "trial": 0, "epochs": 3, "value": 0.5},
        {"event": "final_epoch", "epoch": 3, "epochs": 5, "own_best": 0.45, "best_value": 0.5,
         "metrics": {"val_dice": 0.45, "val_dice_ema": 0.45}, "eta_s": 8, "baseline": 0.25},
    ):
        show(event)
    text = stream.getvalue()
    assert "Baseline (a constant prediction, to beat clearly): every pixel class 0 (sky): " \
           "val_dice 0.2500, val_mean_iou 0.1000" in text
    assert "complete  val_dice 0.5 (baseline 0.25)" in text
    assert "epoch 1/2  val_dice 0.3 (avg 0.3)  baseline 0.25  best 0.5" in text
    assert "epoch 3/5  val_dice 0.45 (avg 0.45)  final best 0.45  trial 0.5  baseline 0.25  " \
           "left ~8s" in text
    assert "best 0.5" not in text.splitlines()[-1]


@pytest.mark.parametrize("direction, value, below", [("maximize", 0.18, True),
                                                     ("maximize", 0.3, False),
                                                     ("minimize", 0.3, True)])
def test_a_trial_below_the_baseline_says_so(direction, value, below) -> None:
    stream = io.StringIO()
    TextProgress("val_dice", stream, live=False, direction=direction)(
        {"event": "trial_end", "trial": 1, "index": 2, "trials_total": 2, "state": "complete",
         "value": value, "epochs": 1, "baseline": 0.23})
    text = stream.getvalue()
    assert (f"val_dice {value} (below the baseline 0.23)" in text) == below
    assert (f"val_dice {value} (baseline 0.23)" in text) == (not below)


def test_multi_architecture_params_are_shown_without_their_prefix() -> None:
    stream = io.StringIO()
    TextProgress("val_dice", stream, live=False)(
        {"event": "trial_start", "trial": 3, "index": 4, "trials_total": 8,
         "params": {"architecture": "unet", "unet/depth": 3, "unet/loss": "dice"}})
    assert "trial 4/8 (#3)  architecture=unet depth=3 loss=dice" in stream.getvalue()


def test_a_worker_on_a_gpu_is_shown_and_a_plain_one_is_not() -> None:
    stream = io.StringIO()
    show = TextProgress("val_dice", stream, live=False)
    show({"event": "worker_start", "pid": 11, "cuda_visible_devices": None, "memory_growth": []})
    assert stream.getvalue() == ""
    show({"event": "worker_start", "pid": 12, "cuda_visible_devices": "1",
          "memory_growth": ["/physical_device:GPU:0"]})
    show({"event": "worker_start", "pid": 13, "cuda_visible_devices": "2", "memory_growth": []})
    assert stream.getvalue().splitlines() == [
        "  worker process 12 on GPU 1, memory growth on for /physical_device:GPU:0",
        "  worker process 13 on GPU 2, TensorFlow sees no GPU",
    ]


def test_live_progress_rewrites_the_epoch_line() -> None:
    stream = io.StringIO()
    show = TextProgress("val_dice", stream, live=True)
    for event in EVENTS[1:4]:
        show(event)
    assert "\r\033[K  complete" in stream.getvalue()


def test_json_progress_writes_one_object_per_line() -> None:
    stream = io.StringIO()
    show = JsonProgress(stream)
    for event in EVENTS:
        show(event)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["event"] for line in lines] == [e["event"] for e in EVENTS]
    assert json.loads(lines[-1])["anything"] == 1.5


def test_format_trials_is_best_first() -> None:
    from segsearch.records import TrialRecord

    records = [TrialRecord(number=0, state="complete", architecture="unet", params={"depth": 2},
                           value=0.4, epochs=2, duration_s=65.0),
               TrialRecord(number=1, state="complete", architecture="unet", params={"depth": 3},
                           value=0.7, epochs=2, duration_s=5.0),
               TrialRecord(number=2, state="failed", architecture="unet", params={"depth": 4},
                           value=None, epochs=0, duration_s=1.0, reason="NaN loss")]
    lines = format_trials(records, "val_dice", "maximize").splitlines()
    assert lines[0].split()[:5] == ["#", "state", "val_dice", "epochs", "time"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "0", "2"]
    assert "1m05s" in lines[2] and "(NaN loss)" in lines[3]
    lowest = format_trials(records, "val_loss", "minimize").splitlines()[1:]
    assert [line.split()[0] for line in lowest] == ["0", "1", "2"]


def test_interrupt_says_how_to_resume_and_exits_130(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import segsearch.driver

    class Interrupted:
        def __init__(self, config: Any, fresh: bool = False, **options: Any) -> None:
            pass

        def run(self, progress: Any = None) -> Any:
            raise KeyboardInterrupt

    monkeypatch.setattr(segsearch.driver, "Study", Interrupted)
    code, _, err = _run(["run", "unet", "--study-dir", str(tmp_path / "s"), "--quiet"])
    assert code == 130
    assert "run the same command again to resume" in err and str(tmp_path / "s") in err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def optuna_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """One real search through the CLI in JSON mode (optuna, 2 trials).

    The trials train in this process: the worker process's own start-up (a TensorFlow import)
    is tested in test_robust.py and test_driver.py, which run real studies with it.
    """
    folder = tmp_path_factory.mktemp("cli") / "study"
    with pytest.MonkeyPatch.context() as patch:  # eager trials (tests/_faults.py): the command
        patch.setenv("SEGSEARCH_TEST_EAGER", "1")  # is tested here, graph mode in test_driver.py
        code, out, err = _run(["run", "unet", "--study-dir", str(folder), "--json", *TINY,
                               "--set", "train.isolation=none"])
    assert code == 0, err
    return folder, [json.loads(line) for line in out.splitlines()]


def test_run_json_mode_reports_every_event(optuna_study: tuple[Path, list[dict]]) -> None:
    folder, events = optuna_study
    kinds = [e["event"] for e in events]
    for kind in ("study_start", "trial_start", "epoch", "trial_end", "export", "study_end"):
        assert kind in kinds
    assert kinds[-1] == "result"
    assert kinds.count("trial_start") == 2
    result = events[-1]
    assert Path(result["best_model_path"]) == folder / "best" / "model.keras"
    assert Path(result["best_model_path"]).is_file() and len(result["trials"]) == 2
    epoch = next(e for e in events if e["event"] == "epoch")
    assert "val_dice" in epoch["metrics"] and epoch["trials_total"] == 2


def test_status_lists_trials_best_first(optuna_study: tuple[Path, list[dict]]) -> None:
    folder, _ = optuna_study
    code, out, err = _run(["status", str(folder)])
    assert code == 0, err
    lines = out.splitlines()
    assert "2 trials" in lines[0] and "val_dice" in lines[0]
    assert lines[1].split()[:5] == ["#", "state", "val_dice", "epochs", "time"]
    assert len(lines) >= 4
    assert lines[4].startswith("Best trial #") and "(moving average)" in lines[4]
    assert any(line.startswith("Exported model: val_dice") for line in lines)
    assert any(line.startswith("Baseline: every pixel class") for line in lines)
    code, out, _ = _run(["status", str(folder), "--json"])
    report = json.loads(out)
    values = [t["value"] for t in report["trials"] if t["state"] == "complete"]
    assert values == sorted(values, reverse=True) and report["objective"] == "val_dice"


def test_status_warns_when_the_model_does_not_beat_the_baseline(
        optuna_study: tuple[Path, list[dict]], tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(optuna_study[0], folder)
    stored = json.loads((folder / "baseline.json").read_text())
    stored["best"]["val_dice"] = 0.99  # a constant that no tiny model beats
    (folder / "baseline.json").write_text(json.dumps(stored))
    code, out, err = _run(["status", str(folder)])
    assert code == 0, err
    assert "WARNING: the best model (val_dice" in out and "clear margin" in out
    report = json.loads(_run(["status", str(folder), "--json"])[1])
    assert report["baseline"]["val_dice"] == 0.99 and report["verdict"]["clear"] is False


def test_export_then_predict(optuna_study: tuple[Path, list[dict]], tmp_path: Path) -> None:
    folder, _ = optuna_study
    code, out, err = _run(["export", str(folder)])
    assert code == 0, err
    assert "Exported the best model to" in out and (folder / "best" / "model.keras").is_file()
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 37), np.uint8)).save(
        images / "new.png")
    code, out, err = _run(["predict", str(folder), str(images), "--out", str(tmp_path / "o"),
                           "--overlay"])
    assert code == 0, err
    assert "Wrote 1 mask and 1 overlay to" in out
    mask = np.array(Image.open(tmp_path / "o" / "new.png"))
    assert mask.shape == (45, 37) and set(np.unique(mask)) <= {0, 255}
    code, _, err = _run(["predict", str(folder), str(images), "--out", str(tmp_path / "o")])
    assert code == 2 and "exists already and is kept" in err


def test_export_formats_adds_files_to_an_existing_study(
        optuna_study: tuple[Path, list[dict]], tmp_path: Path, monkeypatch) -> None:
    """`segsearch export --formats`: a format added without running again, each file checked;
    an unknown format or a missing extra is one line, exit 2, best/ untouched."""
    import importlib.util
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(optuna_study[0], folder)
    before = (folder / "best" / "export.json").read_text()
    code, _, err = _run(["export", str(folder), "--formats", "onx"])
    assert code == 2 and err.count("\n") == 1
    assert "--formats onx: unknown format 'onx'; did you mean 'onnx'?" in err
    real = importlib.util.find_spec
    with monkeypatch.context() as patch:
        patch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "tf2onnx" else real(name, *a))
        code, _, err = _run(["export", str(folder), "--formats", "litert,onnx"])
    assert code == 2 and err.count("\n") == 1
    assert "--formats: onnx needs tf2onnx, not installed; pip install 'segsearch[onnx]'" in err
    assert (folder / "best" / "export.json").read_text() == before
    assert not list(folder.glob(".best.*"))
    onnx = all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnx", "onnxruntime"))
    wanted = "litert,onnx" if onnx else "litert"
    code, out, err = _run(["export", str(folder), "--formats", wanted])
    assert code == 0, err
    assert "files checked against the Keras model on" in out and "model.tflite" in out
    files = sorted(p.name for p in (folder / "best").iterdir() if p.name.startswith("model"))
    assert files == (["model.keras", "model.onnx", "model.tflite"] if onnx else
                     ["model.keras", "model.tflite"])


@pytest.mark.slow  # resuming is the driver's (tests/test_driver.py); this checks the CLI path
def test_same_command_resumes_and_adds_missing_trials(
        optuna_study: tuple[Path, list[dict]]) -> None:
    folder, _ = optuna_study
    argv = ["run", "unet", "--study-dir", str(folder), *TINY, "--quiet"]
    argv[argv.index("--trials") + 1] = "3"
    code, out, err = _run(argv)
    assert code == 0, err
    assert len(out.splitlines()) == 1 and out.startswith("val_dice ")  # --quiet: the result only
    assert out.strip().endswith("model.keras")
    code, out, _ = _run(["status", str(folder), "--json"])
    assert sorted(t["number"] for t in json.loads(out)["trials"]) == [0, 1, 2]


@pytest.mark.slow
def test_keras_tuner_engine_end_to_end(tmp_path: Path) -> None:
    folder = tmp_path / "kt"
    code, out, err = _run(["run", "resunet", "--engine", "keras-tuner", "--study-dir",
                           str(folder), *TINY])
    assert code == 0, err
    assert "keras-tuner hyperband" in out and "trial 1/2" in out
    assert "Best trials:" in out and f"Best model: {folder / 'best' / 'model.keras'}" in out
    assert (folder / "best" / "model.keras").is_file()
    code, out, _ = _run(["status", str(folder)])
    assert code == 0 and "complete" in out


# ----------------------------------------------------------------------------------- data check
def _datahelpers() -> Any:
    """tests/data/datahelpers.py (the writers of data sets laid out as downloaded)."""
    import importlib.util

    path = REPO / "tests" / "data" / "datahelpers.py"
    spec = importlib.util.spec_from_file_location("datahelpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


DRIVE_SETS = ["--set", "data.images_dir=training/images",
              "--set", "data.masks_dir=training/1st_manual", "--set", r"data.pair=^(\d+)_"]


def test_data_check_takes_run_options_for_a_downloaded_layout(tmp_path: Path) -> None:
    root, _ = _datahelpers().write_drive(tmp_path / "DRIVE")
    code, out, err = _run(["data", "check", str(root), *DRIVE_SETS,
                           "--set", "data.class_names=[background, vessel]"])
    assert code == 0, err
    assert ("pairs            4 (training/images/ + training/1st_manual/, "
            "paired by data.pair '^(\\d+)_')") in out
    assert "40x48 x4 (height x width)" in out
    assert "0 background: 91.7%  1 vessel: 8.3%" in out
    # what `run --image-size auto` would choose here, beside the device-blind suggestion
    assert "on this machine, `segsearch run ... --image-size auto` would use:" in out
    assert "  data.image_size: [32, 32]  (the median image is 40x48" in out
    # without the options: the images are one level down, and the message says what to set
    code, out, err = _run(["data", "check", str(root)])
    assert code == 2 and err.count("\n") == 1
    assert "--set data.images_dir=training/images --set data.masks_dir=training/1st_manual" in err


def test_data_check_reads_a_space_file_data_section(tmp_path: Path) -> None:
    root, _ = _datahelpers().write_crack(tmp_path / "CRACK500")
    space = _space(tmp_path, "architecture: unet\ndata:\n  mat_key: groundTruth.Segmentation\n"
                             "  values: {1: 0, 2: 1}\n  class_names: [background, crack]\n")
    code, out, err = _run(["data", "check", str(root), "--space", space, "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and report["stop"] is None and report["counts"]["lone_images"] == 1
    assert report["classes"]["frequencies"] == pytest.approx([0.875, 0.125], abs=1e-6)
    assert report["classes"]["names"] == ["background", "crack"]
    assert [c["key"] for c in report["auto"]] == ["data.image_size", "train.batch_size"]


@pytest.mark.parametrize("sets", [["--set", "data.pairs=x"], ["--set", "data.pair=abc"],
                                  ["--set", "data.values={1:0}"],
                                  ["--set", "data.masks_dir=nowhere"]],
                         ids=["unknown key", "no group", "yaml", "no folder"])
def test_data_check_stops_with_the_message_run_gives(tmp_path: Path, sets: list[str]) -> None:
    root, _ = _datahelpers().write_drive(tmp_path / "DRIVE")
    sets = [*DRIVE_SETS, *sets]
    check_code, _, check_err = _run(["data", "check", str(root), *sets])
    run_code, _, run_err = _run(["run", "unet", "--data", str(root), "--study-dir",
                                 str(tmp_path / "s"), *TINY, *sets])
    assert check_code == run_code == 2
    assert check_err == run_err and check_err.startswith("segsearch: error: ")
    assert check_err.count("\n") == 1


def test_data_check_exits_2_where_run_would_stop(tmp_path: Path) -> None:
    """One pair reads fine but cannot be split: data check says so, with run's message."""
    image = np.zeros((32, 32), np.uint8)
    for sub in ("images", "masks"):
        (tmp_path / "one" / sub).mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / "one" / sub / "a.png")
    code, out, err = _run(["data", "check", str(tmp_path / "one")])
    assert code == 2
    assert "found 1 image/mask pair(s), but a train/validation split needs at least 2" in err
    assert "pairs            1" in out and err.count("\n") == 1
    run_code, _, run_err = _run(["run", "unet", "--data", str(tmp_path / "one"), "--study-dir",
                                 str(tmp_path / "s"), *TINY])
    assert run_code == 2 and run_err == err
    # the report's error count matches the errors it lists, and "1 readable pair" is not warned
    # about as "a validation set of 1": load stops, and that is the error
    assert "errors (1): load would stop at these" in out and "errors (0)" not in out
    assert "readable pairs" not in out


def test_data_check_an_unquoted_set_value_says_to_quote_it(tmp_path: Path) -> None:
    root, _ = _datahelpers().write_crack(tmp_path / "CRACK500")
    # what the shell hands over for: --set data.values={1: 0, 2: 1}
    code, out, err = _run(
        ["data", "check", str(root), "--set", "data.values={1:", "0,", "2:", "1}"]
    )
    assert code == 2 and out == "" and err.count("\n") == 1
    assert ("--set data.values={1: was cut at its spaces by the shell (unrecognized arguments: "
            "0, 2: 1}); quote the whole KEY=VALUE: --set 'data.values={1: 0, 2: 1}'") in err
    code, _, err = _run(["data", "check", str(root), "--set", "data.class_names=[a,", "b]"])
    assert code == 2 and "--set 'data.class_names=[a, b]'" in err
    code, _, err = _run(["data", "check", str(root), "surplus"])
    assert code == 2 and "unrecognized arguments: surplus" in err and "quote" not in err


def test_data_check_values_without_a_space_after_the_colon(tmp_path: Path) -> None:
    root, _ = _datahelpers().write_crack(tmp_path / "CRACK500")
    code, _, err = _run(["data", "check", str(root),
                         "--set", "data.mat_key=groundTruth.Segmentation",
                         "--set", "data.values={1:0, 2:1}"])
    assert code == 2 and err.count("\n") == 1
    assert ("data.values: read as {60: null, 121: null}: without a space after the colon YAML "
            "takes 1:0 for one key (the number 60) without a class id; write {1: 0, 2: 1} with a "
            "space after each colon: --set 'data.values={1: 0, 2: 1}'") in err


def test_data_check_a_pair_that_lost_its_backslashes(tmp_path: Path) -> None:
    root, _ = _datahelpers().write_drive(tmp_path / "DRIVE")
    code, _, err = _run(["data", "check", str(root), *DRIVE_SETS[:4], "--set", "data.pair=^(d+)_"])
    assert code == 2 and err.count("\n") == 1
    assert ("data.pair '^(d+)_' looks like it lost its backslashes (d+ matches the letter d, "
            "\\d+ a number): the shell or YAML ate them; quote the value: "
            "--set 'data.pair=^(\\d+)_'") in err


def test_data_check_drive_test_folder_for_validation(tmp_path: Path) -> None:
    """README's lines for DRIVE's own test/ split as the validation set."""
    import shutil

    root, _ = _datahelpers().write_drive(tmp_path / "DRIVE")
    for path in sorted((root / "training").rglob("2[12]_*")):
        (root / "test" / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "test" / path.parent.name / path.name.replace("training", "test"))
    val = ["--set", f"data.val_source={root}", "--set", "data.val_images_dir=test/images",
           "--set", "data.val_masks_dir=test/1st_manual"]
    code, out, err = _run(["data", "check", str(root), *DRIVE_SETS, *val])
    assert code == 0, err
    # the training folders themselves as validation: an error naming data.val_source
    code, out, err = _run(
        ["data", "check", str(root), *DRIVE_SETS, "--set", f"data.val_source={root}"]
    )
    assert code == 2 and "data.val_source: " in err and "training images" in err
    assert "errors (1): load would stop at these" in out


# ----------------------------------------------------------------------------------- failures
_PLANTED_FAULT = (
    '"""Test-only: every batch the input pipeline builds fails like a missing module."""\n'
    '''import segsearch.data.pipeline as pipeline


def transform(*args, **kwargs):
    raise ModuleNotFoundError("No module named 'scipy'", name="scipy")


pipeline.transform = transform
'''
)


@pytest.mark.slow
def test_an_error_in_the_workers_pipeline_shows_as_itself_and_the_fixed_run_trains_the_seeds(
        tmp_path: Path) -> None:
    import os

    site = tmp_path / "site"  # its sitecustomize plants the fault in every new interpreter
    site.mkdir()
    (site / "sitecustomize.py").write_text(_PLANTED_FAULT)
    folder = tmp_path / "study"
    argv = [sys.executable, "-m", "segsearch", "run", "unet", "--study-dir", str(folder), *TINY,
            "--set", "export.enabled=false"]
    env = {**_env(), "PYTHONPATH": f"{site}{os.pathsep}{REPO}"}
    broken = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert broken.returncode == 2, broken.stderr
    lines = broken.stderr.strip().splitlines()
    assert len(lines) == 1, broken.stderr
    assert lines[0].startswith("segsearch: error: the first 2 trials of this run failed with the "
                               "same error: ModuleNotFoundError while reading the data at "
                               "sitecustomize.py:")
    assert "No module named 'scipy'; install it: pip install scipy." in lines[0]
    assert "runs the failed trials again" in lines[0]
    assert "Graph execution error" not in broken.stdout + broken.stderr
    ends = [line for line in broken.stdout.splitlines() if line.startswith("  failed")]
    assert len(ends) == 2, broken.stdout
    assert all("- ModuleNotFoundError while reading the data" in line for line in ends)
    error = (folder / "trials" / "0001" / "error.txt").read_text()
    assert "Traceback (most recent call last)" in error and "sitecustomize.py" in error

    env["PYTHONPATH"] = str(REPO)  # the cause is fixed: the same command resumes
    fixed = subprocess.run([*argv, "--json"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert fixed.returncode == 0, fixed.stderr
    result = json.loads(fixed.stdout.strip().splitlines()[-1])
    trials = {t["number"]: t for t in result["trials"]}
    assert [(n, t["state"]) for n, t in sorted(trials.items())] == [
        (0, "failed"), (1, "failed"), (2, "complete"), (3, "complete")]
    # the seed network and its learning-rate neighbour, trained this time
    assert trials[2]["params"] == trials[0]["params"]
    assert trials[3]["params"] == trials[1]["params"]


def test_time_left_is_never_zero_while_an_epoch_is_still_to_run() -> None:
    """Near search.time_limit an epoch that starts runs to its end: the time left is at least
    one epoch until the limit has passed, and 0 after it (the trial stops at that epoch's end).
    The final training counts its own remaining epochs."""
    import time
    from types import SimpleNamespace

    from segsearch.driver import _Emitter

    config = SimpleNamespace(train=SimpleNamespace(final_epochs=2, epochs=3),
                             search=SimpleNamespace(trials=2, directions=["maximize"]))
    study = SimpleNamespace(config=config, deadline=None, budget_epochs=lambda: 6)
    events: list[dict] = []
    emit = _Emitter(events.append, study)
    emit({"event": "epoch", "trial": 0, "epoch": 1, "epochs": 3, "metrics": {"time_s": 100.0}})
    assert events[-1]["eta_s"] == pytest.approx(700.0)  # 2 x 3 + 2 epochs planned, 1 done
    study.deadline = time.monotonic() + 10  # the limit comes before the next epoch ends
    emit({"event": "epoch", "trial": 0, "epoch": 2, "epochs": 3, "metrics": {"time_s": 100.0}})
    assert events[-1]["eta_s"] == pytest.approx(100.0)  # one more epoch, not ~10s
    emit({"event": "final_epoch", "epoch": 4, "epochs": 5, "metrics": {"time_s": 100.0}})
    assert events[-1]["eta_s"] == pytest.approx(100.0)
    study.deadline = time.monotonic() - 1  # passed: training stops at this epoch's end
    emit({"event": "epoch", "trial": 0, "epoch": 3, "epochs": 3, "metrics": {"time_s": 100.0}})
    assert events[-1]["eta_s"] == 0.0


def test_a_space_that_cannot_fit_the_image_size_stops_before_the_study_exists(tmp_path):
    """Every configuration infeasible (depth 40 at 32x32): one line, exit 2, no study folder;
    the fix names a smaller depth, not an absurd image size."""
    study = tmp_path / "s"
    code, out, err = _run(["run", "unet", "--image-size", "32", "--trials", "1", "--epochs", "1",
                           "--study-dir", str(study), "--set", "space.depth=40",
                           "--set", "data.sample_count=24"])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "no configuration of the space can be built at image size 32x32" in err
    assert "use a smaller depth (at most 5 for 32x32)" in err and "such as" not in err
    assert not study.exists()


def test_a_mistyped_study_or_image_folder_gets_the_closest_name(tmp_path, monkeypatch):
    (tmp_path / "studies" / "unet").mkdir(parents=True)
    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(["status", "studies/unt"])
    assert code == 2 and "studies/unt: no such study folder (did you mean studies/unet?)" in err
    from segsearch.errors import DataError
    from segsearch.predict import _image_files

    with pytest.raises(DataError, match=r"foto: no such image file or folder \(did you mean "
                                        r"photos\?\)"):
        _image_files(Path("foto"))


def test_the_table_shows_a_short_reason_whole_and_a_long_one_by_its_first_clause() -> None:
    from segsearch.cli import _short_reason

    stale = "cut off: process 13 on vm is gone; the next run runs it again"
    assert _short_reason(stale) == stale
    infeasible = ("unet: input size 100x100 is not divisible by 16 (the total stride 2**depth with "
                  "depth=4); use an input size divisible by 16, such as 96 or 112, or a smaller "
                  "depth (at most 2 for 100x100)")
    assert _short_reason(infeasible) == ("unet: input size 100x100 is not divisible by 16 (the "
                                         "total stride 2**depth with depth=4)")
    assert _short_reason("x " * 100).endswith(" ...") and len(_short_reason("x " * 100)) <= 144
