"""Losses against NumPy references on small arrays, with ignored pixels (-1)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from segsearch import losses  # noqa: E402
from segsearch.errors import ConfigError  # noqa: E402

EPS = 1e-7


def _data(num_classes: int, seed: int = 0):
    """y (2, 5, 4, 1) class ids with about 20% ignored pixels, and probabilities p."""
    rng = np.random.default_rng(seed)
    k = max(num_classes, 2)
    y = rng.integers(0, k, size=(2, 5, 4, 1)).astype("float32")
    y[rng.random(y.shape) < 0.2] = -1.0
    if num_classes == 1:
        p = rng.uniform(0.02, 0.98, size=(2, 5, 4, 1)).astype("float32")
    else:
        logits = rng.normal(size=(2, 5, 4, num_classes))
        p = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
    return y, p


def _onehot(y: np.ndarray, num_classes: int):
    valid = (y[..., 0] >= 0)
    ids = np.where(valid, y[..., 0], 0).astype(int)
    if num_classes == 1:
        return (ids[..., None] == 1).astype(float), valid
    return np.eye(num_classes)[ids] * valid[..., None], valid


def ref_ce(y, p, c):
    t, valid = _onehot(y, c)
    p = np.clip(p.astype(float), EPS, 1 - EPS)
    if c == 1:
        ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))[..., 0]
    else:
        ce = -(t * np.log(p)).sum(-1)
    return ce[valid].mean()


def ref_dice(y, p, c, smooth=1.0):
    t, valid = _onehot(y, c)
    p = p * valid[..., None]
    inter = (p * t).reshape(-1, t.shape[-1]).sum(0)
    den = p.reshape(-1, t.shape[-1]).sum(0) + t.reshape(-1, t.shape[-1]).sum(0)
    return 1 - ((2 * inter + smooth) / (den + smooth)).mean()


def ref_focal(y, p, c, gamma, alpha):
    t, valid = _onehot(y, c)
    p = np.clip(p.astype(float), EPS, 1 - EPS)
    if c == 1:
        pt = (t * p + (1 - t) * (1 - p))[..., 0]
        at = (t * alpha + (1 - t) * (1 - alpha))[..., 0]
    else:
        pt = (t * p).sum(-1)
        at = alpha
    fl = -at * (1 - pt) ** gamma * np.log(np.clip(pt, EPS, 1))
    return fl[valid].mean()


def ref_tversky(y, p, c, a, b, smooth=1.0):
    t, valid = _onehot(y, c)
    p = (p * valid[..., None]).reshape(-1, t.shape[-1])
    t = t.reshape(-1, t.shape[-1])
    tp = (p * t).sum(0)
    fp = (p * (1 - t)).sum(0)
    fn = ((1 - p) * t).sum(0)
    return 1 - ((tp + smooth) / (tp + a * fp + b * fn + smooth)).mean()


@pytest.mark.parametrize("num_classes", [1, 3])
def test_losses_match_numpy(num_classes):
    y, p = _data(num_classes)
    c = num_classes
    cases = {
        "ce": ref_ce(y, p, c),
        "dice": ref_dice(y, p, c),
        "ce_dice": ref_ce(y, p, c) + ref_dice(y, p, c),
        "focal": ref_focal(y, p, c, 2.0, 0.25),
        "tversky": ref_tversky(y, p, c, 0.3, 0.7),
    }
    for name, expected in cases.items():
        got = float(keras.ops.convert_to_numpy(losses.get(name, c)(y, p)))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)
    got = float(losses.get("focal", c, gamma=0.5, alpha=0.6)(y, p))
    np.testing.assert_allclose(got, ref_focal(y, p, c, 0.5, 0.6), rtol=1e-5)
    got = float(losses.get("tversky", c, alpha=0.5, beta=0.5, smooth=0.0)(y, p))
    np.testing.assert_allclose(got, ref_dice(y, p, c, smooth=0.0), rtol=1e-5)  # == dice


def test_ce_matches_keras_without_ignored_pixels():
    y, p = _data(1)
    y = np.abs(y)  # no ignored pixel: ids 0/1
    ours = float(losses.get("ce", 1)(y, p))
    ref = float(keras.losses.BinaryCrossentropy()(y, p))
    np.testing.assert_allclose(ours, ref, rtol=1e-4)
    y3, p3 = _data(3)
    y3 = np.abs(y3)
    ours = float(losses.get("ce", 3)(y3, p3))
    ref = float(keras.losses.SparseCategoricalCrossentropy()(y3, p3))
    np.testing.assert_allclose(ours, ref, rtol=1e-4)


@pytest.mark.parametrize("name", ["ce", "dice", "ce_dice", "focal", "tversky"])
def test_ignored_pixels_do_not_count(name):
    """Changing the prediction on ignored pixels leaves every loss unchanged."""
    y, p = _data(1, seed=1)
    q = p.copy()
    q[y < 0] = 1.0 - q[y < 0]
    loss = losses.get(name, 1)
    assert float(loss(y, p)) == pytest.approx(float(loss(y, q)), rel=1e-6)
    # ...while changing a valid pixel does change it
    r = p.copy()
    i = np.argwhere(y[..., 0] >= 0)[0]
    r[tuple(i)] = 1.0 - r[tuple(i)]
    assert float(loss(y, r)) != pytest.approx(float(loss(y, p)), rel=1e-7)


def test_all_ignored_gives_zero_ce():
    y = -np.ones((1, 4, 4, 1), "float32")
    p = np.full((1, 4, 4, 1), 0.3, "float32")
    assert float(losses.get("ce", 1)(y, p)) == 0.0


def test_perfect_prediction_gives_zero_dice_loss():
    y = np.zeros((1, 4, 4, 1), "float32")
    y[0, :2] = 1
    assert float(losses.get("dice", 1)(y, y)) == pytest.approx(0.0, abs=1e-6)


def test_serialization_roundtrip():
    for name in losses.names():
        loss = losses.get(name, 2)
        cfg = keras.saving.serialize_keras_object(loss)
        assert cfg["module"] == "segsearch.losses" or "segsearch>" in cfg.get("registered_name", "")
        again = keras.saving.deserialize_keras_object(cfg)
        assert type(again) is type(loss) and again.get_config() == loss.get_config()


def test_unknown_loss_names_closest():
    with pytest.raises(ConfigError, match="did you mean 'dice'"):
        losses.get("dic", 1)
    with pytest.raises(ConfigError, match="gamma"):
        losses.get("focal", 1, gamma=-1)


def test_unclipped_infinite_counts_pixels_sure_of_the_wrong_class():
    import numpy as np

    from segsearch.losses import unclipped_infinite

    y = np.array([[[[1.0], [0.0]], [[-1.0], [0.0]]]], "float32")  # one ignored pixel
    sure = np.array([[[[1.0], [1.0]], [[1.0], [0.5]]]], "float32")  # sure and wrong at (0, 1)
    assert abs(unclipped_infinite(y, sure) - 1 / 3) < 1e-6
    assert unclipped_infinite(y, np.full_like(sure, 0.5)) == 0.0
    ids = np.array([[[[0.0], [2.0]]]], "float32")
    softmax = np.array([[[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]]], "float32")
    assert unclipped_infinite(ids, softmax) == 0.5
