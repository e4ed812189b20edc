"""Segmentation losses that skip ignored pixels, written with ``keras.ops`` only.

Every loss takes ``y_true`` holding class ids, float32 ``(B, H, W, 1)`` (0..C-1, or 0/1 for binary),
with ``-1`` for ignored (void) pixels, and ``y_pred`` holding the model's probabilities,
``(B, H, W, C)`` (one sigmoid channel when ``num_classes == 1``, a softmax over C channels
otherwise). Ignored pixels count in neither the numerator nor the denominator. The value is
computed over the whole batch (every valid pixel of every image together: cross-entropy is the mean
over valid pixels, dice/tversky pool the counts of the batch), and 3D volumes ``(B, D, H, W, 1)``
work the same way.

Which classes the overlap losses (dice, tversky, the dice of ce_dice) average follows
``data.background``, the rule of the ``dice`` and ``iou`` metrics (:mod:`segsearch.metrics`):
``background=0`` (the default) averages every class but class 0 (binary: the foreground), another
id leaves that class out instead, and ``background=None`` (every class is a real one, e.g. street
scenes whose class 0 is sky) averages every class, class 0 included (binary: both classes).
The binary focal loss weighs ``alpha`` on the non-background class (with None: on every pixel).

Class weights (``class_weights=[w0, w1, ...]``, one per class: two for a sigmoid head, class 0
then class 1; ``train.class_weights``) are optional; without them every loss is unchanged. With
them:

- cross-entropy and focal: each valid pixel's loss is multiplied by the weight of its true class,
  and the sum is divided by the sum of those weights (a weighted mean over pixels, as PyTorch's
  ``CrossEntropyLoss(weight=...)``); weights all 1 give the unweighted loss;
- dice and tversky: the per-class scores are averaged with the weights, ``sum_c w_c s_c /
  sum_c w_c`` over the classes that count (all but ``background``); with one class counted (binary
  with a background) the weight cancels;
- ce_dice: both terms weighted so.

:func:`auto_class_weights` computes weights from class pixel counts (``train.class_weights:
auto``): inverse square-root frequency, normalised so that the mean weight of a training pixel
is 1.

Losses are registered Keras serializables (package "segsearch"), so a saved ``.keras`` model loads
with ``keras.saving.load_model`` once ``segsearch.losses`` is imported.

Example:
    >>> from segsearch import losses
    >>> loss = losses.get("focal", num_classes=1, gamma=2.0)
    >>> model.compile(optimizer="adam", loss=loss)
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from segsearch.errors import ConfigError, unknown_name
from segsearch.metrics import check_background

__all__ = [
    "SegmentationLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "CEDiceLoss",
    "FocalLoss",
    "TverskyLoss",
    "LOSSES",
    "names",
    "get",
    "unclipped_infinite",
    "auto_class_weights",
    "check_class_weights",
]

_EPS = 1e-7


def _prepare(y_true: Any, y_pred: Any, num_classes: int) -> tuple[Any, Any, Any]:
    """Return (one-hot target, probabilities, valid mask), all float32 of shape (..., K).

    For ``num_classes == 1`` K is 1 (the foreground channel); otherwise K = num_classes. The valid
    mask has shape (..., 1) and is 0 on ignored pixels (y < 0), where the target is all zeros.
    """
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(y_true, "float32")
    if len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.expand_dims(y_true, -1)
    valid = ops.cast(ops.greater_equal(y_true, 0.0), "float32")
    ids = ops.where(valid > 0, y_true, ops.zeros_like(y_true))
    if num_classes == 1:
        target = ops.cast(ops.greater_equal(ids, 0.5), "float32") * valid
    else:
        onehot = ops.one_hot(ops.cast(ops.squeeze(ids, -1), "int32"), num_classes)
        target = ops.cast(onehot, "float32") * valid
    return target, y_pred, valid


def _both_classes(target: Any, prob: Any, valid: Any) -> tuple[Any, Any]:
    """A sigmoid head's (..., 1) target and probability as two channels (class 0, class 1),
    zero on ignored pixels, so per-class sums cover the binary background class too."""
    target = ops.concatenate([valid - target, target], axis=-1)
    prob = ops.concatenate([(1.0 - prob) * valid, prob * valid], axis=-1)
    return target, prob


def check_class_weights(weights: Any, num_classes: int, background: int | None = 0,
                        where: str = "class_weights") -> tuple[float, ...] | None:
    """Validate class weights: one finite number >= 0 per class, some weight on a counted class.

    Args:
        weights: None (no weighting) or a sequence of numbers.
        num_classes: 1 for a sigmoid head (two weights: class 0, class 1), else the class count.
        background: the class the dice-like losses leave out.
        where: the key named in the message.

    Raises:
        ConfigError: naming ``where``, what was received and the fix.
    """
    import math

    if weights is None:
        return None
    k = 2 if num_classes == 1 else int(num_classes)
    what = "binary masks have 2 classes (background, foreground)" if num_classes == 1 else \
        f"there are {k} classes"
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
        raise ConfigError(f"{where}: expected a list of {k} weights, got {weights!r}")
    values = list(weights)
    if len(values) != k:
        raise ConfigError(f"{where}: {len(values)} weights but {what}; give one weight per "
                          "class id, e.g. " + str([1.0] * k))
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{where}: weights must be numbers, got {v!r}")
        if v < 0:
            raise ConfigError(f"{where}: weights must be >= 0, got {v!r}; use 0 to leave a class "
                              "out")
    counted = [v for c, v in enumerate(values) if c != background]
    if not any(v > 0 for v in counted):
        raise ConfigError(f"{where}: every class that counts has weight 0, got {values}; give at "
                          "least one of them a positive weight")
    return tuple(float(v) for v in values)


def auto_class_weights(counts: Any) -> list[float]:
    """Class weights from pixel counts: inverse square-root frequency, mean pixel weight 1.

    ``w_c = 1 / (sqrt(f_c) * sum_k sqrt(f_k))`` with ``f_c`` the class's share of the labelled
    pixels, so ``sum_c f_c w_c = 1``: a rare class weighs more, less steeply than inverse
    frequency (1 % foreground weighs 5.5x the background, not 99x). A class with no pixel gets the
    largest weight of the others. Rounded to 6 digits.

    Args:
        counts: pixel count per class (two for binary: class 0, class 1).

    Example:
        >>> auto_class_weights([75, 25])   # f = 0.75, 0.25: 1/(0.866*1.366), 1/(0.5*1.366)
        [0.845299, 1.464102]
    """
    import numpy as np

    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return [1.0] * len(counts)
    root = np.sqrt(counts / total)
    weights = np.zeros_like(root)
    present = root > 0
    weights[present] = 1.0 / (root[present] * root.sum())
    weights[~present] = weights[present].max()
    return [round(float(w), 6) for w in weights]


def _sum_all(x: Any) -> Any:
    return ops.sum(x)


def _sum_but_last(x: Any) -> Any:
    """Sum over every axis but the class axis."""
    return ops.sum(ops.reshape(x, (-1, ops.shape(x)[-1])), axis=0)


class SegmentationLoss(keras.losses.Loss):
    """Base class: stores ``num_classes`` and ``background``; the batch loss is a scalar.

    Args:
        num_classes: 1 for binary (sigmoid) output, >= 2 for softmax output.
        name: the loss name.
        reduction: kept for Keras; the value is already a scalar.
        dtype: the computation dtype (float32 by default, also under mixed precision).
        background: the class the overlap losses leave out (``data.background``, default 0);
            None: every class counts.
    """

    def __init__(self, num_classes: int = 1, name: str | None = None,
                 reduction: str = "sum_over_batch_size", dtype: Any = None,
                 background: int | None = 0, class_weights: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.background = check_background(background, num_classes, f"{name} loss: background")
        self.class_weights = check_class_weights(class_weights, num_classes, self.background,
                                                 f"{name} loss: class_weights")

    def pixel_weights(self, target: Any, valid: Any) -> Any:
        """Each pixel's class weight, shape (..., 1), 0 on ignored pixels (needs class_weights)."""
        w = ops.convert_to_tensor(self.class_weights, dtype="float32")
        if self.num_classes == 1:
            return (valid - target) * w[0] + target * w[1]
        return ops.sum(target * w, axis=-1, keepdims=True)

    def pixel_mean(self, losses: Any, target: Any, valid: Any) -> Any:
        """The mean of per-pixel losses (zero on ignored pixels) over valid pixels, weighted by
        their classes' weights when there are class weights."""
        if self.class_weights is None:
            return _sum_all(losses) / ops.maximum(_sum_all(valid), 1.0)
        weights = self.pixel_weights(target, valid)
        return _sum_all(losses * weights) / ops.maximum(_sum_all(weights), _EPS)

    def class_counts(self, y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
        """Per-class soft (intersection, predicted, true) sums of the batch, ignored pixels out.

        One entry per class: two for a sigmoid head (class 0, class 1), else ``num_classes``.
        """
        target, prob, valid = _prepare(y_true, y_pred, self.num_classes)
        if self.num_classes == 1:
            target, prob = _both_classes(target, prob, valid)
        else:
            prob = prob * valid
        return _sum_but_last(prob * target), _sum_but_last(prob), _sum_but_last(target)

    def class_mean(self, per_class: Any) -> Any:
        """The mean of per-class values over the classes that count (all but ``background``),
        weighted by the class weights when there are any."""
        k = 2 if self.num_classes == 1 else self.num_classes
        given = self.class_weights or (1.0,) * k
        weights = [0.0 if c == self.background else given[c] for c in range(k)]
        weights = ops.convert_to_tensor(weights, dtype="float32")
        return ops.sum(per_class * weights) / ops.sum(weights)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["num_classes"] = self.num_classes
        config["background"] = self.background
        if self.class_weights is not None:  # absent without: configs as before class weights
            config["class_weights"] = list(self.class_weights)
        return config


@keras.saving.register_keras_serializable(package="segsearch")
class CrossEntropyLoss(SegmentationLoss):
    """Binary (num_classes == 1) or categorical cross-entropy, mean over valid pixels.

    Args:
        num_classes: 1 for binary, >= 2 for categorical.
        name: the loss name ("ce").
    """

    def __init__(self, num_classes: int = 1, name: str = "ce", **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, name=name, **kwargs)

    def pixel_losses(self, target: Any, prob: Any, valid: Any) -> Any:
        """Per-pixel cross-entropy, shape (..., 1), zero on ignored pixels."""
        prob = ops.clip(prob, _EPS, 1.0 - _EPS)
        if self.num_classes == 1:
            ce = -(target * ops.log(prob) + (1.0 - target) * ops.log(1.0 - prob))
        else:
            ce = -ops.sum(target * ops.log(prob), axis=-1, keepdims=True)
        return ce * valid

    def call(self, y_true: Any, y_pred: Any) -> Any:
        target, prob, valid = _prepare(y_true, y_pred, self.num_classes)
        return self.pixel_mean(self.pixel_losses(target, prob, valid), target, valid)


@keras.saving.register_keras_serializable(package="segsearch")
class DiceLoss(SegmentationLoss):
    """Soft dice loss, 1 - dice: the mean dice of every class but ``background``.

    Binary with the default background 0: the foreground's dice; ``background=None``: the mean
    over every class (binary: both classes).

    Args:
        num_classes: 1 for binary, >= 2 for softmax.
        smooth: added to numerator and denominator (a class absent from both prediction and target
            then scores dice 1).
        name: the loss name ("dice").
        **kwargs: ``background`` and the base class's options.
    """

    def __init__(self, num_classes: int = 1, smooth: float = 1.0, name: str = "dice",
                 **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        inter, predicted, true = self.class_counts(y_true, y_pred)
        dice = (2.0 * inter + self.smooth) / (predicted + true + self.smooth)
        return 1.0 - self.class_mean(dice)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="segsearch")
class CEDiceLoss(SegmentationLoss):
    """Cross-entropy plus soft dice: ``ce_weight * ce + dice_weight * dice``.

    Args:
        num_classes: 1 for binary, >= 2 for softmax.
        ce_weight: weight of the cross-entropy term.
        dice_weight: weight of the dice term.
        smooth: dice smoothing.
        name: the loss name ("ce_dice").
        **kwargs: ``background`` (the dice term's, see :class:`DiceLoss`) and the base options.
    """

    def __init__(self, num_classes: int = 1, ce_weight: float = 1.0, dice_weight: float = 1.0,
                 smooth: float = 1.0, name: str = "ce_dice", **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, name=name, **kwargs)
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        self._ce = CrossEntropyLoss(num_classes, class_weights=self.class_weights)
        self._dice = DiceLoss(num_classes, smooth=smooth, background=self.background,
                              class_weights=self.class_weights)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return (self.ce_weight * self._ce.call(y_true, y_pred)
                + self.dice_weight * self._dice.call(y_true, y_pred))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ce_weight": self.ce_weight,
                "dice_weight": self.dice_weight, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="segsearch")
