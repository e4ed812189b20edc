"""Trivial baselines, the clear margin, and the smoothed (EMA) choice of the best epoch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segsearch import scores


def test_ema_picks_the_epoch_whose_neighbours_agree_not_the_lucky_one():
    # the final training: the peak epoch stays, but it is reported smoothed
    index, value = scores.select_epoch([0.73, 0.86, 0.78, 0.47], alpha=0.6)
    assert index == 1 and value == pytest.approx(0.6 * 0.86 + 0.4 * 0.73)
    # an isolated spike after a dip loses to the steady epochs before it
    index, value = scores.select_epoch([0.80, 0.81, 0.60, 0.85, 0.55], alpha=0.6)
    assert index == 1 and value == pytest.approx(0.6 * 0.81 + 0.4 * 0.80)
    assert scores.select_epoch([0.80, 0.81, 0.60, 0.85, 0.55], alpha=1.0)[0] == 3  # raw peak
    # a run that keeps improving keeps its last epoch
    assert scores.select_epoch([0.1, 0.2, 0.3, 0.4])[0] == 3
    assert scores.select_epoch([0.5, 0.4, 0.3], direction="minimize")[0] == 2


def test_ema_skips_non_finite_values_and_continues_from_a_start():
    smoothed = scores.smooth([math.nan, 0.5, math.nan, 1.0], alpha=0.5)
    assert math.isnan(smoothed[0]) and smoothed[1:] == [0.5, 0.5, 0.75]
    assert scores.smooth([1.0], alpha=0.5, start=0.0) == [0.5]
    with pytest.raises(ValueError):
        scores.smooth([1.0], alpha=0.0)


def _mask(fg_share: float, shape=(10, 10)) -> np.ndarray:
    y = np.zeros(shape + (1,), np.float32)
    y.reshape(-1)[: int(round(fg_share * y.size))] = 1
    return y


def test_constant_baselines_of_known_binary_masks():
    masks = [_mask(0.25), _mask(0.25)]
    masks[1][0, 0, 0] = -1  # an ignored pixel counts nowhere (it was foreground)
    fg, bg = 49, 150  # of 199 labelled pixels
    base = scores.constant_baselines(masks, 1, 0, class_names=["cell", "membrane"])
    everything_bg, everything_fg = base["constants"]
    assert everything_bg["val_dice"] == 0 and everything_bg["val_iou"] == 0
    assert everything_bg["val_pixel_accuracy"] == pytest.approx(bg / 199, abs=1e-6)
    assert everything_bg["val_mean_iou"] == pytest.approx(bg / 199 / 2, abs=1e-6)
    assert everything_fg["val_dice"] == pytest.approx(2 * fg / (2 * fg + bg), abs=1e-6)
    assert everything_fg["val_iou"] == pytest.approx(fg / 199, abs=1e-6)
    best = base["best"]
    assert best["best_constant_class"] == 1 and best["class_name"] == "membrane"
    assert best["val_dice"] == everything_fg["val_dice"]
    assert base["best_by_metric"]["val_mean_iou"]["class"] == 0
    assert base["pixels"] == [bg, fg]


@pytest.mark.parametrize("num_classes,background", [(1, 0), (1, None), (3, 0), (3, None), (3, 2)])
def test_constant_baselines_equal_the_metrics_fed_constant_predictions(num_classes, background):
    """The same metric code: feeding the compiled metrics a constant prediction gives the same."""
    pytest.importorskip("keras")
    from segsearch import metrics

    rng = np.random.default_rng(1)
    k = max(2, num_classes)
    y = rng.integers(0, k, size=(3, 7, 6, 1)).astype("float32")
    y[rng.random(y.shape) < 0.1] = -1
    base = scores.constant_baselines(list(y), num_classes, background)
    for cls in range(k):
        if num_classes == 1:
            p = np.full(y.shape, float(cls), np.float32)
        else:
            p = np.zeros(y.shape[:-1] + (k,), np.float32)
            p[..., cls] = 1
        for metric in metrics.default_metrics(num_classes, background):
            metric.update_state(y, p)
            expected = float(np.asarray(metric.result()))
            assert base["constants"][cls][f"val_{metric.name}"] == pytest.approx(expected,
                                                                                 abs=1e-5)


def test_clear_margin_and_judge():
    assert scores.clear_margin(0.0) == pytest.approx(0.1)
    assert scores.clear_margin(0.4595) == pytest.approx(0.05405)
    assert scores.clear_margin(0.9) == pytest.approx(0.05)
    assert scores.clear_margin(0.3, "minimize") == pytest.approx(0.05)
    verdict = scores.judge(0.4647, 0.4595)  # the "segsearch ahead"
    assert verdict["clear"] is False and verdict["margin"] == pytest.approx(0.0052)
    assert scores.judge(0.62, 0.4595)["clear"] is True
    assert scores.judge(None, 0.4) is None and scores.judge(0.5, None) is None
    warning = scores.warning_text(verdict, "val_mean_iou")
    assert warning.startswith("WARNING") and "0.4595" in warning
    assert scores.warning_text(scores.judge(0.9, 0.1), "val_dice") is None


def test_baseline_file_roundtrip(tmp_path):
    assert scores.read_baseline(tmp_path) is None
    scores.write_baseline(tmp_path, {"objective": "val_dice", "best": {"val_dice": 0.2,
                                                                      "best_constant_class": 1}})
    stored = scores.read_baseline(tmp_path)
    assert stored["best"]["val_dice"] == 0.2
    assert "every pixel class 1" in scores.baseline_text(stored, "val_dice")
