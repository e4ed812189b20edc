"""Does the search beat simply training the seed network for the whole budget?

On the ISBI slices (via ``segsearch.data``), in one run:

- **segsearch**: a study of ``--trials`` trials of at most ``--budget / --trials`` epochs each
  (Optuna TPE with Hyperband pruning by default; the seed network is the first trial), then the best
  configuration trained further from its checkpoint with what is left of the budget. Its validation
  mean IoU is the exported model's.
- **seed**: the U-Net seed network (the hypermodel's defaults) trained for all ``--budget`` epochs
  through the same training function, data, split, batches and augmentation.

Both report the best epoch's validation mean IoU (the objective both keep weights by) and the seed's
last epoch too. The defaults are what the issue measured: 128x128, 24 train / 6 validation
slices, 120 epochs of budget, 8 trials, the seed's 64 filters. On a CPU that takes hours;
parametrize it down to look in minutes::

    python3 benchmarks/bench_search_vs_seed.py                     # the issue's setting
    python3 benchmarks/bench_search_vs_seed.py --size 64 --budget 48 --filters 16   # minutes

The filters override fixes the U-Net's first-level width for both sides (the search then tunes the
rest: depth, upsampling, dropout, batch norm, learning rate, optimizer, loss).

Both figures are printed beside the trivial baseline (the best constant prediction on the same
validation images, ``baseline.json``) with their margins over it; a side that does not beat it by a
clear margin (:func:`segsearch.scores.clear_margin`) is flagged. The verdict between the two is
"within noise" unless the margin exceeds the noise: the largest of a fixed 0.02, the seed's own
epoch-to-epoch spread (standard deviation of its last 10 epochs) and ``--spread`` (a split-to-split
spread measured by running with several ``--seed``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ISBI = REPO.parent / "shared" / "data" / "isbi2012-membrane"
OBJECTIVE = "val_mean_iou"
#: a difference between the two below this is never called a win (see the module docstring).
NOISE_FLOOR = 0.02


def _printer(event: dict) -> None:
    kind = event["event"]
    if kind == "trial_end":
        value = event.get("value")
        print(f"  trial {event['trial']}: {event['state']:<10} {OBJECTIVE} "
              f"{'-' if value is None else f'{value:.4f}'} after {event.get('epochs')} epochs "
              f"({event.get('duration_s', 0):.0f} s)  {event.get('params')}", flush=True)
    elif kind == "final_start":
        print(f"  final: trial {event['trial']} trained {event['epochs']} more epochs from epoch "
              f"{event['from_epoch']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image size (default 128)")
    parser.add_argument("--budget", type=int, default=120, help="epochs in all (default 120)")
    parser.add_argument("--trials", type=int, default=8, help="search trials (default 8)")
    parser.add_argument("--filters", type=int, default=None,
                        help="fix the U-Net's first-level filters (default: the seed's 64)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--engine", default="optuna", choices=["optuna", "keras-tuner"])
    parser.add_argument("--algorithm", default=None,
                        help="the engine's algorithm (default: the engine's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=ISBI, help="the ISBI slices folder")
    parser.add_argument("--work", type=Path, default=None,
                        help="where the study goes (default: a temporary folder, removed)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--seed-first", action="store_true",
                        help="train the seed network before the search (same figures)")
    parser.add_argument("--spread", type=float, default=0.0,
                        help="the split-to-split spread of the objective, if measured: margins "
                             "below it are within noise")
    parser.add_argument("--seed-from", type=Path, default=None,
                        help="take the seed network's figures from an earlier --out JSON of the "
                             "same settings instead of training it again")
    args = parser.parse_args(argv)
    if not (args.data / "images").is_dir():
        print(f"no ISBI slices at {args.data}", file=sys.stderr)
        return 2

    import keras
    import keras_tuner

    from segsearch.driver import Study
    from segsearch.engines.trial import TrialTask, run_trial
    from segsearch.scores import judge
    from segsearch.spacefile import load_config

    per_trial = max(1, args.budget // args.trials)
    work = args.work or Path(tempfile.mkdtemp(prefix="segsearch-vs-seed-"))
    section = {"engine": args.engine, "trials": args.trials, "objective": OBJECTIVE,
               "seed": args.seed}
    if args.algorithm:
        section["algorithm"] = args.algorithm
    config = load_config({
        "study": "search-vs-seed",
        "architecture": "unet",
        "data": {"source": str(args.data), "image_size": args.size, "val_fraction": 0.2,
                 "seed": args.seed},
        "train": {"epochs": per_trial, "batch_size": args.batch_size,
                  "budget_epochs": args.budget},
        "search": section,
        "space": {"filters": args.filters} if args.filters else {},
        "export": {"enabled": False},
    }, study_dir=work / "study")
    print(f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs; unet "
          f"{args.filters or 'seed'} filters, {args.size}x{args.size}, budget {args.budget} "
          f"epochs: {args.trials} trials x <= {per_trial} epochs + final; {config.search.engine} "
          f"{config.search.algorithm} / {config.search.pruner} pruning", flush=True)
    def run_search() -> dict:
        t0 = time.perf_counter()
        results = Study(config, fresh=True).run(progress=_printer)
        seconds = time.perf_counter() - t0
        counts = {s: sum(r.state == s for r in results.trials)
                  for s in ("complete", "pruned", "failed", "infeasible")}
        used = sum(r.epochs for r in results.trials) + results.final_epochs
        print(f"segsearch: {OBJECTIVE} {results.best_value:.4f} (trial {results.best_trial}, "
              f"{counts}, {used} epochs trained in all) in {seconds:.0f} s", flush=True)
        return {"segsearch": results.best_value, "segsearch_trial": results.best_trial,
                "baseline": results.baseline,
                "segsearch_params": results.best_params, "segsearch_seconds": seconds,
                "trial_states": counts}

    def run_seed() -> dict:
        # the seed network: the same data, split, batches and training function, all the budget
        t0 = time.perf_counter()
        seed_study = Study(config)
        hm = seed_study.hypermodel()
        context = seed_study.training_context(progress=None)
        outcome = run_trial(context, lambda: hm.build(keras_tuner.HyperParameters()),
                            TrialTask(number=0, out_dir=work / "seed", epochs=args.budget,
                                      save_checkpoint=False))
        seconds = time.perf_counter() - t0
        last = outcome.history[-1].get(OBJECTIVE) if outcome.history else None
        tail = [r[OBJECTIVE] for r in outcome.history[-10:] if r.get(OBJECTIVE) is not None]
        spread = float(np.std(tail)) if len(tail) > 1 else 0.0
        print(f"seed network, {args.budget} epochs: {OBJECTIVE} best epoch {outcome.value:.4f} "
              f"(moving average, epoch {outcome.best_epoch}), last epoch {last:.4f}, last-10 "
              f"spread {spread:.4f} in {seconds:.0f} s", flush=True)
        return {"seed_best": outcome.value, "seed_last": last, "seed_seconds": seconds,
                "seed_spread": spread}

    try:
        figures = {"size": args.size, "budget": args.budget, "trials": args.trials,
                   "filters": args.filters, "engine": config.search.engine,
                   "algorithm": config.search.algorithm, "pruner": config.search.pruner}
        if args.seed_from:
            earlier = json.loads(args.seed_from.read_text())
            same = ("size", "budget", "trials", "filters")
            if any(earlier.get(k) != figures[k] for k in same):
                print(f"{args.seed_from} was measured with other settings", file=sys.stderr)
                return 2
            figures.update({k: earlier.get(k) for k in ("seed_best", "seed_last", "seed_seconds",
                                                         "seed_spread")})
            print(f"seed network, {args.budget} epochs (from {args.seed_from}): {OBJECTIVE} best "
                  f"epoch {figures['seed_best']:.4f}, last epoch {figures['seed_last']:.4f}",
                  flush=True)
            figures.update(run_search())
        elif args.seed_first:  # the split is drawn by whichever runs first, kept in split.json
            work.joinpath("study").mkdir(parents=True, exist_ok=True)
            figures.update(run_seed())
            figures.update(run_search())
        else:
            figures.update(run_search())
            figures.update(run_seed())
        margin = figures["segsearch"] - figures["seed_best"]
        noise = max(NOISE_FLOOR, figures.get("seed_spread") or 0.0, args.spread)
        figures["margin"], figures["noise"] = margin, noise
        base = (figures.get("baseline") or {}).get(OBJECTIVE)
        if base is not None:
            best = figures["baseline"]
            print(f"trivial baseline (every pixel class {best.get('best_constant_class')}): "
                  f"{OBJECTIVE} {base:.4f}")
            for side, key in (("segsearch", "segsearch"), ("seed", "seed_best")):
                verdict = judge(figures[key], base)
                figures[f"{key}_vs_baseline"] = verdict
                flag = "" if verdict["clear"] else \
                    f"  NOT CLEARLY ABOVE THE BASELINE (needs {verdict['needed']:.4f})"
                print(f"  {side}: {figures[key]:.4f}, {verdict['margin']:+.4f} over the "
                      f"baseline{flag}")
        beaten = [judge(figures[k], base)["clear"] for k in ("segsearch", "seed_best")] \
            if base is not None else [True, True]
        if not any(beaten):
            verdict = "neither beats the trivial baseline clearly: no winner"
        elif abs(margin) < noise:
            verdict = f"within noise (|margin| < {noise:.4f})"
        else:
            verdict = "segsearch ahead" if margin > 0 else "seed ahead"
        figures["verdict"] = verdict
        print(f"segsearch - seed (best epochs): {margin:+.4f} -> {verdict}")
        if args.out:
            args.out.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
