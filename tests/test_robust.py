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
    # 11 images: 3 to validate, 8 to train in whole batches of 4 (a smaller last batch would
    # trace the training step a second time in every trial)
    x = rng.random((11, 32, 32, 1)).astype("float32")
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
    from segsearch.spacefile import load_config

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
    assert (
        "SIGSEGV" in results.trials[1].reason
        and "worker process died" in results.trials[1].reason
    )
    assert results.trials[1].failure == "environment"  # run again when the study resumes
    assert "SIGSEGV" in (results.study_dir / "trials" / "0001" / "error.txt").read_text()
    assert "retried once at batch size 2" in results.trials[2].reason
    # the first attempt's traceback is kept beside the retry's result
    assert "OOM when allocating" in (
        results.study_dir / "trials" / "0002" / "error-1.txt"
    ).read_text()
    # progress events flow from the worker process
    assert [e["trial"] for e in events if e["event"] == "epoch"] == [0, 2]
    ends = [e for e in events if e["event"] == "trial_end"]
    assert ends[1]["state"] == "failed" and "SIGSEGV" in ends[1]["reason"]
    # a new worker after the crash, on the GPU it was given (TensorFlow sees none here)
    starts = [e for e in events if e["event"] == "worker_start"]
    assert len(starts) == 2 and starts[0]["pid"] != starts[1]["pid"]
    assert all(e["cuda_visible_devices"] == "3" and e["memory_growth"] == [] for e in starts)


@pytest.mark.slow
def test_keras_tuner_trials_train_in_worker_processes_too(npz, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGSEARCH_FAULT", "1:segv")
    config = _config(npz, tmp_path / "kt", trials=2,
                     search={"engine": "keras-tuner", "algorithm": "random"})
    events = []
    results = Study(config).run(progress=events.append)
    states = [(r.number, r.state) for r in results.trials]
    assert states == [(0, "complete"), (1, "failed"), (2, "complete")]
    assert (
        "SIGSEGV" in results.trials[1].reason
        and "worker process died" in results.trials[1].reason
    )
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


@pytest.mark.slow
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


# ------------------------------------------------------------------ issue 12: one error path
def _run_cli(args: list, *, env: dict | None = None, preexec=None, timeout: int = 600,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m segsearch ARGS`` in a subprocess with this checkout first on the path."""
    repo = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, "-m", "segsearch", *map(str, args)], capture_output=True, text=True,
        timeout=timeout, preexec_fn=preexec, cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(repo), **(env or {})},
    )


def _error_lines(stderr: str) -> list[str]:
    """segsearch's own lines on stderr (TensorFlow's C++ start-up lines in a worker aside)."""
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("segsearch")]


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files and folders a write leaves when it is cut short."""
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


@pytest.fixture(scope="module")
def finished(npz, tmp_path_factory):
    """A finished 2-trial study with its export (copy it before changing it).

    Run by main() in this process, its trials too (train.isolation: none, no second TensorFlow
    import: the tests below are about the storage and the files, the worker process is
    test_a_trial_that_kills_its_process_fails_alone_and_oom_retries's); the tests that need a
    real process run the CLI on copies of it.
    """
    root = tmp_path_factory.mktemp("finished")
    space = _space(npz, root, train={"isolation": "none"},
                   export={"enabled": True, "overlays": 1, "saved_model": False})
    with pytest.MonkeyPatch.context() as patch:  # eager trials (tests/_faults.py): the storage
        patch.setenv("SEGSEARCH_TEST_EAGER", "1")  # and the files are tested, not the training
        code, _, err = _main("run", str(space), "--study-dir", str(root / "study"), "--quiet")
    assert code == 0, err[-3000:]
    return space, root / "study"


def _copy_study(finished, tmp_path) -> tuple[Path, Path]:
    import shutil

    space, folder = finished
    copy = tmp_path / "study"
    shutil.copytree(folder, copy)
    return space, copy


def _snapshot_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "study.db" and not p.name.startswith(".")}


def test_a_malformed_sqlite_file_is_one_line_in_status_and_run(finished, tmp_path):
    space, folder = _copy_study(finished, tmp_path)
    before = _snapshot_files(folder)
    os.truncate(folder / "study.db", 40000)
    for args in (["status", folder], ["run", space, "--study-dir", folder, "--quiet"]):
        result = _run_cli(args)
        assert result.returncode == 2, result.stderr[-3000:]
        lines = _error_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith("segsearch: error: "), lines
        assert str(folder / "study.db") in lines[0]
        assert "malformed" in lines[0] or "not a database" in lines[0], lines[0]
    assert _snapshot_files(folder) == before  # no trial, history or export touched
    assert not _leftovers(folder)


