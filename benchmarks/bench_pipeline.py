"""Benchmark: does the input pipeline outrun the training step, and does mixed precision pay?

(c) ``pipeline_vs_step``: for the smallest and the largest network of the shipped spaces at their
    sizes (and the resunet space on the ISBI slices at 256x256), the images/s ``batches()``
    delivers with the default augmentation, read as ``model.fit`` reads it (the accelerator path,
    ``segsearch.data.device``, and the NumPy producer it replaced), against the images/s of the
    network's training step on batches already on the device; the issue asks for >= 10x.
(e) ``precision_throughput``: training-step images/s of one network under float32 and the mixed
    policies (bfloat16 and float16 on a GPU; on a CPU what runs, marked CPU), with the compute
    dtype its conv layers actually got.

Every figure is printed with its unit and marked GPU or CPU. Under ``KERAS_BACKEND=jax`` nothing
imports TensorFlow. ``benchmarks/bench_gpu.py`` calls the two functions.

Usage:
    python benchmarks/bench_pipeline.py                      # (c) and (e), default settings
    python benchmarks/bench_pipeline.py --quick --json out.json   # tiny, for CI (~1 minute)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ISBI = REPO.parent / "shared" / "data" / "isbi2012-membrane"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import timed_steps  # noqa: E402 - beside this script; imports no backend

#: (label, data source, image size, batch size, architecture, builder arguments): the smallest and
#: the largest network of the shipped spaces at the spaces' sizes, and the ISBI setting.
NETWORKS: tuple[tuple[str, str, int, int, str, dict[str, Any]], ...] = (
    ("smallest: unet depth 2, 8 filters (spaces, 64x64)", "sample", 64, 8, "unet",
     {"depth": 2, "filters": 8}),
    ("largest: deeplabv3plus depth 3, ASPP 64, 64 filters (spaces, 96x96)", "sample", 96, 8,
     "deeplabv3plus", {"depth": 3, "aspp_rates": "2,4,6", "aspp_filters": 64, "filters": 64}),
    ("ISBI 256x256 smallest: resunet depth 2, 8 filters", "isbi", 256, 16, "resunet",
     {"depth": 2, "filters": 8}),
    ("ISBI 256x256 largest: the seed U-Net (depth 4, 64 filters)", "isbi", 256, 16, "unet", {}),
)


def device_kind() -> str:
    """"GPU" or "CPU": where the Keras backend trains (no TensorFlow import under JAX)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return "GPU" if any(d.platform == "gpu" for d in jax.devices()) else "CPU"
    if backend == "tensorflow":
        import tensorflow as tf

        return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    if backend == "torch":
        import torch

        return "GPU" if torch.cuda.is_available() else "CPU"
    return "CPU"


def _build(arch: str, shape: tuple[int, int, int], num_classes: int, kwargs: dict[str, Any]):
    from segsearch import architectures

    return getattr(architectures, f"build_{arch}")(shape, num_classes, **kwargs)


def _load(source: str, size: int, isbi: Path | None):
    from segsearch.data import DataConfig, load

    if source == "isbi":
        folder = isbi if isbi is not None else ISBI
        if not Path(folder).is_dir():
            return None
        return load(DataConfig(source=str(folder), image_size=size))
    return load(DataConfig(source="sample", image_size=size))


def pipeline_rate(part: Any, batch_size: int, seconds: float, *, device: bool | None) -> dict:
    """Images/s ``batches()`` delivers (default augmentation), read as ``model.fit`` reads it.

    Args:
        part: the training part.
        batch_size: images per batch.
        seconds: time spent measuring.
        device: ``batches``' ``device`` (None: auto, the accelerator path where it applies;
            False: the NumPy producer).
    """
    import keras
    import numpy as np

    from segsearch.data import Augment, batches
    from segsearch.data import device as accelerator
    from segsearch.data.pipeline import BatchPlan

    data = batches(part, batch_size, augment=Augment(), seed=0, repeat=True, device=device)
    on_device = device is not False and accelerator.supported(
        BatchPlan(part, batch_size, augment=Augment()))
    if keras.backend.backend() == "tensorflow":
        stream = iter(data)
    else:
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        adapter = PyDatasetAdapter(data, shuffle=False)
        adapter.on_epoch_begin()
        stream = (adapter.get_jax_iterator() if keras.backend.backend() == "jax"
                  else adapter.get_numpy_iterator())
    for _ in range(BatchPlan(part, batch_size).num_batches + 1):  # warm up: threads, and the
        next(stream)  # compilation of each batch shape (an epoch's last batch may be smaller)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x, _ = next(stream)
        images += int(x.shape[0])
    np.asarray(x)  # wait for the device
    elapsed = time.perf_counter() - start
    return {"path": "accelerator (segsearch.data.device)" if on_device else "NumPy producer",
            "images_per_s": images / elapsed, "seconds": round(elapsed, 3)}


