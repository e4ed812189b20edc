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


def _per_class(y, p, c):
    """Target and probability with one channel per class (a sigmoid head's two), 0 if ignored."""
    t, valid = _onehot(y, c)
    p = p * valid[..., None]
    if c == 1:
        t = np.concatenate([valid[..., None] - t, t], axis=-1)
        p = np.concatenate([valid[..., None] - p, p], axis=-1)
    k = t.shape[-1]
    return t.reshape(-1, k), p.reshape(-1, k)


def _mean_but(values, background):
    """Mean over the classes that count: every one but ``background`` (all with None)."""
    keep = [i for i in range(len(values)) if i != background]
    return np.mean(np.asarray(values)[keep])


def ref_dice(y, p, c, smooth=1.0, background=0):
    t, p = _per_class(y, p, c)
    dice = (2 * (p * t).sum(0) + smooth) / (p.sum(0) + t.sum(0) + smooth)
    return 1 - _mean_but(dice, background)


def ref_focal(y, p, c, gamma, alpha, background=0):
    t, valid = _onehot(y, c)
    p = np.clip(p.astype(float), EPS, 1 - EPS)
    if c == 1:
        pt = (t * p + (1 - t) * (1 - p))[..., 0]
        positive = t if background == 0 else 1 - t
        at = (
            alpha if background is None
            else (positive * alpha + (1 - positive) * (1 - alpha))[..., 0]
        )
    else:
        pt = (t * p).sum(-1)
        at = alpha
    fl = -at * (1 - pt) ** gamma * np.log(np.clip(pt, EPS, 1))
    return fl[valid].mean()


def ref_tversky(y, p, c, a, b, smooth=1.0, background=0):
    t, p = _per_class(y, p, c)
    tp = (p * t).sum(0)
    fp = (p * (1 - t)).sum(0)
    fn = ((1 - p) * t).sum(0)
    return 1 - _mean_but((tp + smooth) / (tp + a * fp + b * fn + smooth), background)


@pytest.mark.parametrize("num_classes, background", [(1, 0), (1, 1), (1, None), (3, 0), (3, 2),
                                                     (3, None)])
def test_losses_match_numpy(num_classes, background):
    y, p = _data(num_classes)
    c, bg = num_classes, background
    cases = {
        "ce": ref_ce(y, p, c),
        "dice": ref_dice(y, p, c, background=bg),
        "ce_dice": ref_ce(y, p, c) + ref_dice(y, p, c, background=bg),
        "focal": ref_focal(y, p, c, 2.0, 0.25, background=bg),
        "tversky": ref_tversky(y, p, c, 0.3, 0.7, background=bg),
    }
    for name, expected in cases.items():
        got = float(keras.ops.convert_to_numpy(losses.get(name, c, background=bg)(y, p)))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)
    got = float(losses.get("focal", c, gamma=0.5, alpha=0.6, background=bg)(y, p))
    np.testing.assert_allclose(got, ref_focal(y, p, c, 0.5, 0.6, background=bg), rtol=1e-5)
    got = float(losses.get("tversky", c, alpha=0.5, beta=0.5, smooth=0.0, background=bg)(y, p))
    np.testing.assert_allclose(got, ref_dice(y, p, c, smooth=0.0, background=bg),
                               rtol=1e-5)  # == dice


def _street():
    """A 3-class toy where class 0 is a real class (sky): truth in three bands, and a hard
    prediction that gets half of the sky wrong (as class 1) and every other pixel right."""
    y = np.zeros((1, 6, 8, 1), "float32")
    y[0, 2:4] = 1
    y[0, 4:] = 2
    y[0, 0, 0] = -1  # an ignored pixel
    pred = y[..., 0].copy()
    pred[0, :2, 4:] = 1  # half of the sky called class 1
    p = np.eye(3, dtype="float32")[np.maximum(pred, 0).astype(int)]
    return y, p


