"""Does a search keep the accelerator busy? One command, on whatever accelerator is there.

Runs a search of the ISBI slices (``/work/shared/data/isbi2012-membrane`` beside the checkout,
else ``--data``) with a shipped space (``resunet``, the README's first command) at 256x256, then
re-trains every trial's configuration with a plain ``model.fit`` of the same epochs, and prints:

- (a) the GPU's busy share of the search's wall time: ``nvidia-smi --query-gpu=utilization.gpu,
  memory.used`` sampled every ``--interval`` s in a thread (the mean utilisation of the GPUs the
  search uses); on a CPU "CPU: n/a" and the CPU share the search's processes (this one and its
  workers) used of the machine's cores instead;
- (b) the search's wall time over the plain ``model.fit`` time of the same epochs of the same
  configurations (each built, compiled and fitted in this process, on the same input pipeline and
  batch size; the search has no final training and no export here, and its wall time includes
  starting its worker processes);
- (c) and (e), the pipeline / step ratio and fp32 / mixed images/s: from
  ``benchmarks/bench_pipeline.py`` (:func:`pipeline_and_precision`), when it is there;
- (d) the peak GPU memory (``nvidia-smi`` memory.used, the search's GPUs); on a CPU the peak
  resident memory of the search's processes;
- and where the trials' seconds went (their phase timings, ``segsearch status --verbose``).

Every figure carries its unit and [GPU] or [CPU]. Nothing here imports TensorFlow (the GPU machine
runs ``KERAS_BACKEND=jax`` without it); the Keras backend is the environment's.

Usage::

    KERAS_BACKEND=jax python3 benchmarks/bench_gpu.py                   # 256x256, 8 trials
    KERAS_BACKEND=jax python3 benchmarks/bench_gpu.py --gpus 0 --workers-per-gpu 2
    python3 benchmarks/bench_gpu.py --size 64 --trials 2 --epochs 1 --pipeline none  # CPU check
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # before anything imports JAX
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
ISBI = REPO.parent / "shared" / "data" / "isbi2012-membrane"


# ---------------------------------------------------------------------------------- sampling
def _nvidia_smi(gpus: list[str] | None) -> list[tuple[float, float]] | None:
    """(utilisation %, memory used MiB) of each GPU (those in ``gpus`` when given), or None."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=index,utilization.gpu,memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    rows = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and (gpus is None or parts[0] in gpus):
            try:
                rows.append((float(parts[1]), float(parts[2])))
            except ValueError:
                continue
    return rows or None


def _tree_cpu_rss(root: int) -> tuple[float, float]:
    """CPU seconds (user + system) and resident MiB of ``root`` and its descendants (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    parent: dict[int, int] = {}
    stats: dict[int, tuple[float, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        stats[pid] = ((int(fields[11]) + int(fields[12])) / tick, int(fields[21]) * page / 2**20)
    cpu = rss = 0.0
    for pid, (c, r) in stats.items():
        p, seen = pid, 0
        while p not in (0, 1) and p != root and seen < 64:
            p, seen = parent.get(p, 0), seen + 1
        if p == root:
            cpu, rss = cpu + c, rss + r
    return cpu, rss


class Sampler(threading.Thread):
    """Samples the GPUs (nvidia-smi) or, without one, this process tree's CPU and memory."""

    def __init__(self, interval: float, gpus: list[str] | None) -> None:
        super().__init__(daemon=True, name="bench-gpu-sampler")
        self.interval = interval
        self.gpus = gpus
        self.gpu = _nvidia_smi(gpus) is not None
        self.samples: list[dict[str, float]] = []
        self._halt = threading.Event()
        self.t0 = self.t1 = time.monotonic()
        self.cpu0 = self.cpu1 = 0.0

    def run(self) -> None:
        self.t0 = time.monotonic()
        self.cpu0 = _tree_cpu_rss(os.getpid())[0]
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> None:
        now = time.monotonic()
        if self.gpu:
            rows = _nvidia_smi(self.gpus) or []
            if rows:
                self.samples.append({"t": now, "util": statistics.fmean(r[0] for r in rows),
                                     "memory_mib": sum(r[1] for r in rows)})
        else:
            cpu, rss = _tree_cpu_rss(os.getpid())
            self.samples.append({"t": now, "cpu_s": cpu, "rss_mib": rss})

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        self.t1 = time.monotonic()
        self.cpu1 = _tree_cpu_rss(os.getpid())[0]
        if not self.gpu:
            self.sample()

    def figures(self) -> dict[str, Any]:
        """(a) and (d) from the samples."""
        wall = max(self.t1 - self.t0, 1e-9)
        if self.gpu:
            util = [s["util"] for s in self.samples]
            return {"device": "GPU", "samples": len(util), "interval_s": self.interval,
                    "busy_percent": statistics.fmean(util) if util else None,
                    "peak_memory_mib": max((s["memory_mib"] for s in self.samples), default=None)}
        cores = os.cpu_count() or 1
        # CPU seconds of workers that ended before the last sample are lost from the tree; the
        # samples' running maximum keeps what was seen
        seen = max((s["cpu_s"] for s in self.samples), default=self.cpu1)
        used = max(self.cpu1, seen) - self.cpu0
        return {"device": "CPU", "samples": len(self.samples), "interval_s": self.interval,
                "cpu_percent": 100.0 * used / (wall * cores), "cores": cores,
                "peak_memory_mib": max((s["rss_mib"] for s in self.samples), default=None)}


