"""One results format: records, trials.csv, best-first order."""

from __future__ import annotations

import math

from segsearch.records import (
    TrialRecord,
    read_trial_records,
    read_trials_csv,
    sort_best,
    trial_dir,
    write_trials_csv,
)


def _records():
    return [
        TrialRecord(0, "complete", "unet", {"depth": 4, "lr": 1e-4, "aspp": "6,12,18", "bn": True},
                    0.7, {"val_dice": 0.7, "val_loss": 0.3}, 3, 12.5,
                    started="2026-01-01T10:00:00"),
        TrialRecord(1, "pruned", "unet", {"depth": 2, "lr": 1e-3, "bn": False}, 0.2,
                    {"val_dice": 0.2}, 1, 3.0, reason="pruned after epoch 1 (val_dice 0.2)"),
        TrialRecord(2, "infeasible", "unet", {"depth": 6}, reason="32 is not divisible by 64"),
        TrialRecord(3, "complete", "unet", {"depth": 3, "lr": 3e-4, "bn": True}, 0.9,
                    {"val_dice": 0.9, "val_loss": math.nan}, 3, 11.0),
    ]


def test_trials_csv_round_trip(tmp_path):
    records = _records()
    path = write_trials_csv(records, tmp_path / "trials.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header[:3] == ["number", "state", "architecture"]
    assert "params_depth" in header and "metrics_val_dice" in header
    back = read_trials_csv(path)
    assert [r.number for r in back] == [0, 1, 2, 3]
    assert back[0].params == records[0].params  # strings, floats, booleans survive
    assert back[1].reason == records[1].reason and back[2].value is None
    assert back[3].values == {"val_dice": 0.9}  # NaN is written as empty


def test_sort_best_puts_complete_trials_first_then_pruned_then_the_rest():
    records = _records()
    assert [r.number for r in sort_best(records, "maximize")] == [3, 0, 1, 2]
    assert [r.number for r in sort_best(records, "minimize")] == [0, 3, 1, 2]
    records[1].value = 0.95  # a pruned trial that scored high early stays below the complete ones
    assert [r.number for r in sort_best(records, "maximize")] == [3, 0, 1, 2]


def test_record_json_round_trip(tmp_path):
    record = _records()[3]
    record.save(trial_dir(tmp_path, 3) / "trial.json")
    loaded = read_trial_records(tmp_path)
    assert len(loaded) == 1 and loaded[0].values == {"val_dice": 0.9, "val_loss": None}
    assert loaded[0].params == record.params