def test_a_real_class_0_counts_in_the_overlap_losses_with_background_null():
    """Class 0 a real class: with background null its errors count (dice over every class);
    with the default background 0 only classes 1 and 2 count, as in the val_dice metric."""
    y, p = _street()
    t, _ = _onehot(y, 3)
    t = t.reshape(-1, 3)
    q = p.reshape(-1, 3) * (y.reshape(-1, 1) >= 0)
    per_class = 2 * (q * t).sum(0) / (q.sum(0) + t.sum(0))
    dice_all = float(losses.get("dice", 3, smooth=0.0, background=None)(y, p))
    dice_fg = float(losses.get("dice", 3, smooth=0.0)(y, p))
    assert dice_all == pytest.approx(1 - per_class.mean(), rel=1e-6)
    assert dice_fg == pytest.approx(1 - per_class[1:].mean(), rel=1e-6)
    assert per_class[0] < 1 and dice_all > dice_fg  # the sky's own errors weigh with null
    tversky_all = float(losses.get("tversky", 3, background=None)(y, p))
    assert tversky_all > float(losses.get("tversky", 3)(y, p))
    assert float(losses.get("ce_dice", 3, background=None)(y, p)) > \
        float(losses.get("ce_dice", 3)(y, p))
    # a perfect prediction of the sky too: zero with every rule
    perfect = np.eye(3, dtype="float32")[np.maximum(y[..., 0], 0).astype(int)]
    for bg in (0, None):
        assert float(losses.get("dice", 3, background=bg)(y, perfect)) == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("num_classes, background", [(1, 0), (1, 1), (1, None), (3, 0), (3, 1),
                                                     (3, None)])
def test_hard_dice_loss_is_one_minus_the_dice_metric(num_classes, background):
    """The loss and the objective follow one rule: on a hard prediction (probabilities 0/1) with
    every class present, 1 - dice loss (no smoothing) is the ``dice`` metric of the same
    background."""
    from segsearch import metrics

    y, p = _data(num_classes, seed=2)
    if num_classes == 1:
        hard = (p >= 0.5).astype("float32")
    else:
        hard = np.eye(num_classes, dtype="float32")[p.argmax(-1)]
    metric = metrics.Dice(num_classes, background=background)
    metric.update_state(y, hard)
    loss = losses.get("dice", num_classes, smooth=0.0, background=background)(y, hard)
    assert 1 - float(loss) == pytest.approx(float(metric.result()), rel=1e-5)


def test_background_is_checked_and_kept_through_serialization():
    with pytest.raises(ConfigError, match="background.*0..2 or null"):
        losses.get("dice", 3, background=3)
    with pytest.raises(ConfigError, match="background"):
        losses.get("tversky", 1, background=2)
    for name in losses.names():
        loss = losses.get(name, 3, background=None)
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert again.background is None and again.get_config() == loss.get_config()
    old = {k: v for k, v in losses.get("dice", 3).get_config().items() if k != "background"}
    assert losses.DiceLoss.from_config(old).background == 0  # checkpoints from before: class 0


def test_the_hypermodel_compiles_the_loss_with_data_background():
    """data.background reaches the loss the way it reaches the metrics: through the hypermodel
    the study builds (driver.Study.hypermodel passes config.data.background)."""
    import keras_tuner

    from segsearch import hypermodels

    for background in (0, None, 2):
        hm = hypermodels.get("unet", (32, 32, 1), 3, space={"filters": 4, "depth": 2,
                                                            "loss": "ce_dice"},
                             background=background, jit_compile=False)
        model = hm.build(keras_tuner.HyperParameters())
        assert model.loss.background == background
        assert model.loss._dice.background == background


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


# ---------------------------------------------------------------------------- class weights
# a 2x2 binary example: truth [[1, 0], [0, ignored]], probabilities [[0.8, 0.3], [0.4, 0.9]],
# weights [1, 3] (class 0, class 1): the hand computations below
Y2 = np.array([[[[1.0], [0.0]], [[0.0], [-1.0]]]], "float32")
P2 = np.array([[[[0.8], [0.3]], [[0.4], [0.9]]]], "float32")
W2 = [1.0, 3.0]
_CE = {"fg": -np.log(0.8), "bg1": -np.log(0.7), "bg2": -np.log(0.6)}
# focal with background None: alpha 0.25 on every pixel, gamma 2
_FOCAL = {"fg": 0.25 * 0.2 ** 2 * _CE["fg"], "bg1": 0.25 * 0.3 ** 2 * _CE["bg1"],
          "bg2": 0.25 * 0.4 ** 2 * _CE["bg2"]}