def step_rate(model: Any, shape: tuple[int, int, int], num_classes: int, batch_size: int,
              seconds: float, min_steps: int = 3) -> dict:
    """Images/s of ``model``'s training step (compiled here, ce_dice) on batches already on the
    device."""
    import keras
    import numpy as np

    from segsearch.losses import get as get_loss

    model.compile(optimizer="adam", loss=get_loss("ce_dice", num_classes))
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.random((batch_size, *shape), dtype=np.float32))
    y = keras.ops.convert_to_tensor(
        rng.integers(0, max(num_classes, 2), (batch_size, *shape[:2], 1)).astype(np.float32))
    return timed_steps(model, x, y, batch_size, seconds, min_steps)


def pipeline_vs_step(networks: Any = NETWORKS, *, seconds: float = 5.0, isbi: Path | None = None,
                     numpy_path: bool = True) -> dict:
    """(c) Pipeline images/s over training-step images/s, per network.

    Args:
        networks: (label, source "sample"/"isbi", size, batch size, architecture, builder
            arguments) tuples; an "isbi" one is skipped when the ISBI folder is missing.
        seconds: time spent on each measurement.
        isbi: the ISBI folder (default: beside the checkout).
        numpy_path: also measure the NumPy producer (what the pipeline was before).

    Returns:
        {"device": "GPU"/"CPU", "cpu_count", "rows": [{label, size, batch_size, pipeline,
        numpy_pipeline, step, ratio, numpy_ratio}], "skipped": [labels]}.
    """
    out: dict[str, Any] = {"device": device_kind(), "cpu_count": os.cpu_count(), "rows": [],
                           "skipped": []}
    loaded: dict[tuple[str, int], Any] = {}
    for label, source, size, batch_size, arch, kwargs in networks:
        key = (source, size)
        if key not in loaded:
            loaded[key] = _load(source, size, isbi)
        splits = loaded[key]
        if splits is None:
            out["skipped"].append(label)
            continue
        part = splits.train
        num_classes = int(splits.info.get("num_classes", 2) or 2)
        shape = (*part.size, part.channels)
        row: dict[str, Any] = {"label": label, "size": size, "batch_size": batch_size}
        row["pipeline"] = pipeline_rate(part, batch_size, seconds, device=None)
        if numpy_path:
            row["numpy_pipeline"] = pipeline_rate(part, batch_size, seconds, device=False)
        model = _build(arch, shape, num_classes if num_classes > 2 else 1, kwargs)
        row["step"] = step_rate(model, shape, num_classes if num_classes > 2 else 1, batch_size,
                                seconds)
        row["ratio"] = row["pipeline"]["images_per_s"] / row["step"]["images_per_s"]
        if numpy_path:
            row["numpy_ratio"] = (row["numpy_pipeline"]["images_per_s"]
                                  / row["step"]["images_per_s"])
        out["rows"].append(row)
    return out


def precision_throughput(*, arch: str = "unet", kwargs: dict[str, Any] | None = None,
                         size: int = 256, batch_sizes: tuple[int, ...] = (16,),
                         policies: tuple[str, ...] | None = None, seconds: float = 5.0) -> dict:
    """(e) Training-step images/s under float32 and the mixed policies.

    Args:
        arch: the architecture (default the seed U-Net).
        kwargs: its builder arguments.
        size: input height = width.
        batch_sizes: batch sizes to try (a larger one tells whether batch 16 was too small).
        policies: the Keras dtype policies (default: float32, mixed_bfloat16 and mixed_float16 on
            a GPU; float32 and mixed_bfloat16 on a CPU, where float16 convolutions are emulated).
        seconds: time spent on each measurement.

    Returns:
        {"device", "rows": [{policy, batch_size, conv_compute_dtype, images_per_s | error}]}.
    """
    import keras

    kind = device_kind()
    if policies is None:
        policies = (("float32", "mixed_bfloat16", "mixed_float16") if kind == "GPU"
                    else ("float32", "mixed_bfloat16"))
    out: dict[str, Any] = {"device": kind, "arch": arch, "size": size, "rows": []}
    previous = keras.mixed_precision.dtype_policy()
    try:
        for batch_size in batch_sizes:
            for policy in policies:
                keras.backend.clear_session()  # resets the policy: set it after, then build
                keras.mixed_precision.set_dtype_policy(policy)
                row: dict[str, Any] = {"policy": policy, "batch_size": batch_size}
                try:
                    model = _build(arch, (size, size, 1), 1, dict(kwargs or {}))
                    convs = [la for la in model.layers if isinstance(la, keras.layers.Conv2D)]
                    row["conv_compute_dtype"] = convs[0].compute_dtype if convs else None
                    row.update(step_rate(model, (size, size, 1), 1, batch_size, seconds))
                except Exception as e:  # noqa: BLE001 - a policy the device cannot run: say so
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                out["rows"].append(row)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    base = {r["batch_size"]: r.get("images_per_s") for r in out["rows"]
            if r["policy"] == "float32"}
    for r in out["rows"]:
        if r.get("images_per_s") and base.get(r["batch_size"]):
            r["speedup_vs_float32"] = r["images_per_s"] / base[r["batch_size"]]
    return out


