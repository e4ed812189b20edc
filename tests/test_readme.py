"""The README's Python examples run as written (each in its own empty working folder, as the main
module of a script would), and every example that starts a search carries the __main__ guard."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(marker: str) -> str:
    """Return the one ```python block of README.md that contains ``marker``."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), re.S)
              if marker in b]
    assert len(blocks) == 1, f"README.md should hold one python block with {marker!r}, found {len(blocks)}"
    return blocks[0]


def run_block(marker: str, folder: Path, monkeypatch) -> dict:
    monkeypatch.chdir(folder)
    namespace: dict = {"__name__": "__main__"}  # as `python3 script.py` runs it
    exec(compile(readme_block(marker), f"README.md ({marker})", "exec"), namespace)  # noqa: S102
    return namespace


def test_hypermodel_in_a_plain_keras_tuner_random_search(tmp_path, monkeypatch, capsys):
    ns = run_block("keras_tuner.RandomSearch(", tmp_path, monkeypatch)
    trials = list(ns["tuner"].oracle.trials.values())
    assert len(trials) == 2
    assert all(t.status == "COMPLETED" for t in trials)
    for t in trials:
        assert {"val_dice", "val_iou", "val_mean_iou", "val_pixel_accuracy"} <= set(t.metrics.metrics)
        assert 0.0 <= t.score <= 1.0
    best = ns["best"]
    assert best.values["depth"] in (2, 3) and best.values["filters"] in (4, 8)
    assert "'depth'" in capsys.readouterr().out
    assert (tmp_path / "kt_demo" / "unet_demo").is_dir()


def test_hypermodel_in_a_hand_written_optuna_objective(tmp_path, monkeypatch, capsys):
    ns = run_block("OptunaHyperParameters(trial)", tmp_path, monkeypatch)
    study = ns["study"]
    assert len(study.trials) == 2
    assert study.trials[0].params == ns["seed_values"](ns["hypermodel"])  # the seed network first
    assert all(np.isfinite(t.value) for t in study.trials)
    assert "filters" in capsys.readouterr().out


def test_segsearch_run_from_python(tmp_path, monkeypatch, capsys):
    ns = run_block("segsearch.run(", tmp_path, monkeypatch)
    results = ns["results"]
    finished = [t for t in results.trials if t.state in ("complete", "pruned")]
    assert len(finished) == 2
    assert Path(results.best_model_path) == Path("studies/unet-quick/best/model.keras")
    assert (tmp_path / results.best_model_path).is_file()
    assert results.best_params["filters"] == 4
    assert 0.0 <= results.best_value <= 1.0
    out = capsys.readouterr().out
    assert "complete" in out


@pytest.mark.parametrize("marker", ["keras_tuner.RandomSearch(", "OptunaHyperParameters(trial)", "segsearch.run("])
def test_readme_holds_each_example_once(marker):
    assert readme_block(marker)


def test_every_example_that_starts_a_search_carries_the_main_guard():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), re.S)
    runs = r"segsearch\.run\(|study\.run\(|Study\(.*\)\.run\("
    starting = [b for b in blocks if re.search(runs, b)]
    assert len(starting) >= 2
    for block in starting:
        guard = block.find('if __name__ == "__main__":')
        assert guard >= 0, block
        first_run = min(i for i in (block.find("segsearch.run("), block.find(".run(")) if i >= 0)
        assert guard < first_run, block