# per-class soft counts (smooth 1): class 1 tp 0.8, predicted 1.5, true 1; class 0 tp 1.3,
# predicted 1.5, true 2
_DICE = {0: 3.6 / 4.5, 1: 2.6 / 3.5}
_TVERSKY = {0: 2.3 / (1.3 + 0.3 * 0.2 + 0.7 * 0.7 + 1), 1: 1.8 / (0.8 + 0.3 * 0.7 + 0.7 * 0.2 + 1)}
HAND = {
    "ce": (3 * _CE["fg"] + _CE["bg1"] + _CE["bg2"]) / 5,
    "focal": (3 * _FOCAL["fg"] + _FOCAL["bg1"] + _FOCAL["bg2"]) / 5,
    "dice": 1 - (_DICE[0] + 3 * _DICE[1]) / 4,
    "tversky": 1 - (_TVERSKY[0] + 3 * _TVERSKY[1]) / 4,
}
HAND["ce_dice"] = HAND["ce"] + HAND["dice"]


@pytest.mark.parametrize("name", sorted(HAND))
def test_class_weights_by_hand_on_a_2x2_example(name):
    loss = losses.get(name, 1, background=None, class_weights=W2)
    assert float(loss(Y2, P2)) == pytest.approx(HAND[name], rel=1e-5)
    # weights of 1 are the unweighted loss; no weights is today's loss
    ones = losses.get(name, 1, background=None, class_weights=[1, 1])
    plain = losses.get(name, 1, background=None)
    assert float(ones(Y2, P2)) == pytest.approx(float(plain(Y2, P2)), rel=1e-6)
    # saved and restored with the weights
    again = type(loss).from_config(loss.get_config())
    assert again.class_weights == (1.0, 3.0) and "class_weights" not in plain.get_config()


def test_one_counted_class_cancels_its_weight_in_dice():
    weighted = losses.get("dice", 1, background=0, class_weights=W2)
    assert float(weighted(Y2, P2)) == pytest.approx(1 - _DICE[1], rel=1e-5)


def test_categorical_cross_entropy_weights_each_pixel_by_its_true_class():
    y = np.array([[[[0.0], [1.0]], [[2.0], [-1.0]]]], "float32")
    p = np.array([[[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], [[0.2, 0.3, 0.5], [0.3, 0.3, 0.4]]]],
                 "float32")
    loss = losses.get("ce", 3, class_weights=[1, 2, 0.5])
    hand = (-np.log(0.7) - 2 * np.log(0.6) - 0.5 * np.log(0.5)) / 3.5
    assert float(loss(y, p)) == pytest.approx(hand, rel=1e-5)


@pytest.mark.parametrize(("weights", "match"), [
    ([1, 2, 3], "3 weights but binary masks have 2 classes"),
    ([1, -1], "must be >= 0"),
    ([1, 0], "every class that counts has weight 0"),
    ("auto", "expected a list of 2 weights"),
])
def test_class_weight_errors_name_the_key(weights, match):
    with pytest.raises(ConfigError, match=f"dice loss: class_weights: .*{match}"):
        losses.get("dice", 1, class_weights=weights)


def test_auto_class_weights_from_a_known_frequency():
    weights = losses.auto_class_weights([75, 25])
    assert weights == pytest.approx([1 / (np.sqrt(0.75) * (np.sqrt(0.75) + 0.5)),
                                     1 / (0.5 * (np.sqrt(0.75) + 0.5))], abs=1e-6)
    assert 0.75 * weights[0] + 0.25 * weights[1] == pytest.approx(1.0, abs=1e-5)
    three = losses.auto_class_weights([90, 10, 0])  # an absent class: the largest weight
    assert three[2] == three[1] > three[0]
    assert losses.auto_class_weights([0, 0]) == [1.0, 1.0]
