"""The driver's memory across trials, and what training each trial in a worker process costs.

Runs one study of ``--trials`` tiny U-Net trials (32x32 images, 4 filters, 1 epoch each) twice:
with ``train.isolation: process`` (the default: every trial trains in a recycled worker process)
and with ``train.isolation: none`` (trials train in the driver). For each it prints

- the driver's resident memory (RSS, from /proc/self/status) after trial 2 and after the last
  trial, and their ratio (the target: the last within 10% of trial 2 with isolation);
- with isolation, the worker process's RSS after trial 2 and after the last trial (from its
  ``worker_memory`` events), the most it grew since it started, and how many workers were started
  (the worker is recycled after ``train.worker_max_trials`` trials, default 10, or when it grew by
  ``train.worker_max_growth_mb``; ``--worker-max-trials 0`` never recycles it, to see the growth);
- wall seconds per trial for the whole search (start of the search to the last trial's end,
  divided by the trials), and the seconds the trials themselves recorded, so the difference is the
  per-trial cost of the worker (its start-up is paid once and again after a crash).

    python3 benchmarks/bench_memory.py               # 20 trials each way
    python3 benchmarks/bench_memory.py --trials 10 --modes process
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mib() -> float:
    """This process's resident memory in MiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(mode: str, trials: int, folder: Path, data: Path,
        worker_max_trials: int | None = 10) -> dict:
    from segsearch.driver import Study
    from segsearch.spacefile import load_config

    raw = {
        "study": f"mem-{mode}",
        "architecture": "unet",
        "data": {"source": str(data), "image_size": 32, "val_fraction": 0.25, "augment": 0},
        "train": {"epochs": 1, "batch_size": 4, "isolation": mode, "final_epochs": 0,
                  "worker_max_trials": worker_max_trials},
        "search": {"trials": trials, "pruner": "none", "algorithm": "random"},
        "space": {"filters": 4, "depth": {"min": 1, "max": 2, "default": 1}},
        "export": {"enabled": False},
    }
    config = load_config(raw, study_dir=folder / mode, check_space=False)
    rss: dict[int, float] = {}
    worker_rss: list[float] = []
    worker_growth: list[float] = []
    marks: dict[str, float] = {"workers": 0}

    def progress(event: dict) -> None:
        if event["event"] == "worker_start":
            marks["workers"] += 1
        elif event["event"] == "worker_memory" and event.get("rss_mib") is not None:
            worker_rss.append(event["rss_mib"])
            worker_growth.append(event.get("growth_mib") or 0.0)
        elif event["event"] == "study_start":
            marks["start"] = time.perf_counter()
        elif event["event"] == "trial_end" and event.get("state") == "complete":
            rss[event["trials_done"]] = rss_mib()
            marks["end"] = time.perf_counter()

    results = Study(config).run(progress=progress)
    done = [r for r in results.trials if r.state == "complete"]
    in_trial = sum(r.duration_s for r in done) / len(done)
    wall = (marks["end"] - marks["start"]) / len(done)
    nan = float("nan")
    worker = {}
    if mode == "process":
        worker = {
            "worker_rss_trial_2_mib": worker_rss[1] if len(worker_rss) > 1 else nan,
            f"worker_rss_trial_{trials}_mib": worker_rss[-1] if worker_rss else nan,
            "worker_max_growth_mib": max(worker_growth, default=nan),
            "workers_started": int(marks["workers"]),
        }
    return {
        "mode": mode,
        "trials": len(done),
        "rss_trial_2_mib": round(rss.get(2, nan), 1),
        f"rss_trial_{trials}_mib": round(rss.get(trials, nan), 1),
        "rss_ratio_last_to_2": round(rss.get(trials, nan) / rss.get(2, nan), 3),
        **worker,
        "wall_s_per_trial": round(wall, 3),
        "in_trial_s_per_trial": round(in_trial, 3),
        "overhead_s_per_trial": round(wall - in_trial, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--modes", default="process,none")
    parser.add_argument("--worker-max-trials", type=int, default=10,
                        help="train.worker_max_trials (0: never recycle the worker)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        x = rng.random((16, 32, 32, 1)).astype("float32")
        data = Path(tmp) / "tiny.npz"
        np.savez(data, images=x, masks=(x > 0.5).astype("float32"))
        for mode in args.modes.split(","):
            # each mode in a fresh process would be fairer for "none"; here "process" runs first,
            # so the driver has imported TensorFlow but never built a network when it starts
            row = run(mode, args.trials, Path(tmp), data, args.worker_max_trials or None)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