# ---------------------------------------------------------------------------------- the runs
def _config(args: argparse.Namespace, folder: Path) -> Any:
    from segsearch.spacefile import load_config

    data = str(args.data) if args.data else (str(ISBI) if ISBI.is_dir() else "sample")
    sets = ["train.final_epochs=0", "export.enabled=false", "search.pruner=none"]
    if args.batch_size:
        sets.append(f"train.batch_size={args.batch_size}")
    if args.gpus:
        sets.append(f"search.gpus={json.dumps(args.gpus)}")
    if args.workers_per_gpu:
        sets.append(f"search.workers_per_gpu={args.workers_per_gpu}")
    if args.time_limit:
        sets.append(f"search.time_limit={args.time_limit}")
    return load_config(args.space, data=data, image_size=args.size, trials=args.trials,
                       epochs=args.epochs, study_dir=folder, sets=sets)


def run_search(config: Any, interval: float) -> dict[str, Any]:
    """The search, sampled: (a), (d), its wall time and its trials."""
    from segsearch.driver import Study

    gpus = [g for g in (config.search.gpus or "").split(",") if g] or None
    if gpus is None and os.environ.get("CUDA_VISIBLE_DEVICES"):
        gpus = [g.strip() for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    sampler = Sampler(interval, gpus)
    sampler.start()
    t0 = time.perf_counter()
    try:
        results = Study(config).run(progress=functools.partial(
            _show, mark="GPU" if sampler.gpu else "CPU"))
    finally:
        sampler.stop()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "trials": results.trials, **sampler.figures()}


def _show(event: dict[str, Any], mark: str = "CPU") -> None:
    if event["event"] == "trial_end":
        t = event.get("timings") or {}
        print(f"  trial {event['trial']}: {event['state']} after {event.get('epochs')} epochs, "
              f"{event.get('duration_s') or 0:.1f} s (first epoch {t.get('first_epoch', 0):.1f} s,"
              f" later {t.get('epoch', 0):.2f} s each) [{mark}]", flush=True)
    elif event["event"] == "worker_recycle":
        print(f"  worker {event.get('pid')} replaced: {event.get('reason')}", flush=True)
    elif event["event"] == "worker_start":
        print(f"  worker {event.get('pid')} ready in {event.get('start_s', 0):.1f} s on GPU "
              f"{event.get('cuda_visible_devices')} ({event.get('backend')} sees "
              f"{event.get('devices') or 'no GPU'})", flush=True)


def plain_fits(config: Any, trials: list[Any], mark: str = "CPU") -> dict[str, Any]:
    """Each trial's configuration built and fitted with plain ``model.fit`` for its epochs, in
    this process, on the same input pipeline and batch size; the seconds of each."""
    import keras
    import optuna

    from segsearch.engines.hp import OptunaHyperParameters
    from segsearch.workshop import Workshop

    shop = Workshop(config, trains_here=True)
    hypermodel = shop.hypermodel()
    context = shop.training_context()
    rows = []
    for trial in trials:
        if not trial.epochs:
            continue
        batch = trial.batch_size or config.train.batch_size
        keras.backend.clear_session(free_memory=True)
        keras.utils.set_random_seed(config.search.seed + trial.number)
        t0 = time.perf_counter()
        model = hypermodel.build(OptunaHyperParameters(optuna.trial.FixedTrial(
            dict(trial.params))))
        # patch mode scores whole validation images through a callback, as the search does
        callbacks = [context.val_callback()] if context.val_callback is not None else []
        val = None if callbacks else context.val_data(0, batch_size=batch)
        model.fit(context.train_data(config.search.seed + trial.number, batch_size=batch),
                  validation_data=val, epochs=trial.epochs, callbacks=callbacks,
                  steps_per_epoch=context.steps_per_epoch, shuffle=False, verbose=0)
        seconds = time.perf_counter() - t0
        rows.append({"trial": trial.number, "epochs": trial.epochs, "seconds": seconds})
        print(f"  plain fit of trial {trial.number}'s configuration: {trial.epochs} epochs, "
              f"{seconds:.1f} s [{mark}]", flush=True)
        del model
    return {"rows": rows, "seconds": sum(r["seconds"] for r in rows),
            "epochs": sum(r["epochs"] for r in rows)}


def phase_summary(trials: list[Any]) -> dict[str, float]:
    """The mean of each phase over the trials that recorded it (seconds)."""
    keys = dict.fromkeys(k for t in trials for k in (t.timings or {}))
    return {k: statistics.fmean(t.timings[k] for t in trials if k in (t.timings or {}))
            for k in keys}


