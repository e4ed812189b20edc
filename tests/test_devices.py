"""Issue 14.1-3: no process preallocates the GPU, several workers a GPU, where trials spend time.

No GPU is needed: the slots are planned with fake GPU ids (what each worker's environment gets),
``nvidia-smi`` is replaced by a fake one, and one small study (~1 min on 2 cores, TensorFlow; the
driver in a process of its own) runs two workers sharing fake GPU 5 with an injected
out-of-memory error (tests/_faults.py), its export and final training in the worker, while the
driver's TensorFlow context stays uninitialised.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segsearch import devices
from segsearch.devices import GpuInfo, Slot, plan_slots, worker_environment
from segsearch.errors import ConfigError


# ------------------------------------------------------------------ slots and environments
def test_two_gpus_two_per_gpu_make_four_pinned_workers_with_their_memory_share():
    slots = plan_slots(None, "0,1", 2, found=[GpuInfo("0", 80000), GpuInfo("1", 80000)])
    assert [s.gpu for s in slots] == ["0", "1", "0", "1"]
    assert {s.sharing for s in slots} == {2} and slots[0].share == 0.45
    assert slots[0].memory_mib == 80000
    env = worker_environment(slots[1], {})
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450"
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_a_worker_alone_on_its_gpu_takes_memory_as_needed_without_a_cap():
    (slot,) = plan_slots(None, "3", None)
    assert (slot.gpu, slot.sharing, slot.share) == ("3", 1, None)
    env = worker_environment(slot, {})
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env
    # what the user set stays; unpinned workers keep the inherited CUDA_VISIBLE_DEVICES
    user = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.2"}
    env = worker_environment(Slot(None, 2), user)
    assert "CUDA_VISIBLE_DEVICES" not in env and "XLA_PYTHON_CLIENT_PREALLOCATE" not in env
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env


def test_workers_given_spread_over_the_gpus_in_turn_and_share_by_count():
    slots = plan_slots(3, "0,1", None)
    assert [(s.gpu, s.sharing) for s in slots] == [("0", 2), ("1", 1), ("0", 2)]
    # workers_per_gpu without ids: the GPUs found; none found (a CPU): that many, unpinned
    found = [GpuInfo("2", 24000), GpuInfo("3", 24000)]
    assert [s.gpu for s in plan_slots(None, None, 2, found=found)] == ["2", "3", "2", "3"]
    assert [(s.gpu, s.sharing) for s in plan_slots(None, None, 2, found=[])] == [(None, 2)] * 2
    assert plan_slots(None, None, None) == [Slot()]


def test_tf_xla_cache_goes_to_the_study_folder(tmp_path):
    env = worker_environment(Slot(), {"TF_XLA_FLAGS": "--tf_xla_auto_jit=0"}, study_dir=tmp_path)
    assert env["TF_XLA_FLAGS"] == (f"--tf_xla_auto_jit=0 --tf_xla_persistent_cache_directory="
                                   f"{tmp_path / 'cache' / 'tf_xla'}")
    spaced = tmp_path / "a b"
    assert "TF_XLA_FLAGS" not in worker_environment(Slot(), {}, study_dir=spaced)


def test_visible_gpus_come_from_nvidia_smi_and_cuda_visible_devices(monkeypatch):
    listed = (GpuInfo("0", 81559, "H100"), GpuInfo("1", 81559, "H100"))
    monkeypatch.setattr(devices, "_nvidia_smi", lambda: listed)
    assert devices.visible_gpus({}) == list(listed)
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "1"}) == [listed[1]]
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    monkeypatch.setattr(devices, "_nvidia_smi", lambda: ())
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "0"}) == []  # no GPU on this machine


def test_the_driver_environment_takes_no_memory_ahead():
    env = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"}
    devices.quiet_accelerators(env)
    assert env == {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5", "XLA_PYTHON_CLIENT_PREALLOCATE":
                   "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


# ------------------------------------------------------------------ the configuration's rule
def _search(**search):
    from segsearch.spacefile import SearchConfig

    return SearchConfig(**search)


def test_workers_follow_gpus_times_workers_per_gpu_and_a_contradiction_is_an_error():
    assert _search(gpus="0,1", workers_per_gpu=2).workers == 4
    assert _search(gpus="0,1").workers == 2  # one worker per GPU
    assert _search(gpus="0,1", workers=4, workers_per_gpu=2).workers == 4
    assert _search(gpus="0,1", workers=3).workers == 3  # given: spread in turn
    assert _search().workers == 1
    assert _search(workers_per_gpu=2).workers is None  # from the GPUs found at the start
    with pytest.raises(ConfigError, match=r"search.workers: 3 contradicts search.gpus '0,1' "
                                          r"with search.workers_per_gpu 2, which make 4"):
        _search(gpus="0,1", workers=3, workers_per_gpu=2)
    with pytest.raises(ConfigError, match="search.workers_per_gpu.*engine optuna"):
        _search(workers_per_gpu=2, engine="keras-tuner")
    with pytest.raises(ConfigError, match="search.workers_per_gpu: must be >= 1"):
        _search(workers_per_gpu=0)
    assert _search(gpus="0,1", engine="keras-tuner").workers == 1


def test_the_cli_sets_workers_per_gpu():
    from segsearch.cli import build_parser

    args = build_parser().parse_args(["run", "unet", "--gpus", "0,1", "--workers-per-gpu", "2"])
    assert (args.gpus, args.workers_per_gpu) == ("0,1", 2)


# ------------------------------------------------------------------ one small study
_STUDY_SCRIPT = """
import os
import pickle
import sys
from pathlib import Path

