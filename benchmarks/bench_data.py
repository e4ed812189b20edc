"""Benchmark: does the input pipeline keep up with training? Pipeline images/s vs U-Net images/s.

In ONE run, at one input size and batch size, this measures:

1. the pipeline: ``segsearch.data.batches`` over the training part with the DEFAULT augmentation
   (flips, 90-degree rotations, scale + crop, brightness / contrast, elastic deformation), read as
   ``model.fit`` would read it (tf.data under TensorFlow, the PyDataset's threads otherwise);
2. the model: training steps of the default U-Net (``segsearch.architectures.build_unet`` with its
   defaults: depth 4, 64 filters, transposed convolutions, batch norm) on in-memory batches;

and prints both in images/s with their ratio. The issue asks for a ratio of at least 10; the exit
status is 1 when the ratio is below ``--require``.

Usage:
    python benchmarks/bench_data.py                        # ISBI slices beside the checkout,
    128x128 python benchmarks/bench_data.py --size 256 --batch-size 4 --data path/to/folder --json
    out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "isbi2012-membrane"


def measure_pipeline(part, batch_size: int, seconds: float, *, producer_only: bool = False) -> dict:
    """Images per second delivered by batches() (or by the NumPy producer alone) with default
    augmentation."""
    import keras

    from segsearch.data import Augment, batches
    from segsearch.data.pipeline import BatchPlan, default_workers, iterate

    augment = Augment()  # the default augmentation
    if producer_only:
        stream = iterate(BatchPlan(part, batch_size, augment=augment, seed=0), epochs=None)
        path = f"NumPy producer, {default_workers()} threads"
    elif keras.backend.backend() == "tensorflow":
        stream = iter(batches(part, batch_size, augment=augment, seed=0, repeat=True))
        path = "batches() -> tf.data.Dataset"
    else:
        # What model.fit does with a PyDataset: Keras' enqueuer runs __getitem__ in worker threads.
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        seq = batches(part, batch_size, augment=augment, seed=0, repeat=True)
        adapter = PyDatasetAdapter(seq, shuffle=False)
        adapter.on_epoch_begin()
        stream = adapter.get_numpy_iterator()
        path = f"batches() -> keras PyDataset, {seq.workers} worker threads"
    for _ in range(3):  # warm up (thread pools, tf.data graph)
        next(stream)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x, _ = next(stream)
        images += int(x.shape[0])
    elapsed = time.perf_counter() - start
    return {"path": path, "images": images, "seconds": round(elapsed, 3),
            "images_per_s": images / elapsed}


def measure_unet(
    shape: tuple[int, int, int], batch_size: int, seconds: float, min_steps: int,
) -> dict:
    """Images per second that training steps of the default U-Net consume (data already in
    memory)."""
    import keras
    import numpy as np

    from segsearch.architectures import build_unet

    model = build_unet(shape, 1)  # the default U-Net: depth 4, 64 filters, transpose, batch norm
    model.compile(optimizer="adam", loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *shape), dtype=np.float32)
    y = (rng.random((batch_size, *shape[:2], 1)) > 0.5).astype(np.float32)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        x, y = tf.constant(x), tf.constant(y)
    return timed_steps(model, x, y, batch_size, seconds, min_steps)


def timed_steps(model, x, y, batch_size: int, seconds: float, min_steps: int = 3) -> dict:
    """Images per second of ``model.train_on_batch(x, y)`` (compiled), after two untimed steps
    (tracing, compilation), for at least ``seconds`` and ``min_steps`` steps."""
    import numpy as np

    for _ in range(2):  # compile / trace
        model.train_on_batch(x, y)
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        loss = model.train_on_batch(x, y)
        steps += 1
    float(np.asarray(loss))  # wait for the device
    elapsed = time.perf_counter() - start
    return {"params": int(model.count_params()), "steps": steps, "seconds": round(elapsed, 3),
            "images_per_s": steps * batch_size / elapsed}


def device_name() -> str:
    """The accelerator training runs on, in words."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU: {details.get('device_name', gpus[0].name)}"
    elif keras.backend.backend() == "jax":
        import jax

        return f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.is_dir() else "sample",
                        help="data folder (default: the ISBI 2012 slices beside the checkout, else "
                             "the synthetic sample)")
    parser.add_argument("--size", type=int, default=128, help="input height = width (default 128)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="time spent measuring each side")
    parser.add_argument("--min-steps", type=int, default=3, help="fewest timed U-Net steps")
    parser.add_argument("--require", type=float, default=10.0,
                        help="fail (exit 1) below this ratio")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import keras

    from segsearch.data import DataConfig, load

    splits = load(DataConfig(source=args.data, image_size=args.size))
    part = splits.train
    shape = (args.size, args.size, part.channels)
    print(f"data: {splits.info['description']} ({len(part)} training samples at "
          f"{args.size}x{args.size}x{part.channels})")
    print(f"backend: {keras.backend.backend()}; device: {device_name()}; batch size "
          f"{args.batch_size}")
    pipe = measure_pipeline(part, args.batch_size, args.seconds)
    producer = measure_pipeline(part, args.batch_size, min(args.seconds, 5.0), producer_only=True)
    unet = measure_unet(shape, args.batch_size, args.seconds, args.min_steps)
    ratio = pipe["images_per_s"] / unet["images_per_s"]
    print(f"pipeline ({pipe['path']}), default augmentation: {pipe['images_per_s']:.1f} images/s")
    print(f"pipeline ({producer['path']}): {producer['images_per_s']:.1f} images/s")
    print(f"U-Net training step (build_unet defaults, {unet['params']:,} parameters): "
          f"{unet['images_per_s']:.1f} images/s ({unet['steps']} steps in {unet['seconds']} s)")
    verdict = "OK" if ratio >= args.require else "TOO SLOW"
    print(f"ratio pipeline / training: {ratio:.1f}x (required >= {args.require:g}x): {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "data": splits.info["description"], "size": args.size, "batch_size": args.batch_size,
            "backend": keras.backend.backend(), "device": device_name(),
            "cpu_count": os.cpu_count(),
            "pipeline": pipe, "producer": producer, "unet": unet, "ratio": ratio,
        }, indent=2))
    return 0 if ratio >= args.require else 1


if __name__ == "__main__":
    sys.exit(main())
