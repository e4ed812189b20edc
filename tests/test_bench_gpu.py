"""benchmarks/bench_gpu.py keeps working on a CPU (issue 14.6): a one-trial search of the
synthetic sample at 32x32 (a one-level U-Net of 4 filters), its plain model.fit twin, every figure
marked CPU (~1 min)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_gpu_runs_on_a_cpu_and_marks_every_figure(tmp_path):
    out = tmp_path / "figures.json"
    space = tmp_path / "tiny.yaml"  # the smallest network: the figures, not the model, are tested
    # 20 sample images: 16 to train, two whole batches of 8 (a smaller last batch would trace the
    # training step again, in the search's trial and in its plain model.fit twin)
    space.write_text("architecture: unet\ndata:\n  sample_count: 20\nspace:\n  filters: 4\n"
                     "  depth: {min: 1, max: 1, default: 1}\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--space", str(space),
         "--data", "sample", "--size", "32", "--trials", "1", "--epochs", "1", "--pipeline", "none",
         "--interval", "0.5", "--json", str(out)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["device"] == "CPU" and figures["samples"] >= 1
    assert 0 < figures["cpu_percent"] <= 100 and figures["peak_memory_mib"] > 100
    assert len(figures["plain"]["rows"]) == 1 and figures["plain"]["seconds"] > 0
    assert figures["phases"]["first_epoch"] > 0
    a, b, d, phases, ce = figures["lines"]
    assert a.startswith("(a) GPU busy: CPU: n/a;") and a.endswith("[CPU]")
    assert b.startswith("(b) search wall time / plain model.fit time:") and b.endswith("[CPU]")
    assert d.startswith("(d) peak memory:") and " MiB " in d and d.endswith("[CPU]")
    assert phases.startswith("trial phases, mean over 1 trials:")
    assert "bench_pipeline.py" in ce
    progress = [line for line in run.stdout.splitlines()
                if line.startswith(("  trial ", "  plain fit of trial"))]
    assert len(progress) == 2 and all(line.endswith("[CPU]") for line in progress), progress