@pytest.mark.slow
def test_a_locked_sqlite_file_is_one_line(finished, tmp_path, monkeypatch):
    import sqlite3

    import sqlalchemy.engine

    from segsearch.cli import main

    _, folder = _copy_study(finished, tmp_path)
    create_engine = sqlalchemy.engine.create_engine

    def quick(url, *args, **kwargs):  # the lock timeout (segsearch waits 120 s) shortened to 1 s
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "timeout": 1}
        return create_engine(url, *args, **kwargs)

    monkeypatch.setattr(sqlalchemy.engine, "create_engine", quick)
    holder = sqlite3.connect(folder / "study.db", timeout=0.1)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the lock past the timeout
    try:
        code, text = _capture_main(main, ["status", str(folder)])
    finally:
        holder.rollback()
        holder.close()
    assert code == 2, text
    assert text.startswith("segsearch: error: ") and text.count("\n") == 1, text
    assert str(folder / "study.db") in text and "locked" in text


def _capture_main(main, argv):
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def test_an_unreachable_database_server_is_one_line_with_the_password_masked(npz, tmp_path):
    pytest.importorskip("psycopg2")
    space = _space(npz, tmp_path)
    url = "postgresql+psycopg2://someone:s3cret-pw@127.0.0.1:9/nowhere"  # port 9: nothing listens
    result = _run_cli(["run", space, "--study-dir", tmp_path / "study", "--storage", url])
    assert result.returncode == 2, result.stderr[-3000:]
    lines = _error_lines(result.stderr)
    assert len(lines) == 1 and "postgresql+psycopg2://someone:***@127.0.0.1:9/nowhere" in lines[0]
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "cannot connect" in lines[0] and "server is running" in lines[0]


def _limit_file_size(limit: int):
    def preexec() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit get EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_a_full_disk_during_a_checkpoint_stops_with_one_line_and_no_temporary_file(npz, tmp_path):
    # a checkpoint of 16 filters x depth 2 is ~1.5 MB; the storage and the other files are small
    space = _space(npz, tmp_path, space={"filters": 16, "depth": 2})
    folder = tmp_path / "study"
    result = _run_cli(["run", space, "--study-dir", folder, "--quiet"],
                      preexec=_limit_file_size(600_000))
    assert result.returncode == 2, result.stderr[-3000:]
    lines = _error_lines(result.stderr)
    assert len(lines) == 1, lines
    assert str(folder / "trials" / "0000" / "model.keras") in lines[0]
    assert "File too large" in lines[0] and "checkpoint of trial 0" in lines[0]
    assert not _leftovers(folder), _leftovers(folder)
    records = Study.open(folder).trials()  # the trial is cut off, to be run again
    assert [(r.number, r.state) for r in records] == [(0, "failed")]
    assert "cut off" in records[0].reason


def _tmpfs(path: Path, size: str, *options: str) -> None:
    import shutil

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join((f"size={size}", *options)),
                              "tmpfs", str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    mounts: list[Path] = []

    def mount(name: str, size: str, *options: str) -> Path:
        path = tmp_path / name
        _tmpfs(path, size, *options)
        mounts.append(path)
        return path

    yield mount
    for path in reversed(mounts):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_full_disk_during_the_export_keeps_the_old_export(finished, small_disk, tmp_path):
    import shutil

    disk = small_disk("disk", "16m")
    _, folder = finished
    copy = disk / "study"
    shutil.copytree(folder, copy)
    old = (copy / "best" / "export.json").read_bytes()
    with open(disk / "filler", "wb", buffering=0) as f:  # then free ~20 KB: less than the export
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass
    os.truncate(disk / "filler", os.path.getsize(disk / "filler") - 20_000)
    result = _run_cli(["export", copy])
    assert result.returncode == 2, result.stderr[-3000:]
    lines = _error_lines(result.stderr)
    assert len(lines) == 1 and str(copy / "best") in lines[0], lines
    assert "No space left on device" in lines[0] and "previous best/ is kept" in lines[0]
    assert (copy / "best" / "export.json").read_bytes() == old
    assert not _leftovers(copy) and not list(copy.glob(".best.*"))


def test_a_read_only_file_system_is_one_line(npz, small_disk, tmp_path):
    disk = small_disk("ro", "1m", "ro")
    space = _space(npz, tmp_path)
    result = _run_cli(["run", space, "--study-dir", disk / "study"])
    assert result.returncode == 2, result.stderr[-3000:]
    lines = _error_lines(result.stderr)
    assert len(lines) == 1 and str(disk / "study") in lines[0], lines
    assert "Read-only file system" in lines[0] and "--study-dir" in lines[0]


def test_status_into_a_closed_pipe_ends_quietly(finished):
    _, folder = finished
    repo = Path(__file__).resolve().parents[1]
    for extra in ([], ["--json"]):
        process = subprocess.Popen(
            [sys.executable, "-m", "segsearch", "status", str(folder), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(repo)})
        process.stdout.close()  # `| head -1` that has gone before the first line
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2 and err == "", err


