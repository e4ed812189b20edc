"""What one trial costs through segsearch compared with a plain ``model.fit`` script.

Both sides train the same network (the U-Net seed, at a chosen width) on the same data (the ISBI
slices, or the synthetic sample) for the same epochs, with the same input pipeline
(``segsearch.data.batches``). The plain side is what a user would write by hand: load the data,
build the model, ``model.fit``. The segsearch side is ``Study(config).run()`` for one trial with
no final training and no export: the Optuna storage, the trial bookkeeping, the per-epoch callback
(history, best-epoch snapshot, NaN check, pruning report), the checkpoint and the records. Each
side runs ``--repeats`` times, alternating (ABBA), after a warm-up, and the medians are compared, in
CPU time (what this process and the processes it waited for used, all threads: robust to other
processes on a shared machine) and in wall time.

``--isolation none`` (the default here) trains the segsearch trial in this process, which measures
the bookkeeping alone; ``--isolation process`` (segsearch's own default) trains it in a worker
process, as ``segsearch run`` does, so the figure also holds starting that worker (importing
TensorFlow, loading the data again), which a study pays once, not per trial::

    python3 benchmarks/bench_trial_overhead.py                       # 128x128, 5 epochs, 16 filters
    python3 benchmarks/bench_trial_overhead.py --size 64 --epochs 3  # a quicker look
    python3 benchmarks/bench_trial_overhead.py --isolation process   # with the worker process

Prints the times and the ratios; segsearch's overhead should stay under 5%. It also prints where
the segsearch trial's seconds went (its record's phase timings: setup, build, data, first step
(tracing and compilation), first epoch, later epochs, checkpoint; ``segsearch status --verbose``
shows the same for a study), the median of each phase over the repeats.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ISBI = REPO.parent / "shared" / "data" / "isbi2012-membrane"


def _data(args: argparse.Namespace) -> dict:
    source = str(args.data) if args.data else (str(ISBI) if ISBI.is_dir() else "sample")
    return {"source": source, "image_size": args.size, "val_fraction": 0.2, "seed": 0}


def _cpu() -> float:
    """CPU seconds this process and its ended child processes (a trial's worker) have used, all
    threads: contention from other processes on a shared machine inflates wall time but not this."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def _measure(fn, *args):
    wall, cpu = time.perf_counter(), _cpu()
    extra = fn(*args)
    return time.perf_counter() - wall, _cpu() - cpu, extra


def plain_fit(args: argparse.Namespace) -> None:
    """Load the data, build the seed network, ``model.fit`` (what a script does)."""
    import keras
    import keras_tuner

    from segsearch import hypermodels
    from segsearch.data import DataConfig, batches, load

    keras.backend.clear_session()
    config = DataConfig(**_data(args))
    splits = load(config)
    hm = hypermodels.get("unet", (*splits.train.size, splits.train.channels),
                         splits.info["num_classes"], space={"filters": args.filters},
                         jit_compile=False)
    model = hm.build(keras_tuner.HyperParameters())
    keras.utils.set_random_seed(0)
    model.fit(batches(splits.train, args.batch_size, augment=config.augment, seed=0),
              validation_data=batches(splits.val, args.batch_size, shuffle=False),
              epochs=args.epochs, verbose=0)


def segsearch_trial(args: argparse.Namespace, folder: Path) -> tuple[float, dict]:
    """``Study(config).run()`` with one trial; returns the trial's own duration (seconds) and its
    phase timings."""
    from segsearch.driver import Study
    from segsearch.spacefile import load_config

    shutil.rmtree(folder, ignore_errors=True)
    config = load_config({
        "study": "overhead",
        "architecture": "unet",
        "data": _data(args),
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "final_epochs": 0,
                  # a worker's CPU time counts once the study has ended it (RUSAGE_CHILDREN)
                  "isolation": args.isolation},
        "search": {"engine": args.engine, "trials": 1},
        "space": {"filters": args.filters},
        "export": {"enabled": False},
    }, study_dir=folder)
    results = Study(config).run()
    trial = results.trials[0]
    return float(trial.duration_s or 0.0), dict(trial.timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image size (default 128)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the trial (default 5)")
    parser.add_argument("--filters", type=int, default=16,
                        help="U-Net first-level filters (default 16; the seed has 64)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side (default 2)")
    parser.add_argument("--engine", default="optuna", choices=["optuna", "keras-tuner"])
    parser.add_argument("--isolation", default="none", choices=["none", "process"],
                        help="where segsearch trains the trial: here (default) or in a worker "
                             "process started for the study, as `segsearch run` does")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder (default: the ISBI slices, else the sample)")
    args = parser.parse_args(argv)

    import keras

    print(f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs; unet filters "
          f"{args.filters}, {args.size}x{args.size}, {args.epochs} epochs, batch "
          f"{args.batch_size}, engine {args.engine}, isolation {args.isolation}, data "
          f"{_data(args)['source']}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="segsearch-overhead-"))
    plain: dict[str, list[float]] = {"wall": [], "cpu": []}
    ours: dict[str, list[float]] = {"wall": [], "cpu": [], "trial": []}
    phases: list[dict] = []
    try:
        plain_fit(argparse.Namespace(**{**vars(args), "epochs": 1}))  # start-up, first tracing
        for i in range(args.repeats):
            # alternate which side goes first (ABBA), so a drift in the machine's load is shared
            order = ("plain", "segsearch") if i % 2 == 0 else ("segsearch", "plain")
            for side in order:
                if side == "plain":
                    wall, cpu, _ = _measure(plain_fit, args)
                    plain["wall"].append(wall)
                    plain["cpu"].append(cpu)
                else:
                    wall, cpu, (trial, timings) = _measure(segsearch_trial, args,
                                                           work / f"study{i}")
                    ours["wall"].append(wall)
                    ours["cpu"].append(cpu)
                    ours["trial"].append(trial)
                    phases.append(timings)
            print(f"  run {i + 1}: plain {plain['wall'][-1]:.2f} s wall / {plain['cpu'][-1]:.2f} s "
                  f"CPU; segsearch {ours['wall'][-1]:.2f} s wall / {ours['cpu'][-1]:.2f} s CPU "
                  f"(the trial {ours['trial'][-1]:.2f} s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    print(f"plain model.fit script: {med(plain['wall']):.2f} s wall, {med(plain['cpu']):.2f} s CPU "
          f"(medians of {args.repeats})")
    print(f"one trial via segsearch: {med(ours['wall']):.2f} s wall, {med(ours['cpu']):.2f} s CPU "
          f"(the trial itself {med(ours['trial']):.2f} s)")
    from segsearch.console import format_timings

    keys = dict.fromkeys(k for t in phases for k in t)
    print("where the trial's seconds went (medians): " + format_timings(
        {k: med([t[k] for t in phases if k in t]) for k in keys}))
    for kind in ("cpu", "wall"):
        ratio = med(ours[kind]) / med(plain[kind])
        print(f"ratio segsearch / plain ({kind} time): {ratio:.3f} -> overhead "
              f"{100 * (ratio - 1):+.1f}% ({'under' if ratio < 1.05 else 'OVER'} the 5% target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
