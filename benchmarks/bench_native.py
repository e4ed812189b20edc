"""Native resolution: resized inputs against patches + sliding windows, on the ISBI membrane slices.

The ISBI 2012 slices are 512x512; their masks are 255 inside cells and 0 on the membranes, the thin
structure of interest, so ``data.values: {0: 1, 255: 0}`` makes membrane class 1 (22% of pixels).
The same small U-Net, the same split (24 train / 6 validation slices), the same augmentation and
the same number of optimiser steps of the same batch size, three ways:

- **(a) resize, scored at 128**: every slice resized to 128x128 for training and scoring (what
  ``data.resize: resize`` does, and the figure a resized study reports);
- **(b) resize, scored at 512**: the same network, its prediction upsampled (bilinear
  probabilities) to 512x512 and scored against the original masks: what a user gets;
- **(c) patches, scored at 512**: trained on random 128x128 patches of the full-resolution slices
  (a third centred on membrane), scored on the whole 512x512 slices through overlapping windows
  with Gaussian blending (``data.resize: patch``, segsearch's default for such data).

Each line gives the membrane Dice and the mean IoU (membrane and cell interior) over the
validation slices, computed with ``segsearch.metrics``, and the trivial baseline: the best constant
prediction (all membrane or all interior) by each figure, on the same pixels. Run::

    python3 benchmarks/bench_native.py                  # defaults: minutes on 2 CPU cores
    python3 benchmarks/bench_native.py --steps 2000 --filters 32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ISBI = REPO.parent / "shared" / "data" / "isbi2012-membrane"


def _scores(pairs) -> dict[str, float]:
    """Membrane Dice and mean IoU over (y_true (H, W, 1), probabilities (H, W, 1)) pairs."""
    import numpy as np

    from segsearch.metrics import Dice, MeanIoU

    dice, miou = Dice(1), MeanIoU(1)
    for y, p in pairs:
        y, p = np.asarray(y, np.float32)[None], np.asarray(p, np.float32)[None]
        dice.update_state(y, p)
        miou.update_state(y, p)
    return {"dice": float(dice.result()), "mean_iou": float(miou.result())}


def _trivial(masks) -> dict[str, float]:
    """The best constant prediction by each figure (every pixel membrane, or none)."""
    import numpy as np

    out: dict[str, float] = {}
    for value in (0.0, 1.0):
        scores = _scores([(y, np.full(y.shape, value, np.float32)) for y in masks])
        for key, v in scores.items():
            out[key] = max(out.get(key, 0.0), v)
    return out


def _model(args: argparse.Namespace):
    import keras

    from segsearch import losses, metrics
    from segsearch.architectures.unet import build_unet

    keras.utils.set_random_seed(args.seed)
    model = build_unet((args.size, args.size, 1), 1, depth=args.depth,
                       filters=args.filters)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss=losses.get(args.loss, num_classes=1),
                  metrics=metrics.default_metrics(1), jit_compile=False)
    return model


def _train(model, part, args, **batch_kwargs) -> float:
    from segsearch.data import batches

    t0 = time.monotonic()
    epochs = max(1, args.steps // args.steps_per_epoch)
    data = batches(part, args.batch_size, augment=args.augment, seed=args.seed, **batch_kwargs)
    model.fit(data, epochs=epochs, steps_per_epoch=args.steps_per_epoch, verbose=0)
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="input / patch size (default 128)")
    parser.add_argument("--steps", type=int, default=300,
                        help="optimiser steps of each training (default 300)")
    parser.add_argument("--steps-per-epoch", type=int, default=30, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--filters", type=int, default=8,
                        help="the U-Net's first-level filters (default 8)")
    parser.add_argument("--loss", default="ce_dice", help="segsearch loss (default ce_dice)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's (default 1e-3)")
    parser.add_argument("--depth", type=int, default=4, help="U-Net depth (default 4)")
    parser.add_argument("--augment", type=float, default=1.0, help="augmentation strength")
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=ISBI, help="the ISBI slices folder")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if not (args.data / "images").is_dir():
        print(f"no ISBI slices at {args.data}", file=sys.stderr)
        return 2

    import numpy as np

    from segsearch.data import DataConfig, load
    from segsearch.data.dataset import resize_image
    from segsearch.sliding import part_images, score_images

    common = {"source": str(args.data), "image_size": args.size, "val_fraction": 0.2,
              "seed": args.seed, "values": {0: 1, 255: 0}, "augment": args.augment}
    resized = load(DataConfig(resize="resize", **common))
    native = load(DataConfig(resize="patch", **common))
    assert resized.val.names == native.val.names
    full_x, full_y = part_images(native.val)
    share = float(np.mean(np.concatenate([y.ravel() for y in full_y]) == 1))
    print(f"ISBI: {len(native.train.names)} train / {len(native.val.names)} validation slices of "
          f"{full_x[0].shape[0]}x{full_x[0].shape[1]}, membrane {100 * share:.1f}% of pixels; "
          f"U-Net depth {args.depth}, {args.filters} filters, loss {args.loss}, {args.steps} "
          f"steps of {args.batch_size} at {args.size}x{args.size}", flush=True)

    rows: dict[str, dict[str, float]] = {}
    model = _model(args)
    seconds = _train(model, resized.train, args, repeat=True)
    print(f"(a)/(b) trained in {seconds:.0f} s", flush=True)
    small = np.asarray(model.predict(resized.val.x, verbose=0, batch_size=args.batch_size))
    rows["a"] = {**_scores(zip(resized.val.y, small)), "train_s": seconds,
                 **{f"trivial_{k}": v for k, v in _trivial(resized.val.y).items()}}
    up = [resize_image(p, y.shape[:2]) for p, y in zip(small, full_y)]
    rows["b"] = {**_scores(zip(full_y, up)), "train_s": seconds,
                 **{f"trivial_{k}": v for k, v in _trivial(full_y).items()}}
    del model

    model = _model(args)
    seconds = _train(model, native.train, args, steps=args.steps_per_epoch,
                     foreground=DataConfig().foreground_oversample)
    print(f"(c) trained in {seconds:.0f} s", flush=True)
    t0 = time.monotonic()
    scored = score_images(model, full_x, full_y, overlap=args.overlap, batch_size=args.batch_size)
    rows["c"] = {"dice": scored["dice"], "mean_iou": scored["mean_iou"], "train_s": seconds,
                 "score_s": time.monotonic() - t0,
                 **{f"trivial_{k}": v for k, v in _trivial(full_y).items()}}

    labels = {"a": "(a) resize 128, scored at 128",
              "b": "(b) resize 128, scored at 512 (upsampled)",
              "c": "(c) 128 patches, scored at 512 (sliding windows)"}
    print(f"\n{'':<50} {'membrane Dice':>13} {'mean IoU':>9}   trivial Dice / mIoU   train")
    for key, row in rows.items():
        print(f"{labels[key]:<50} {row['dice']:>13.4f} {row['mean_iou']:>9.4f}   "
              f"{row['trivial_dice']:.4f} / {row['trivial_mean_iou']:.4f}      "
              f"{row['train_s']:.0f} s")
    print(f"\nat 512, (c) - (b): membrane Dice {rows['c']['dice'] - rows['b']['dice']:+.4f}, "
          f"mean IoU {rows['c']['mean_iou'] - rows['b']['mean_iou']:+.4f}")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                        "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