class FocalLoss(SegmentationLoss):
    """Focal loss (Lin et al. 2017), mean over valid pixels.

    Binary: ``-alpha_t (1 - p_t)**gamma log(p_t)`` with ``alpha_t = alpha`` on foreground pixels and
    ``1 - alpha`` on background (the classes ``background`` names: by default class 1 is the
    foreground; ``background=1`` makes class 0 the foreground; ``background=None``: ``alpha`` on
    every pixel, no class singled out). Softmax: ``-alpha (1 - p_t)**gamma log(p_t)`` with ``p_t``
    the probability of the true class (Keras' ``CategoricalFocalCrossentropy`` convention).

    Args:
        num_classes: 1 for binary, >= 2 for softmax.
        gamma: focusing parameter (0 gives weighted cross-entropy).
        alpha: class balance weight in [0, 1].
        name: the loss name ("focal").
        **kwargs: ``background`` and the base class's options.
    """

    def __init__(self, num_classes: int = 1, gamma: float = 2.0, alpha: float = 0.25,
                 name: str = "focal", **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, name=name, **kwargs)
        if gamma < 0:
            raise ConfigError(f"focal loss: gamma must be >= 0, got {gamma}")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"focal loss: alpha must be in [0, 1], got {alpha}")
        self.gamma = float(gamma)
        self.alpha = float(alpha)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        target, prob, valid = _prepare(y_true, y_pred, self.num_classes)
        prob = ops.clip(prob, _EPS, 1.0 - _EPS)
        if self.num_classes == 1:
            p_t = target * prob + (1.0 - target) * (1.0 - prob)
            if self.background is None:
                alpha_t = self.alpha
            else:
                positive = target if self.background == 0 else 1.0 - target
                alpha_t = positive * self.alpha + (1.0 - positive) * (1.0 - self.alpha)
        else:
            p_t = ops.sum(target * prob, axis=-1, keepdims=True)
            p_t = ops.clip(p_t, _EPS, 1.0)
            alpha_t = self.alpha
        fl = -alpha_t * ops.power(1.0 - p_t, self.gamma) * ops.log(p_t)
        return self.pixel_mean(fl * valid, target, valid)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="segsearch")
