"""Issue 5: trials that cannot take a study down.

Default run (~60 s on 2 cores): a trial whose worker process dies (SIGSEGV) is recorded failed with
the signal and the study goes on, and an out-of-memory trial is retried at half the batch size; a
real ``segsearch run`` killed with SIGKILL mid-trial resumes to the exact count. (In-process
failures, out-of-memory skipping and max_failures: tests/engines/test_failures.py.)
Slow (``-m slow``): kills before the first trial ends and during the export, two workers on one
study (SQLite), two drivers started by hand, two workers on PostgreSQL.
Issue 12 (default run, ~2 min): a missing, empty or damaged storage is refused by status, export
and run and rebuilt from the trial folders with --rebuild-storage (Optuna and keras-tuner); a
storage password never reaches a file or the screen (PostgreSQL; skipped without it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from segsearch.driver import Study


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    rng = np.random.default_rng(2)
    x = rng.random((10, 32, 32, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    path = tmp_path_factory.mktemp("data") / "tiny32.npz"
    np.savez(path, images=x, masks=y)
    return path


def _raw(npz, trials=2, study="robust", **sections):
    raw = {
        "study": study,
        "architecture": "unet",
        "data": {"source": str(npz), "image_size": 32, "val_fraction": 0.3, "augment": 0},
        "train": {"epochs": 1, "batch_size": 4},
        "search": {"trials": trials, "pruner": "none"},
        "space": {"filters": 4, "depth": {"min": 1, "max": 2, "default": 1}},
        "export": {"enabled": False},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def _config(npz, folder, **kw):
    from segsearch.config import load_config

    return load_config(_raw(npz, **kw), study_dir=folder, check_space=False)


# ------------------------------------------------------------------ isolation, out of memory
def test_a_trial_that_kills_its_process_fails_alone_and_oom_retries(npz, tmp_path, monkeypatch):
    # trial 1 segfaults its worker; trial 2 runs out of memory at batch 4 and is retried at 2
    monkeypatch.setenv("SEGSEARCH_FAULT", "1:segv,2:oom")
    config = _config(npz, tmp_path / "s", trials=2, train={"oom_retry": True},
                     search={"gpus": "3"})  # no GPU here: the id only reaches the worker
    assert config.train.isolation == "process"
    events = []
    results = Study(config).run(progress=events.append)
    states = [(r.number, r.state) for r in results.trials]
    assert states == [(0, "complete"), (1, "failed"), (2, "complete")]
    assert "SIGSEGV" in results.trials[1].reason and "worker process died" in results.trials[1].reason
    assert results.trials[1].failure == "environment"  # run again when the study resumes
    assert "SIGSEGV" in (results.study_dir / "trials" / "0001" / "error.txt").read_text()
    assert "retried once at batch size 2" in results.trials[2].reason
    # the first attempt's traceback is kept beside the retry's result
    assert "OOM when allocating" in (results.study_dir / "trials" / "0002" / "error-1.txt").read_text()
    # progress events flow from the worker process
    assert [e["trial"] for e in events if e["event"] == "epoch"] == [0, 2]
    ends = [e for e in events if e["event"] == "trial_end"]
    assert ends[1]["state"] == "failed" and "SIGSEGV" in ends[1]["reason"]
    # a new worker after the crash, on the GPU it was given (TensorFlow sees none here)
    starts = [e for e in events if e["event"] == "worker_start"]
    assert len(starts) == 2 and starts[0]["pid"] != starts[1]["pid"]
    assert all(e["cuda_visible_devices"] == "3" and e["memory_growth"] == [] for e in starts)


def test_keras_tuner_trials_train_in_worker_processes_too(npz, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGSEARCH_FAULT", "1:segv")
    config = _config(npz, tmp_path / "kt", trials=2,
                     search={"engine": "keras-tuner", "algorithm": "random"})
    events = []
    results = Study(config).run(progress=events.append)
    states = [(r.number, r.state) for r in results.trials]
    assert states == [(0, "complete"), (1, "failed"), (2, "complete")]
    assert "SIGSEGV" in results.trials[1].reason and "worker process died" in results.trials[1].reason
    # built in the worker from the trial's keras-tuner values: the seed network first
    assert results.trials[0].params["depth"] == 1
    assert [e["trial"] for e in events if e["event"] == "epoch"] == [0, 2]
    # the reason is reported once, by segsearch; keras-tuner does not print the traceback
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------ kill -9 and resume
def _cli(space: Path, folder: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "segsearch", "run", str(space), "--study-dir", str(folder),
         "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )


def _kill_when(process: subprocess.Popen, predicate, folder: Path | None = None) -> None:
    """SIGKILL the run when a --json event (or the folder) satisfies ``predicate``."""
    for line in process.stdout:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if predicate(event):
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            return
    process.wait(30)
    raise AssertionError(f"the run ended (rc {process.returncode}) before the kill point")


def _check_finished(folder: Path, trials: int) -> None:
    records = Study.open(folder).trials()
    finished = [r for r in records if r.state in ("complete", "pruned")]
    assert len(finished) == trials, [(r.number, r.state, r.reason) for r in records]
    assert len({r.number for r in finished}) == trials
    assert not [r for r in records if r.state == "running"]


def _space(npz, tmp_path, trials=2, **kw) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(_raw(npz, trials=trials, **kw)))
    return path


def test_kill_9_mid_trial_then_resume_gives_the_exact_count(npz, tmp_path):
    space, folder = _space(npz, tmp_path), tmp_path / "study"
    run = _cli(space, folder)
    _kill_when(run, lambda e: e.get("event") == "epoch" and e.get("trial") == 1)
    again = _cli(space, folder)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-2000:]
    _check_finished(folder, 2)
    records = Study.open(folder).trials()
    assert any(r.reason and "cut off" in r.reason for r in records)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before_first_trial_end", "export"])
def test_kill_9_at_other_points_then_resume(npz, tmp_path, point):
    space = _space(npz, tmp_path, export={"enabled": True, "overlays": 1, "saved_model": False})
    folder = tmp_path / "study"
    if point == "before_first_trial_end":
        run = _cli(space, folder)
        _kill_when(run, lambda e: e.get("event") == "trial_start")
    else:
        first = _cli(space, folder)
        assert first.wait(600) == 0
        # a new export: one more trial, killed while best/ is being written
        space = _space(npz, tmp_path, trials=3,
                       export={"enabled": True, "overlays": 1, "saved_model": False})
        old = json.loads((folder / "best" / "export.json").read_text())
        run = _cli(space, folder)
        while run.poll() is None and not list(folder.glob(".best.tmp-*")):
            time.sleep(0.01)  # kill while the new best/ is being written beside the old one
        assert run.poll() is None, "the run ended before its export"
        run.send_signal(signal.SIGKILL)
        run.wait(30)
        Study.open(folder)  # finishes or rolls back the cut-off export
        manifest = json.loads((folder / "best" / "export.json").read_text())
        assert (folder / "best" / "model.keras").exists()
        assert not list(folder.glob(".best.tmp-*"))
        killed_key = manifest["key"]
    again = _cli(space, folder)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-2000:]
    _check_finished(folder, 3 if point == "export" else 2)
    final = json.loads((folder / "best" / "export.json").read_text())
    if point == "export":  # best/ was the old export or the new one, never a mix
        assert killed_key in (old["key"], final["key"])


@pytest.mark.slow
def test_two_workers_on_one_study_give_the_exact_count(npz, tmp_path):
    space, folder = _space(npz, tmp_path, trials=4), tmp_path / "study"
    run = _cli(space, folder, "--workers", "2", "--gpus", "0,1")
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out[-2000:]
    _check_finished(folder, 4)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    gpus = {e["cuda_visible_devices"] for e in events if e.get("event") == "worker_start"}
    assert gpus == {"0", "1"}  # each worker its own GPU
    records = [r for r in Study.open(folder).trials() if r.state == "complete"]
    spans = sorted((r.started, r.finished) for r in records)
    assert any(b[0] <= a[1] for a, b in zip(spans, spans[1:]))  # two trials ran at once


@pytest.mark.slow
def test_two_drivers_started_by_hand_share_one_study(npz, tmp_path):
    space, folder = _space(npz, tmp_path, trials=4), tmp_path / "study"
    first = _cli(space, folder)
    for line in first.stdout:  # the second starts once the first has made the study
        if '"trial_start"' in line:
            break
    second = _cli(space, folder)
    out2, _ = second.communicate(timeout=600)
    first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, out2[-2000:]
    _check_finished(folder, 4)


@pytest.mark.slow
def test_two_workers_on_postgresql(npz, tmp_path, postgres_url):
    space = _space(npz, tmp_path, trials=3, study=f"robust-pg-{os.getpid()}-{time.time_ns()}")
    folder = tmp_path / "study"
    run = _cli(space, folder, "--workers", "2", "--storage", postgres_url)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out[-2000:]
    _check_finished(folder, 3)


# ------------------------------------------------------------------ configuration
def test_robustness_settings_are_checked(npz, tmp_path):
    from segsearch.errors import ConfigError

    config = _config(npz, tmp_path / "s", search={"workers": 2, "gpus": "0,1", "max_failures": 3},
                     train={"isolation": "none", "oom_retry": True})
    assert (config.search.workers, config.search.gpus, config.search.max_failures) == (2, "0,1", 3)
    assert (config.train.isolation, config.train.oom_retry) == ("none", True)
    with pytest.raises(ConfigError, match="train.isolation.*process"):
        _config(npz, tmp_path / "s", train={"isolation": "thread"})
    with pytest.raises(ConfigError, match="search.workers.*engine optuna"):
        _config(npz, tmp_path / "s", search={"workers": 2, "engine": "keras-tuner"})
    with pytest.raises(ConfigError, match="search.gpus"):
        _config(npz, tmp_path / "s", search={"gpus": "first"})


def test_out_of_memory_errors_are_recognised():
    from segsearch.engines.trial import is_out_of_memory
    from segsearch.engines.worker import describe_exit

    class ResourceExhaustedError(Exception):
        pass

    assert is_out_of_memory(ResourceExhaustedError("OOM when allocating tensor"))
    assert is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to "
                                         "allocate 1.2GiB"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20 MiB"))
    assert not is_out_of_memory(ValueError("shapes (4, 3) and (2,) are incompatible"))
    assert "SIGKILL" in describe_exit(-9) and "out-of-memory killer" in describe_exit(-9)
    assert describe_exit(3) == "exit code 3"


# ------------------------------------------------------------------ issue 12: storage lost
def _main(*argv: str) -> tuple[int, str, str]:
    """segsearch's main() in this process: (exit status, stdout, stderr)."""
    import contextlib
    import io

    from segsearch.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of the trials, trials.csv and best/ (what must never be lost or overwritten)."""
    files = [p for p in folder.rglob("*") if p.is_file() and (
        p.name == "trials.csv" or "trials" in p.relative_to(folder).parts[:1]
        or p.relative_to(folder).parts[0] == "best")]
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def finished_study(npz, tmp_path_factory):
    """A finished Optuna study of 2 trials with its export (copied by each test)."""
    base = tmp_path_factory.mktemp("finished")
    space = _space(npz, base, export={"enabled": True, "overlays": 1, "saved_model": False})
    code, out, err = _main("run", str(space), "--study-dir", str(base / "study"), "--quiet")
    assert code == 0, err
    return space, base / "study"


def _copy(study: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "study"
    shutil.copytree(study, target)
    return target


@pytest.mark.parametrize("damage", ["empty", "missing", "garbage", "malformed"])
def test_a_lost_storage_is_never_recreated(finished_study, tmp_path, damage):
    space, original = finished_study
    folder = _copy(original, tmp_path)
    db = folder / "study.db"
    if damage == "empty":
        db.write_bytes(b"")
    elif damage == "missing":
        db.unlink()
    elif damage == "garbage":
        db.write_bytes(os.urandom(4096))
    else:  # truncate -s: the end of the database is gone
        with open(db, "r+b") as f:
            f.truncate(db.stat().st_size // 2)
    damaged = db.read_bytes() if db.exists() else None
    before = _snapshot(folder)
    for argv in (["status", str(folder)], ["export", str(folder)],
                 ["run", str(space), "--study-dir", str(folder)]):
        code, out, err = _main(*argv)
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and err.startswith(f"segsearch: error: {db}: "), err
        assert "--rebuild-storage" in err and "Traceback" not in err
        # nothing written: the storage is left as it was, no trial or export touched
        assert (db.read_bytes() if db.exists() else None) == damaged
        assert _snapshot(folder) == before
    assert "the same command with --rebuild-storage" in err
    # the recovery: the records come back from trials/, nothing is trained or overwritten
    code, out, err = _main("run", str(space), "--study-dir", str(folder), "--rebuild-storage")
    assert code == 0, err
    assert "Rebuilt the study's records (2 trials)" in out and "trial 1/" not in out
    assert _snapshot(folder) == before
    kept = list(folder.glob("study.db.broken-*"))
    assert len(kept) == (1 if damage in ("garbage", "malformed") else 0)
    if kept:
        assert kept[0].read_bytes() == damaged
    rebuilt = Study.open(folder).trials()
    first = json.loads((folder / "trials" / "0000" / "trial.json").read_text())
    assert [(r.number, r.state) for r in rebuilt] == [(0, "complete"), (1, "complete")]
    assert rebuilt[0].value == first["value"] and rebuilt[0].params == first["params"]
    # and a second --rebuild-storage has nothing to do
    code, _, err = _main("run", str(space), "--study-dir", str(folder), "--rebuild-storage")
    assert code == 2 and "nothing to rebuild" in err


def test_rebuild_keeps_the_numbering_so_no_trial_folder_is_overwritten(finished_study, tmp_path):
    import optuna

    space, original = finished_study
    folder = _copy(original, tmp_path)
    (folder / "study.db").unlink()
    # trial 0's record is gone (as after a cut-off trial): its number stays taken
    (folder / "trials" / "0000" / "trial.json").unlink()
    history0 = (folder / "trials" / "0000" / "history.csv").read_bytes()
    record1 = (folder / "trials" / "0001" / "trial.json").read_bytes()
    # status and export before the rebuild (1 record left) refuse as well
    assert _main("status", str(folder))[0] == 2
    code, out, err = _main("run", str(space), "--study-dir", str(folder), "--rebuild-storage",
                           "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [e["trials"] for e in events if e["event"] == "storage_rebuilt"] == [2]
    # one trial was missing from the 2 finished ones: it runs as #2, in a new folder
    assert [e["trial"] for e in events if e["event"] == "trial_start"] == [2]
    assert (folder / "trials" / "0000" / "history.csv").read_bytes() == history0
    assert (folder / "trials" / "0001" / "trial.json").read_bytes() == record1
    records = Study.open(folder).trials()
    assert [(r.number, r.state) for r in records] == [(0, "failed"), (1, "complete"),
                                                      (2, "complete")]
    assert "rebuilt storage" in records[0].reason
    # the rebuilt trials are real Optuna trials: distributions, values, per-epoch reports
    study = optuna.load_study(study_name="robust", storage=f"sqlite:///{folder / 'study.db'}")
    trial1 = study.trials[1]
    assert trial1.distributions and trial1.value == records[1].value
    assert trial1.intermediate_values == {1: pytest.approx(records[1].value)}


def test_keras_tuner_project_lost_then_rebuilt(npz, tmp_path):
    import shutil

    space = _space(npz, tmp_path, search={"engine": "keras-tuner", "algorithm": "random"})
    folder = tmp_path / "study"
    assert _main("run", str(space), "--study-dir", str(folder), "--quiet")[0] == 0
    before = _snapshot(folder)
    shutil.rmtree(folder / "keras_tuner")
    for argv in (["status", str(folder)], ["run", str(space), "--study-dir", str(folder)]):
        code, _, err = _main(*argv)
        assert code == 2 and "keras_tuner: the folder is missing" in err, err
        assert not (folder / "keras_tuner").exists() and _snapshot(folder) == before
    code, out, err = _main("run", str(space), "--study-dir", str(folder), "--rebuild-storage")
    assert code == 0, err
    assert "trial 1/" not in out and _snapshot(folder) == before
    records = Study.open(folder).trials()
    assert [(r.number, r.state) for r in records] == [(0, "complete"), (1, "complete")]
    # one more trial: a new number, the old folders untouched
    space3 = _space(npz, tmp_path, trials=3, search={"engine": "keras-tuner",
                                                     "algorithm": "random"})
    code, out, err = _main("run", str(space3), "--study-dir", str(folder), "--json")
    assert code == 0, err
    starts = [json.loads(line)["trial"] for line in out.splitlines()
              if '"trial_start"' in line]
    assert starts == [2]
    for name in ("trials/0000/history.csv", "trials/0001/history.csv"):
        assert (folder / name).read_bytes() == before[name]


# ------------------------------------------------------------------ issue 12: credentials
def test_an_unreachable_storage_leaves_no_folder_and_no_password(npz, tmp_path):
    space, folder = _space(npz, tmp_path), tmp_path / "study"
    code, out, err = _main("run", str(space), "--study-dir", str(folder), "--storage",
                           "postgresql://me:s3cret@127.0.0.1:1/segsearch")
    assert code == 2 and err.count("\n") == 1
    assert "postgresql+psycopg2://me:***@127.0.0.1:1/segsearch: cannot connect" in err
    assert "s3cret" not in out + err and not folder.exists()


def test_postgresql_password_never_lands_on_disk_or_screen(npz, tmp_path, postgres_url,
                                                           monkeypatch):
    from sqlalchemy.engine import make_url

    # the test server trusts the loopback address, so any password connects
    url = make_url(postgres_url).set(drivername="postgresql", password="s3cret")
    full = url.render_as_string(hide_password=False)
    masked = url.render_as_string(hide_password=True)  # stored as given, password masked
    study = f"pw-{os.getpid()}-{time.time_ns()}"
    space, folder = _space(npz, tmp_path, trials=1, study=study), tmp_path / "study"
    monkeypatch.delenv("SEGSEARCH_STORAGE", raising=False)
    code, out, err = _main("run", str(space), "--study-dir", str(folder), "--storage", full)
    assert code == 0, err
    assert "s3cret" not in out + err
    assert json.loads((folder / "study.json").read_text())["storage"] == masked
    assert not [p for p in folder.rglob("*") if p.is_file() and b"s3cret" in p.read_bytes()]
    # later: the stored URL has no password; it comes from SEGSEARCH_STORAGE
    code, _, err = _main("status", str(folder))
    assert code == 2 and "set SEGSEARCH_STORAGE" in err and "s3cret" not in err
    monkeypatch.setenv("SEGSEARCH_STORAGE", full)
    code, out, err = _main("status", str(folder))
    assert code == 0 and "1 trials (1 complete)" in out, err
    # resume without --storage: the stored storage, not a new SQLite study in the folder
    code, out, err = _main("run", str(space), "--study-dir", str(folder))
    assert code == 0 and "1 of 1 trials done" in out and not (folder / "study.db").exists(), err
    code, out, err = _main("run", str(space), "--study-dir", str(folder), "--storage", full,
                           "--fresh")
    assert code == 2 and "lives in the storage" in err and ":***@" in err
    assert "s3cret" not in out + err

# ------------------------------------------------------------------ the final training
def test_a_worker_killed_in_the_final_training_exits_3_and_the_next_run_retries_it(npz, tmp_path):
    space = _space(npz, tmp_path, trials=1, train={"final_epochs": 1},
                   export={"enabled": True, "saved_model": False, "overlays": 0})
    folder = tmp_path / "study"
    argv = [sys.executable, "-m", "segsearch", "run", str(space), "--study-dir", str(folder)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # the trial trains epoch 1; the final training goes on with epoch 2, where the worker dies
    first = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                           env={**env, "SEGSEARCH_FAULT": "-1:kill@2"})
    assert first.returncode == 3, first.stderr[-2000:]
    assert "Traceback" not in first.stderr, first.stderr
    err = first.stderr.strip().splitlines()[-1]  # after TensorFlow's own start-up lines
    assert err.startswith("segsearch: error: the final training of the best configuration "
                          "(trial #0) failed: the final training's worker process died (killed "
                          "by SIGKILL"), err
    assert "The best trial's checkpoint was exported instead" in err
    assert "run the same command again to retry the final training" in err
    final = json.loads((folder / "final" / "final.json").read_text())
    assert final["final_state"] == "failed" and final["model"] == "trials/0000/model.keras"
    assert (folder / "best" / "model.keras").is_file()  # the trial's checkpoint, exported

    again = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Training the best configuration (trial #0) for 1 more epoch" in again.stdout
    final = json.loads((folder / "final" / "final.json").read_text())
    assert final["final_state"] == "complete" and final["epochs"] == 1
    _check_finished(folder, 1)


def test_the_worker_process_is_recycled_after_train_worker_max_trials(npz, tmp_path):
    config = _config(npz, tmp_path / "recycle", trials=3,
                     train={"worker_max_trials": 2, "final_epochs": 0})
    events = []
    results = Study(config).run(progress=events.append)
    assert [r.state for r in results.trials] == ["complete"] * 3
    starts = [e for e in events if e["event"] == "worker_start"]
    assert len(starts) == 2 and starts[0]["pid"] != starts[1]["pid"]
    memory = [e for e in events if e["event"] == "worker_memory"]
    assert [e["trials"] for e in memory] == [1, 2, 1]
    assert all(e["rss_mib"] > 100 and e["growth_mib"] is not None for e in memory)
    (recycled,) = [e for e in events if e["event"] == "worker_recycle"]
    assert recycled["pid"] == starts[0]["pid"] and "train.worker_max_trials" in recycled["reason"]
