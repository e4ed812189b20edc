"""benchmarks/bench_pipeline.py runs on a CPU, marks its figures CPU, and reports every row."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pipeline.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_pipeline", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_on_cpu(tmp_path, capsys):
    bench = _bench()
    # a one-level U-Net: the figures and rows are tested, not the network (half the layers of
    # depth 2 to trace, for each row and each precision policy)
    tiny = (("tiny unet", "sample", 32, 4, "unet", {"depth": 1, "filters": 4}),
            ("missing ISBI", "isbi", 32, 4, "unet", {"depth": 1, "filters": 4}))
    pipe = bench.pipeline_vs_step(tiny, seconds=0.3, isbi=tmp_path / "none")
    assert pipe["device"] == "CPU" and pipe["skipped"] == ["missing ISBI"]
    (row,) = pipe["rows"]
    assert row["pipeline"]["path"].startswith("accelerator")
    assert row["numpy_pipeline"]["path"] == "NumPy producer"
    assert row["ratio"] == row["pipeline"]["images_per_s"] / row["step"]["images_per_s"] > 0
    precision = bench.precision_throughput(kwargs={"depth": 1, "filters": 4}, size=32,
                                           batch_sizes=(4,), seconds=0.3)
    assert [r["policy"] for r in precision["rows"]] == ["float32", "mixed_bfloat16"]
    assert [r["conv_compute_dtype"] for r in precision["rows"]] == ["float32", "bfloat16"]
    text = bench.report(pipe, precision)
    assert "img/s [CPU]" in text and "[GPU]" not in text and "skipped" in text