class TverskyLoss(SegmentationLoss):
    """Tversky loss (Salehi et al. 2017): 1 - TP / (TP + alpha FP + beta FN), soft counts.

    alpha = beta = 0.5 is the dice loss; alpha < beta penalises false negatives more (recall).
    The mean over every class but ``background`` (binary, default: the foreground; None: every
    class), as :class:`DiceLoss`.

    Args:
        num_classes: 1 for binary, >= 2 for softmax.
        alpha: weight of false positives.
        beta: weight of false negatives.
        smooth: added to numerator and denominator.
        name: the loss name ("tversky").
        **kwargs: ``background`` and the base class's options.
    """

    def __init__(self, num_classes: int = 1, alpha: float = 0.3, beta: float = 0.7,
                 smooth: float = 1.0, name: str = "tversky", **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, name=name, **kwargs)
        if alpha < 0 or beta < 0 or alpha + beta <= 0:
            raise ConfigError(f"tversky loss: alpha and beta must be >= 0 and not both 0, got "
                              f"alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.smooth = float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        tp, predicted, true = self.class_counts(y_true, y_pred)
        fp, fn = predicted - tp, true - tp
        ti = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return 1.0 - self.class_mean(ti)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta,
                "smooth": self.smooth}


def unclipped_infinite(y_true: Any, y_pred: Any) -> float:
    """The fraction of valid pixels where the cross-entropy without its clipping is infinite.

    Cross-entropy and focal loss clip the probabilities to [1e-7, 1 - 1e-7], so their value stays
    finite (at most about 16 a pixel) even when the network gives a pixel's true class a
    probability of exactly 0 in float32 (a sigmoid saturates there beyond a logit of about 17, a
    softmax beyond a logit gap of about 100). A network whose weights blew up does that on every
    pixel it gets wrong; a healthy one almost never.

    Args:
        y_true: class ids (B, H, W, 1), -1 for ignored pixels.
        y_pred: the model's probabilities (B, H, W, C); C == 1 for a sigmoid head.

    Returns:
        A float in [0, 1] (0 when no pixel is valid).
    """
    num_classes = int(y_pred.shape[-1])
    target, prob, valid = _prepare(y_true, y_pred, max(num_classes, 1))
    if num_classes == 1:
        p_true = target * prob + (1.0 - target) * (1.0 - prob)
    else:
        p_true = ops.sum(target * prob, axis=-1, keepdims=True)
    zero = ops.cast(ops.less_equal(p_true, 0.0), "float32") * valid
    count = float(ops.convert_to_numpy(_sum_all(valid)))
    return float(ops.convert_to_numpy(_sum_all(zero))) / count if count else 0.0


LOSSES: dict[str, type[SegmentationLoss]] = {
    "ce": CrossEntropyLoss,
    "dice": DiceLoss,
    "ce_dice": CEDiceLoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
}


def names() -> list[str]:
    """The loss names, sorted."""
    return sorted(LOSSES)


def get(name: str, num_classes: int = 1, background: int | None = 0,
        **kwargs: Any) -> SegmentationLoss:
    """Create a loss by name.

    Args:
        name: "ce" (binary or categorical by ``num_classes``), "dice", "ce_dice", "focal",
            "tversky".
        num_classes: 1 for one sigmoid channel, >= 2 for softmax.
        background: the class the dice-like terms leave out (``data.background``); None: none.
        **kwargs: the loss's own options (focal: gamma, alpha; tversky: alpha, beta; dice: smooth)
            and ``class_weights`` (one weight per class, see the module docstring).

    Example:
        >>> get("tversky", num_classes=3, alpha=0.3, beta=0.7, background=None)
    """
    if name not in LOSSES:
        raise ConfigError(unknown_name("loss", name, LOSSES))
    try:
        return LOSSES[name](num_classes=num_classes, background=background, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"loss {name!r}: {exc}") from None
