"""What the compiled metrics cost a training step: one network trained with and without them.

Every model segsearch builds is compiled with four confusion-matrix metrics (dice, iou, mean_iou,
pixel_accuracy; :mod:`segsearch.metrics`) that run on every training batch. This script trains the
U-Net hypermodel's default network (at ``--filters``) on the ISBI slices (or the synthetic sample)
resized to ``--size``, in one process, alternating (ABAB, after one warm-up epoch each): as built
(loss + metrics) and recompiled with the loss alone, and prints the seconds per epoch of each and
their ratio. ::

    python3 benchmarks/bench_metrics.py                    # 128x128, 16 filters, batch 8
    python3 benchmarks/bench_metrics.py --data sample --size 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ISBI = REPO.parent / "shared" / "data" / "isbi2012-membrane"


def measure(data: str, size: int, filters: int, batch_size: int, epochs: int,
            repeats: int) -> dict:
    """Seconds per epoch with and without the metrics (medians over ``repeats``), and the ratio."""
    import keras
    import keras_tuner
    import numpy as np

    from segsearch import hypermodels
    from segsearch.data import DataConfig, load

    splits = load(DataConfig(source=data, image_size=size, resize="resize"))
    x = np.asarray(splits.train.x, np.float32)
    y = np.asarray(splits.train.y, np.float32)
    hm = hypermodels.get("unet", (*splits.train.size, splits.train.channels),
                         splits.info["num_classes"], space={"filters": filters})
    with_metrics = hm.build(keras_tuner.HyperParameters())
    loss_only = hm.build(keras_tuner.HyperParameters())
    loss_only.compile(optimizer=keras.optimizers.Adam(), loss=loss_only.loss)
    times: dict[str, list[float]] = {"with metrics": [], "loss only": []}
    models = {"with metrics": with_metrics, "loss only": loss_only}
    for model in models.values():  # warm-up: tracing
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    for _ in range(repeats):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
            times[name].append((time.perf_counter() - t0) / epochs)
    out = {name: statistics.median(v) for name, v in times.items()}
    out["ratio"] = out["with metrics"] / out["loss only"]
    out.update(images=len(x), backend=keras.backend.backend())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ISBI), help="the ISBI slices, or 'sample'")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if args.data != "sample" and not (Path(args.data) / "images").is_dir():
        print(f"no images at {args.data} (use --data sample)", file=sys.stderr)
        return 2
    r = measure(args.data, args.size, args.filters, args.batch_size, args.epochs, args.repeats)
    print(f"backend {r['backend']}, {os.cpu_count()} CPUs; unet {args.filters} filters, "
          f"{args.size}x{args.size}, {r['images']} images, batch {args.batch_size}")
    print(f"  with the compiled metrics: {r['with metrics']:.2f} s/epoch")
    print(f"  loss only:                 {r['loss only']:.2f} s/epoch")
    print(f"  ratio: {r['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