def report(pipe: dict | None, precision: dict | None) -> str:
    """The figures as text, each with its unit and GPU/CPU mark."""
    lines = []
    if pipe is not None:
        mark = pipe["device"]
        lines.append(f"(c) pipeline vs training step [{mark}, {pipe['cpu_count']} CPU cores]")
        for r in pipe["rows"]:
            lines.append(f"  {r['label']} (batch {r['batch_size']}):")
            lines.append(f"    pipeline, {r['pipeline']['path']}: "
                         f"{r['pipeline']['images_per_s']:.1f} img/s [{mark}]")
            if "numpy_pipeline" in r:
                lines.append(f"    pipeline, NumPy producer (before): "
                             f"{r['numpy_pipeline']['images_per_s']:.1f} img/s [{mark}]")
            lines.append(f"    training step ({r['step']['params']:,} parameters): "
                         f"{r['step']['images_per_s']:.1f} img/s [{mark}]")
            extra = f" (NumPy producer: {r['numpy_ratio']:.2f}x)" if "numpy_ratio" in r else ""
            verdict = "OK" if r["ratio"] >= 10 else "below the 10x goal"
            lines.append(f"    ratio pipeline / step: {r['ratio']:.2f}x [{mark}], {verdict}"
                         f"{extra}")
        for label in pipe["skipped"]:
            lines.append(f"  skipped (no ISBI folder): {label}")
    if precision is not None:
        mark = precision["device"]
        lines.append(f"(e) training step by dtype policy: {precision['arch']} at "
                     f"{precision['size']}x{precision['size']} [{mark}]")
        for r in precision["rows"]:
            if "error" in r:
                lines.append(f"  {r['policy']:>15}, batch {r['batch_size']}: cannot run here "
                             f"[{mark}]: {r['error']}")
                continue
            speed = (f", {r['speedup_vs_float32']:.2f}x float32"
                     if "speedup_vs_float32" in r else "")
            lines.append(f"  {r['policy']:>15}, batch {r['batch_size']}: "
                         f"{r['images_per_s']:.1f} img/s [{mark}] (convs compute in "
                         f"{r['conv_compute_dtype']}{speed})")
        if mark == "CPU":
            lines.append("  [CPU] a CPU has no half-precision units worth the name: these "
                         "figures check that the path runs, not what a GPU gains")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--isbi", type=Path, default=None, help="ISBI 2012 folder")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings (the smallest network, 32x32 U-Net precision, 1 s "
                             "each): checks that the benchmark runs")
    parser.add_argument("--skip", choices=("pipeline", "precision"), action="append", default=[])
    parser.add_argument("--precision-size", type=int, default=256)
    parser.add_argument("--precision-batch", type=int, action="append",
                        help="batch sizes for (e) (default 16 and 64; repeat the option)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    pipe = precision = None
    if "pipeline" not in args.skip:
        networks = NETWORKS[:1] if args.quick else NETWORKS
        pipe = pipeline_vs_step(networks, seconds=seconds, isbi=args.isbi)
    if "precision" not in args.skip:
        if args.quick:
            precision = precision_throughput(kwargs={"depth": 2, "filters": 8}, size=32,
                                             batch_sizes=(8,), seconds=seconds)
        else:
            precision = precision_throughput(size=args.precision_size,
                                             batch_sizes=tuple(args.precision_batch or (16, 64)),
                                             seconds=seconds)
    import keras

    print(f"backend: {keras.backend.backend()}")
    print(report(pipe, precision))
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": keras.backend.backend(),
                                               "pipeline_vs_step": pipe,
                                               "precision": precision}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
