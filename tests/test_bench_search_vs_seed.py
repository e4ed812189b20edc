"""benchmarks/bench_search_vs_seed.py: the held-out sets it draws, its verdict, its input checks
(the end-to-end run is minutes even at a tiny setting: `-m slow`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_search_vs_seed.py"
ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_search_vs_seed", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_held_out_sets_are_disjoint_while_names_last_and_seeded():
    bench = _bench()
    names = [f"{i}.png" for i in range(30)]
    held = bench.outer_splits(names, 3, 6, seed=0)
    assert [len(h) for h in held] == [6, 6, 6]
    assert len(set().union(*map(set, held))) == 18  # disjoint
    assert held == bench.outer_splits(names, 3, 6, seed=0)
    assert held != bench.outer_splits(names, 3, 6, seed=1)
    wrapped = bench.outer_splits(names, 6, 6, seed=0)  # 36 > 30: the sixth set wraps around
    assert all(len(set(h)) == 6 for h in wrapped)
    assert len(set().union(*map(set, wrapped[:5]))) == 30


def _row(margin: float, clear: bool = True) -> dict:
    return {"baseline": 0.39, "seed": 0.70, "segsearch": 0.70 + margin, "margin": margin,
            "segsearch_vs_baseline": {"clear": clear}}


@pytest.mark.parametrize(("rows", "met"), [
    ([_row(0.04), _row(0.03), _row(0.05)], True),
    ([_row(0.10), _row(0.05), _row(-0.01)], False),  # behind on one split
    ([_row(0.01), _row(0.02), _row(0.03)], False),   # ahead everywhere, < 0.03 on average
    ([_row(0.04), _row(0.04, clear=False)], False),  # not clearly above the trivial baseline
])
def test_verdict_needs_every_split_the_average_and_the_baseline(rows, met):
    summary = _bench().summarize(rows)
    assert summary["verdict"].endswith("met") and ("NOT met" not in summary["verdict"]) == met
    assert summary["margin"]["values"] == [r["margin"] for r in rows]
    assert summary["seed"]["std"] == pytest.approx(0.0)


def test_too_few_slices_for_the_folds_is_refused(capsys):
    if not (ISBI / "images").is_dir():
        pytest.skip("the ISBI slices are not beside the checkout")
    assert _bench().main(["--test-size", "25", "--folds", "4"]) == 2
    assert "leaves too few" in capsys.readouterr().err


def test_resume_keeps_the_splits_of_the_same_arguments_only(tmp_path, capsys):
    import json

    bench = _bench()
    out = tmp_path / "figures.json"
    args = bench.argparse.Namespace(size=128, budget=120, splits=3, out=out, work=None,
                                    resume=True, data=Path("/data"))
    out.write_text(json.dumps({"args": bench._args(args), "splits": [_row(0.05) | {"split": 0}]}))
    assert [r["split"] for r in bench._done(args)] == [0]
    other = bench.argparse.Namespace(**{**vars(args), "budget": 60})
    assert bench._done(other) is None
    assert "other arguments (budget)" in capsys.readouterr().err
    assert bench._done(bench.argparse.Namespace(**{**vars(args), "out": tmp_path / "no"})) == []


def test_seed_from_takes_an_earlier_seed_run_only_where_its_side_was_the_same(tmp_path):
    import json

    bench = _bench()
    earlier = tmp_path / "earlier.json"
    args = bench.argparse.Namespace(size=128, resize="resize", filters=16, batch_size="auto",
                                    test_size=6, folds=3, seed=0, data=Path("/data"),
                                    ensemble="folds", final_schedule="constant", out=None,
                                    work=None, resume=False, only=None, seed_from=earlier)
    row = _row(0.01) | {"split": 1, "held_out": ["3.png", "5.png"], "epochs": 120,
                        "seed_tta": 0.71, "seed_validation": 0.7, "seed_best_epoch": 105,
                        "seed_seconds": 772}
    earlier.write_text(json.dumps({"args": bench._args(args), "splits": [row]}))
    # segsearch's side changed (schedule, ensemble): the seed's figures still hold
    now = bench.argparse.Namespace(**{**vars(args), "final_schedule": "cosine",
                                      "ensemble": "none"})
    taken = bench._earlier_seed(now, 1, ["3.png", "5.png"], 120)
    assert taken["seed"] == 0.70 and taken["seed_best_epoch"] == 105
    assert taken["seed_from"] == str(earlier)
    # another split, other held-out slices, other epochs, another seed side: trained anew
    assert bench._earlier_seed(now, 0, ["3.png", "5.png"], 120) is None
    assert bench._earlier_seed(now, 1, ["3.png", "6.png"], 120) is None
    assert bench._earlier_seed(now, 1, ["3.png", "5.png"], 100) is None
    wider = bench.argparse.Namespace(**{**vars(now), "filters": 32})
    assert bench._earlier_seed(wider, 1, ["3.png", "5.png"], 120) is None
    assert bench._earlier_seed(bench.argparse.Namespace(**{**vars(now), "seed_from": None}),
                               1, ["3.png", "5.png"], 120) is None


def test_reuse_studies_needs_work_and_the_same_slices(tmp_path, capsys):
    bench = _bench()
    assert bench.main(["--reuse-studies"]) == 2
    assert "--reuse-studies needs --work" in capsys.readouterr().err
    source = tmp_path / "data"
    for sub in ("images", "masks"):
        (source / sub).mkdir(parents=True)
        for name in ("1.png", "2.png", "3.png"):
            (source / sub / name).write_bytes(b"")
    target = bench._link_pairs(source, ["1.png", "2.png"], tmp_path / "work" / "dev")
    # reused as it is when it holds the same slices; refused when it holds others
    assert bench._link_pairs(source, ["2.png", "1.png"], target, reuse=True) == target
    with pytest.raises(SystemExit, match="holds other slices"):
        bench._link_pairs(source, ["1.png", "3.png"], target, reuse=True)
    with pytest.raises(FileExistsError):  # without --reuse-studies a split starts anew
        bench._link_pairs(source, ["1.png", "2.png"], target)