# ------------------------------------------------------------------ issue 12: SIGTERM, stale trials
def _start(space: Path, folder: Path, fault: str) -> subprocess.Popen:
    repo = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-m", "segsearch", "run", str(space), "--study-dir", str(folder),
         "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(repo),
             "SEGSEARCH_FAULT": fault})


def _wait_for_trial(process: subprocess.Popen, trial: int) -> int:
    """Read --json events until ``trial`` starts; return the worker's pid."""
    worker = None
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "worker_start":
            worker = event["pid"]
        if event["event"] == "trial_start" and event["trial"] == trial:
            time.sleep(1.5)  # in its first batch (SEGSEARCH_FAULT makes it sleep there)
            return worker
    raise AssertionError(f"the run ended before trial {trial}: {process.stderr.read()[-2000:]}")


def _gone(pid: int, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("target", ["group", pytest.param("driver", marks=pytest.mark.slow)])
def test_sigterm_cuts_the_trial_off_and_exits_143(npz, tmp_path, target):
    # "group": a batch scheduler signals every process of the job; "driver": `kill PID`
    space, folder = _space(npz, tmp_path, trials=1), tmp_path / "study"
    run = _start(space, folder, "0:sleep")
    worker = _wait_for_trial(run, 0)
    t0 = time.monotonic()
    if target == "group":
        os.killpg(run.pid, signal.SIGTERM)
    else:
        run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err[-3000:]
    assert time.monotonic() - t0 < 30
    lines = _error_lines(err)
    assert lines[-1].startswith("segsearch: terminated (SIGTERM) after ")
    assert f"the study in {folder} is saved: run the same command again to resume it" in lines[-1]
    assert _gone(worker), f"the worker {worker} outlived the driver"
    records = Study.open(folder).trials()
    assert [(r.number, r.state) for r in records] == [(0, "failed")]
    assert "cut off" in records[0].reason
    assert not _leftovers(folder)


def test_status_marks_a_running_trial_of_a_killed_run_stale(npz, tmp_path):
    from segsearch.cli import main

    space, folder = _space(npz, tmp_path, trials=2), tmp_path / "study"
    run = _start(space, folder, "0:sleep")
    worker = _wait_for_trial(run, 0)
    os.killpg(run.pid, signal.SIGKILL)  # SIGTERM's grace ran out: nothing could record it
    run.communicate(timeout=60)
    assert _gone(worker)
    code, out = _capture_stdout(main, ["status", str(folder)])
    assert code == 0
    lines = out.splitlines()
    assert "1 trials (1 stale (cut off))" in lines[0]
    assert lines[2].split()[:2] == ["0", "stale"]
    assert f"(cut off: process {run.pid} on " in lines[2] and "next run runs it again" in lines[2]
    code, out = _capture_stdout(main, ["status", str(folder), "--json"])
    assert [t["state"] for t in json.loads(out)["trials"]] == ["stale"]


def _capture_stdout(main, argv):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def test_a_trial_without_heartbeats_on_another_machine_is_stale(tmp_path, monkeypatch):
    import optuna

    from segsearch.engines import optuna_engine
    from segsearch.engines.optuna_records import grace_period, optuna_records

    monkeypatch.setenv("SEGSEARCH_GRACE_PERIOD", "1")
    assert grace_period() == 1
    monkeypatch.delenv("SEGSEARCH_GRACE_PERIOD")
    assert grace_period() == optuna_engine.GRACE_PERIOD  # the engine's own
    monkeypatch.setenv("SEGSEARCH_GRACE_PERIOD", "1")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=optuna_engine.make_storage(url))
    alive = study.ask()
    alive.set_user_attr("host", "another-machine")
    alive.set_user_attr("pid", 1)
    study._storage.record_heartbeat(alive._trial_id)
    silent = study.ask()
    silent.set_user_attr("host", "another-machine")
    silent.set_user_attr("pid", 1)
    study._storage.record_heartbeat(silent._trial_id)
    time.sleep(2.2)
    study._storage.record_heartbeat(alive._trial_id)
    # opened the way `segsearch status` opens it: no heartbeat settings of its own
    plain = optuna.load_study(study_name="s", storage=url)
    states = {r.number: (r.state, r.reason) for r in optuna_records(plain, tmp_path, ["unet"])}
    assert states[0] == ("running", None)
    assert states[1][0] == "stale" and "no heartbeat for more than 1 s" in states[1][1]
    running = optuna.trial.TrialState.RUNNING
    assert [t.state for t in plain.get_trials()] == [running] * 2  # read only: nothing failed


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
def finished_study(finished):
    """The same finished 2-trial study with its export (copied by each test)."""
    return finished


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


def test_rebuild_keeps_the_numbering_so_no_trial_folder_is_overwritten(finished_study, tmp_path,
                                                                      monkeypatch):
    import optuna

    monkeypatch.setenv("SEGSEARCH_TEST_EAGER", "1")  # its one trial trains eagerly (_faults.py)
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


@pytest.mark.slow
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
@pytest.mark.slow
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


@pytest.mark.slow
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