# ---------------------------------------------------------------------------------- (c) and (e)
def pipeline_and_precision(mode: str) -> str:
    """(c) pipeline / step and (e) fp32 vs mixed img/s, from ``benchmarks/bench_pipeline.py``
    (its own functions; "quick" for its tiny settings, "none" to skip)."""
    if mode == "none":
        return "(c), (e): skipped (--pipeline none); they come from benchmarks/bench_pipeline.py"
    try:
        import bench_pipeline
    except ImportError:
        return "(c), (e): come from benchmarks/bench_pipeline.py, which is not here yet"
    if mode == "quick":
        pipe = bench_pipeline.pipeline_vs_step(bench_pipeline.NETWORKS[:1], seconds=1.0)
        precision = bench_pipeline.precision_throughput(kwargs={"depth": 2, "filters": 8},
                                                        size=64, batch_sizes=(8,), seconds=1.0)
    else:
        pipe = bench_pipeline.pipeline_vs_step()
        precision = bench_pipeline.precision_throughput(batch_sizes=(16, 64))
    return bench_pipeline.report(pipe, precision)


# ---------------------------------------------------------------------------------- report
def report(search: dict[str, Any], plain: dict[str, Any] | None,
           phases: dict[str, float]) -> list[str]:
    """The figures, one a line, each with its unit and [GPU] / [CPU]."""
    mark = search["device"]
    lines = []
    if mark == "GPU":
        busy = search["busy_percent"]
        lines.append(f"(a) GPU busy: {busy:.1f}% of the search's wall time (mean "
                     f"utilization.gpu, {search['samples']} samples every "
                     f"{search['interval_s']} s) [GPU]" if busy is not None else
                     "(a) GPU busy: no sample [GPU]")
    else:
        lines.append(f"(a) GPU busy: CPU: n/a; the search's processes used "
                     f"{search['cpu_percent']:.1f}% of {search['cores']} CPU cores over its wall "
                     "time [CPU]")
    epochs = sum(int(t.epochs or 0) for t in search["trials"])
    if plain is not None and plain["seconds"] > 0:
        lines.append(f"(b) search wall time / plain model.fit time: {search['wall_s']:.1f} s / "
                     f"{plain['seconds']:.1f} s = {search['wall_s'] / plain['seconds']:.2f}x "
                     f"({len(plain['rows'])} configurations, {plain['epochs']} epochs) [{mark}]")
    else:
        lines.append(f"(b) search wall time {search['wall_s']:.1f} s for {epochs} epochs; plain "
                     f"model.fit not run [{mark}]")
    memory = search["peak_memory_mib"]
    what = ("nvidia-smi memory.used, the search's GPUs" if mark == "GPU" else
            "resident memory of the search's processes")
    lines.append(f"(d) peak {'GPU memory' if mark == 'GPU' else 'memory'}: "
                 f"{memory:,.0f} MiB ({what}) [{mark}]" if memory is not None else
                 f"(d) peak memory: no sample [{mark}]")
    if phases:
        order = ("worker_start", "setup", "build", "data", "first_step", "first_epoch",
                 "first_validation", "epoch", "validation", "checkpoint", "total", "driver_total")
        shown = ", ".join(f"{k} {phases[k]:.2f} s" for k in order if k in phases)
        lines.append(f"trial phases, mean over {len(search['trials'])} trials: {shown} [{mark}]")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="resunet", help="space file or shipped name")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder (default: the ISBI slices, else the sample)")
    parser.add_argument("--size", type=int, default=256, help="image size (default 256)")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4, help="most epochs a trial trains")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--gpus", default=None, help="GPU ids for the workers, e.g. 0,1")
    parser.add_argument("--workers-per-gpu", type=int, default=None)
    parser.add_argument("--interval", type=float, default=0.5, help="sampling period, s")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds after which the search starts no trial (search.time_limit)")
    parser.add_argument("--no-plain", action="store_true", help="skip (b)'s plain model.fit")
    parser.add_argument("--pipeline", choices=("full", "quick", "none"), default="full",
                        help="(c) and (e) from benchmarks/bench_pipeline.py")
    parser.add_argument("--study-dir", type=Path, default=None,
                        help="keep the study here (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    import keras

    folder = args.study_dir or Path(tempfile.mkdtemp(prefix="segsearch-bench-gpu-")) / "study"
    try:
        config = _config(args, folder)
        print(f"backend {keras.backend.backend()}, {os.cpu_count()} CPU cores; space "
              f"{args.space}, data {config.data.source}, {args.size}x{args.size}, {args.trials} "
              f"trials of at most {args.epochs} epochs, batch {config.train.batch_size}, "
              f"workers {config.search.workers or 'per GPU found'}", flush=True)
        search = run_search(config, args.interval)
        plain = None if args.no_plain else plain_fits(config, search["trials"], search["device"])
        phases = phase_summary(search["trials"])
    finally:
        if args.study_dir is None:
            shutil.rmtree(folder.parent, ignore_errors=True)
    lines = report(search, plain, phases)
    lines.append(pipeline_and_precision(args.pipeline))
    print("\n".join(lines))
    if args.json:
        out = {k: v for k, v in search.items() if k != "trials"}
        out.update(backend=keras.backend.backend(), plain=plain, phases=phases, lines=lines)
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
