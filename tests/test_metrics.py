"""Metrics against NumPy references, with ignored pixels and accumulation over batches."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from segsearch import metrics  # noqa: E402


def _data(num_classes: int, seed: int = 0, n: int = 3):
    rng = np.random.default_rng(seed)
    k = max(num_classes, 2)
    y = rng.integers(0, k, size=(n, 6, 5, 1)).astype("float32")
    y[rng.random(y.shape) < 0.25] = -1.0
    if num_classes == 1:
        p = rng.uniform(0, 1, size=(n, 6, 5, 1)).astype("float32")
    else:
        p = rng.dirichlet(np.ones(num_classes), size=(n, 6, 5)).astype("float32")
    return y, p


def _confusion(y, p, num_classes):
    valid = y[..., 0] >= 0
    t = y[..., 0][valid].astype(int)
    if num_classes == 1:
        q = (p[..., 0] >= 0.5)[valid].astype(int)
        k = 2
    else:
        q = p.argmax(-1)[valid]
        k = num_classes
    cm = np.zeros((k, k))
    np.add.at(cm, (t, q), 1)
    return cm


def refs(y, p, num_classes):
    cm = _confusion(y, p, num_classes)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp

    def nanmean(num, den):
        ok = den > 0
        return (num[ok] / den[ok]).mean() if ok.any() else 0.0

    return {
        "dice": nanmean(2 * tp[1:], (2 * tp + fp + fn)[1:]),
        "iou": nanmean(tp[1:], (tp + fp + fn)[1:]),
        "mean_iou": nanmean(tp, tp + fp + fn),
        "pixel_accuracy": tp.sum() / cm.sum(),
    }


@pytest.mark.parametrize("num_classes", [1, 2, 4])
def test_metrics_match_numpy_accumulated_over_batches(num_classes):
    y, p = _data(num_classes)
    expected = refs(y, p, num_classes)
    ms = metrics.default_metrics(num_classes)
    assert [m.name for m in ms] == ["dice", "iou", "mean_iou", "pixel_accuracy"]
    for m in ms:
        for i in range(len(y)):  # one image per batch: the epoch value is NOT a mean of batches
            m.update_state(y[i:i + 1], p[i:i + 1])
        np.testing.assert_allclose(float(m.result()), expected[m.name], rtol=1e-5, err_msg=m.name)
        m.reset_state()
        assert float(m.result()) == 0.0


def test_epoch_value_differs_from_mean_of_batches():
    """Guards the accumulation: a batch mean would give 0.5 here, the epoch value is 2/3."""
    y1 = np.array([1, 1, 0, 0], "float32").reshape(1, 2, 2, 1)
    p1 = np.array([0.9, 0.9, 0.1, 0.1], "float32").reshape(1, 2, 2, 1)  # dice 1
    y2 = np.array([1, 0, 0, 0], "float32").reshape(1, 2, 2, 1)
    p2 = np.array([0.1, 0.9, 0.1, 0.1], "float32").reshape(1, 2, 2, 1)  # dice 0
    m = metrics.Dice(1)
    m.update_state(y1, p1)
    m.update_state(y2, p2)
    # tp=2, fp=1, fn=1 -> 4 / 6
    assert float(m.result()) == pytest.approx(2 / 3)


def test_ignored_pixels_do_not_count():
    y, p = _data(1, seed=3)
    q = p.copy()
    q[y < 0] = 1.0 - q[y < 0]
    for m1, m2 in zip(metrics.default_metrics(1), metrics.default_metrics(1)):
        m1.update_state(y, p)
        m2.update_state(y, q)
        assert float(m1.result()) == pytest.approx(float(m2.result()))


def test_binary_and_two_class_softmax_agree():
    y, p = _data(1, seed=4)
    p2 = np.concatenate([1 - p, p], -1)
    p2[..., 1] += 1e-4  # break exact 0.5 ties the same way as the threshold
    for name_1, m1 in [(m.name, m) for m in metrics.default_metrics(1)]:
        m2 = {m.name: m for m in metrics.default_metrics(2)}[name_1]
        m1.update_state(y, p)
        m2.update_state(y, p2)
        assert float(m1.result()) == pytest.approx(float(m2.result()), abs=1e-6), name_1


def test_matches_keras_mean_iou_without_ignored_pixels():
    y, p = _data(3, seed=5)
    y = np.abs(y)
    ours = metrics.MeanIoU(3)
    ours.update_state(y, p)
    ref = keras.metrics.MeanIoU(num_classes=3)
    ref.update_state(y[..., 0], p.argmax(-1))
    assert float(ours.result()) == pytest.approx(float(ref.result()), rel=1e-5)


def test_include_background_and_empty():
    y = np.zeros((1, 2, 2, 1), "float32")
    p = np.zeros((1, 2, 2, 1), "float32")
    d = metrics.Dice(1)
    d.update_state(y, p)
    assert float(d.result()) == 0.0  # no foreground anywhere: nothing to average
    d = metrics.Dice(1, include_background=True)
    d.update_state(y, p)
    assert float(d.result()) == 1.0


def test_serialization_roundtrip():
    for m in metrics.default_metrics(3) + [metrics.Dice(2, include_background=True)]:
        cfg = keras.saving.serialize_keras_object(m)
        again = keras.saving.deserialize_keras_object(cfg)
        assert type(again) is type(m) and again.get_config() == m.get_config()


def test_background_null_and_other_background_change_the_objective():
    # binary: truth 1/4 foreground; prediction finds half of it and nothing else
    y = np.zeros((1, 4, 4, 1), np.float32)
    y[0, 0, :] = 1
    p = np.zeros((1, 4, 4, 1), np.float32)
    p[0, 0, :2] = 1
    fg = 2 * 2 / (2 * 2 + 2)  # dice of class 1
    bg = 2 * 12 / (2 * 12 + 2)  # dice of class 0
    for background, expected in ((0, fg), (None, (fg + bg) / 2), (1, bg)):
        dice = metrics.Dice(1, background=background)
        dice.update_state(y, p)
        assert float(dice.result()) == pytest.approx(expected, abs=1e-6)
    # multi-class: class 0 is a real class (sky) when background is null
    y3 = np.array([0, 0, 1, 2], np.float32).reshape(1, 2, 2, 1)
    p3 = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]].reshape(1, 2, 2, 3)
    default, every = metrics.IoU(3), metrics.IoU(3, background=None)
    default.update_state(y3, p3)
    every.update_state(y3, p3)
    assert float(default.result()) == pytest.approx((0.5 + 1.0) / 2)
    assert float(every.result()) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    with pytest.raises(ValueError, match="background"):
        metrics.Dice(3, background=3)
    restored = metrics.Dice.from_config(metrics.Dice(3, background=None).get_config())
    assert restored.background is None


def test_per_class_figures():
    m = metrics.MeanIoU(3)
    y3 = np.array([0, 0, 1, 2], np.float32).reshape(1, 2, 2, 1)
    p3 = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]].reshape(1, 2, 2, 3)
    m.update_state(y3, p3)
    table = m.per_class()
    assert table["iou"] == [0.5, 0.5, 1.0] and table["pixels"] == [2, 1, 1]
    assert table["predicted"] == [1, 2, 1]