import numpy as np


def main(folder):
    from segsearch.driver import Study
    from segsearch.spacefile import load_config

    # 11 images: 3 to validate, 8 to train in whole batches of 4 (a smaller last batch would
    # trace the training step a second time in every trial)
    x = np.random.default_rng(3).random((11, 32, 32, 1)).astype("float32")
    np.savez(folder / "tiny.npz", images=x, masks=(x > 0.5).astype("float32"))
    config = load_config({
        "study": "shared-gpu",
        "architecture": "unet",
        "data": {"source": str(folder / "tiny.npz"), "image_size": 32, "val_fraction": 0.3,
                 "augment": 0},
        "train": {"epochs": 2, "batch_size": 4, "final_epochs": 1},
        "search": {"trials": 3, "pruner": "none", "gpus": "5", "workers_per_gpu": 2},
        "space": {"filters": 4, "depth": {"min": 1, "max": 2, "default": 1}},
        "export": {"overlays": 1},
    }, study_dir=folder / "s", check_space=False)
    events = []
    results = Study(config).run(progress=events.append)
    from tensorflow.python.eager import context

    ctx = context.context_safe()
    driver = {"initialised": ctx is not None and ctx._initialized,
              "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")}
    with open(folder / "study.pickle", "wb") as f:
        pickle.dump((config, results, events, driver), f)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def shared_gpu_study(tmp_path_factory):
    """Two workers on (fake) GPU 5, trial 2 out of memory once; export and final training on.

    The driver runs in a process of its own (the other tests run ops in this one), so that the
    state of its TensorFlow context after the search says whether it ever touched a device.
    """
    import pickle

    folder = tmp_path_factory.mktemp("devices")
    script = folder / "shared_gpu.py"
    script.write_text(_STUDY_SCRIPT)
    env = {**os.environ, "SEGSEARCH_FAULT": "2:oom", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    env.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
    run = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(folder / "study.pickle", "rb") as f:
        config, results, events, driver = pickle.load(f)
    return config, results, events, driver


def test_workers_share_the_gpu_pinned_with_their_share_and_no_backend_before(shared_gpu_study):
    config, _, events, _ = shared_gpu_study
    assert config.search.workers == 2
    starts = [e for e in events if e["event"] == "worker_start"]
    assert len(starts) == 2 and len({e["pid"] for e in starts}) == 2
    for start in starts:
        assert start["cuda_visible_devices"] == "5" and start["sharing"] == 2
        assert start["environment"]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450"
        assert start["environment"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        assert start["backends_before_env"] == []  # the environment came before any backend
        assert start["devices"] == [] and start["backend"] == "tensorflow"  # no GPU here
        assert start["start_s"] > 0
    # the first trial of each worker counts its start; the search's threads ended, and the
    # worker they started still trained the final training and exported (no parent-death kill)
    assert sum(t.timings.get("worker_start", 0) > 0 for t in shared_gpu_study[1].trials) == 2


def test_the_driver_never_initialises_a_device(shared_gpu_study):
    """The search with its final training and export: the driver's TensorFlow context is never
    initialised."""
    _, results, _, driver = shared_gpu_study
    assert (results.study_dir / "best" / "model.keras").is_file()
    assert results.final_epochs == 1
    assert driver["initialised"] is False
    assert driver["preallocate"] == "false"  # the driver's own safety net


def test_an_oom_on_a_shared_gpu_is_retried_at_half_batch_and_recorded(shared_gpu_study):
    _, results, events, _ = shared_gpu_study
    trial = next(t for t in results.trials if t.number == 2)
    assert trial.state == "complete" and trial.batch_size == 2
    assert "retried once at batch size 2" in trial.reason
    retry = [e for e in events if e["event"] == "oom_retry"]
    assert [(e["trial"], e["batch_size"], e["retry_batch_size"]) for e in retry] == [(2, 4, 2)]
    assert next(e for e in events if e["event"] == "trial_end" and e["trial"] == 2)[
        "batch_size"] == 2


def test_each_trial_records_where_its_time_went(shared_gpu_study):
    _, results, _, _ = shared_gpu_study
    for trial in results.trials:
        t = trial.timings
        assert {"setup", "build", "data", "first_step", "first_epoch", "epoch", "checkpoint",
                "total", "driver_total"} <= set(t), t
        assert 0 < t["first_step"] <= t["first_epoch"] <= t["total"] <= t["driver_total"]
        assert t["setup"] + t["build"] + t["data"] + t["first_epoch"] <= t["total"] + 0.01
    stored = json.loads((results.study_dir / "trials" / "0000" / "trial.json").read_text())
    assert stored["timings"]["total"] == results.trials[0].timings["total"]
    from segsearch.cli import main

    out = io.StringIO()  # in this process: the report is tested, not a process
    with contextlib.redirect_stdout(out):
        assert main(["status", str(results.study_dir), "--verbose"]) == 0
    assert "Where the trials' time went:" in out.getvalue()
    assert "  #2 (at batch size 2): " in out.getvalue() and "first step" in out.getvalue()
