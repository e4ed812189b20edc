"""The hp bridge: keras-tuner's ``HyperParameters`` API on top of an ``optuna.Trial``.

A segsearch hypermodel declares its hyperparameters with keras-tuner calls (``hp.Int``,
``hp.Float``, ``hp.Choice``, ``hp.Boolean``, ``hp.Fixed``, ``hp.conditional_scope``,
``hp.name_scope``). Keras Tuner fills the values from its oracle; :class:`OptunaHyperParameters`
fills them from an Optuna trial instead (define-by-run), so one ``hypermodel.build(hp)`` serves
both engines:

=========================  =====================================================================
keras-tuner declaration    Optuna call
=========================  =====================================================================
``Int`` linear [step]      ``trial.suggest_int(name, low, high, step=step)``
``Int`` log                ``trial.suggest_int(name, low, high, log=True)``
``Float`` linear [step]    ``trial.suggest_float(name, low, high, step=step)``
``Float`` log              ``trial.suggest_float(name, low, high, log=True)``
log with a step (factor)   ``trial.suggest_categorical(name, [low, low*step, low*step**2, ...])``
``Choice``                 ``trial.suggest_categorical(name, values)``
``Boolean``                ``trial.suggest_categorical(name, [False, True])``
``Fixed``                  the fixed value, nothing suggested
inactive (conditional)     ``None``, nothing suggested (Optuna's define-by-run conditional space)
=========================  =====================================================================

Names keep keras-tuner's scoping: ``hp.name_scope("unet")`` makes ``"unet/depth"``, the name Optuna
stores. ``reverse_log`` sampling, which Optuna lacks, is sampled linearly.

Example (a hypermodel inside a hand-written Optuna objective)::

    import optuna
    from segsearch.engines.hp import OptunaHyperParameters, seed_values
    from segsearch.hypermodels import get

    hypermodel = get("unet", (64, 64, 1), num_classes=1, space={"filters": [8, 16]})

    def objective(trial):
        model = hypermodel.build(OptunaHyperParameters(trial))
        history = model.fit(x, y, validation_data=(xv, yv), epochs=3, verbose=0)
        return max(history.history["val_dice"])

    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(seed_values(hypermodel))   # the seed network first
    study.optimize(objective, n_trials=10)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras_tuner
from keras_tuner.engine import hyperparameters as kt_hp

from segsearch.jsonable import jsonable

__all__ = [
    "OptunaHyperParameters",
    "declare",
    "seed_values",
    "seed_neighbours",
    "neighbour_values",
    "space_signature",
    "suggest",
    "SEED_LR_FACTORS",
]

#: the seed network's learning rate times these are proposed right after the seed (see
#: :func:`neighbour_values`).
SEED_LR_FACTORS: tuple[float, ...] = (10**0.5, 10.0)

_KT_DECLARE = keras_tuner.HyperModel.declare_hyperparameters


class OptunaHyperParameters(keras_tuner.HyperParameters):
    """keras-tuner ``HyperParameters`` whose active values are suggested by an Optuna trial.

    Every hyperparameter is registered in :attr:`space` as keras-tuner would; an active one gets its
    value from ``trial.suggest_*`` (see the module table), an inactive one (a conditional scope
    whose parent has another value) is ``None`` and is not suggested. A name already holding a
    value (the same name declared twice) keeps it, as in keras-tuner.

    Args:
        trial: an ``optuna.Trial`` (or ``optuna.trial.FixedTrial`` to build a given configuration).

    Example:
        >>> import optuna
        >>> hp = OptunaHyperParameters(optuna.trial.FixedTrial({"depth": 3}))
        >>> hp.Int("depth", 2, 5, default=4)
        3
    """

    def __init__(self, trial: Any) -> None:
        super().__init__()
        self.trial = trial

    # keras-tuner's public declaring methods, each registering its hyperparameter as keras-tuner
    # does (at its default, if new and active); then the trial's value replaces the default
    def Choice(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - keras-tuner's names
        return self._suggested(super().Choice, *args, **kwargs)

    def Int(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self._suggested(super().Int, *args, **kwargs)

    def Float(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self._suggested(super().Float, *args, **kwargs)

    def Boolean(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self._suggested(super().Boolean, *args, **kwargs)

    def Fixed(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self._suggested(super().Fixed, *args, **kwargs)

    def _suggested(self, declare: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Declare through keras-tuner; a hyperparameter it has just registered as active (given
        its default) gets the trial's value instead (None while inactive; a name that already
        held a value keeps it)."""
        count, held = len(self.space), set(self.values)
        value = declare(*args, **kwargs)
        if len(self.space) == count:
            return value  # declared before: its value (or None)
        hp = self.space[-1]
        if hp.name not in self.values or hp.name in held:
            return value
        try:
            self.values[hp.name] = suggest(self.trial, hp)
        except BaseException:
            del self.values[hp.name]
            raise
        return self.values[hp.name]

    def copy(self) -> keras_tuner.HyperParameters:
        """A plain keras-tuner copy of the space and values (no trial attached)."""
        return keras_tuner.HyperParameters.from_config(self.get_config())


def suggest(trial: Any, hp: Any) -> Any:
    """Ask ``trial`` for the value of one keras-tuner hyperparameter.

    Args:
        trial: an ``optuna.Trial`` or ``FixedTrial``.
        hp: a keras-tuner ``Int``, ``Float``, ``Choice``, ``Boolean`` or ``Fixed``.

    Raises:
        TypeError: an unknown hyperparameter class.
    """
    name = hp.name
    if isinstance(hp, kt_hp.Fixed):
        return hp.value
    if isinstance(hp, kt_hp.Boolean):
        return trial.suggest_categorical(name, [False, True])
    if isinstance(hp, kt_hp.Choice):
        return trial.suggest_categorical(name, list(hp.values))
    if isinstance(hp, (kt_hp.Int, kt_hp.Float)):
        is_int = isinstance(hp, kt_hp.Int)
        low, high, step = hp.min_value, hp.max_value, hp.step
        if hp.sampling == "log":
            if step is None or (is_int and step == 1):
                if is_int:
                    return trial.suggest_int(name, low, high, log=True)
                return trial.suggest_float(name, low, high, log=True)
            return trial.suggest_categorical(name, _log_grid(low, high, step, is_int))
        # linear (and reverse_log, which Optuna has no distribution for)
        if is_int:
            step = int(step or 1)
            return trial.suggest_int(name, low, low + (high - low) // step * step, step=step)
        if step is None:
            return trial.suggest_float(name, low, high)
        count = math.floor((high - low) / step + 1e-9)
        return trial.suggest_float(name, low, low + count * step, step=step)
    raise TypeError(f"unknown keras-tuner hyperparameter type {type(hp).__name__} for {name!r}")


def _log_grid(low: float, high: float, factor: float, is_int: bool) -> list[Any]:
    """keras-tuner's values of a log range with a step: low, low*factor, ... <= high."""
    count = int(math.log(high / low, factor) + 1e-8) + 1
    values = [low * factor**k for k in range(count)]
    return [int(round(v)) for v in values] if is_int else [float(v) for v in values]


def declare(
    hypermodel: Any,
    hp: keras_tuner.HyperParameters | None = None,
    *,
    build: bool = True,
) -> Any:
    """Declare every hyperparameter of ``hypermodel`` on ``hp`` and return ``hp``.

    Uses the hypermodel's ``declare(hp)`` (segsearch hypermodels) or keras-tuner's
    ``declare_hyperparameters(hp)`` when it has one, so no network is built; otherwise builds the
    network once (the seed network, on a fresh ``hp``).

    Args:
        hypermodel: a keras-tuner ``HyperModel`` (a segsearch hypermodel).
        hp: where to declare; a fresh ``keras_tuner.HyperParameters`` by default.
        build: build the network when the hypermodel cannot declare without it (False: do
            nothing then).
    """
    hp = keras_tuner.HyperParameters() if hp is None else hp
    if callable(getattr(hypermodel, "declare", None)):
        hypermodel.declare(hp)
    elif type(hypermodel).declare_hyperparameters is not _KT_DECLARE:
        hypermodel.declare_hyperparameters(hp)
    elif build:
        hypermodel.build(hp)
    return hp


def seed_values(hypermodel: Any) -> dict[str, Any]:
    """The seed network's values of the tunable, active hyperparameters (for ``enqueue_trial``).

    Args:
        hypermodel: a keras-tuner ``HyperModel`` whose defaults are the seed network.

    Example:
        >>> study.enqueue_trial(seed_values(hypermodel))  # the first trial is the seed network
    """
    hp = declare(hypermodel)
    return {
        p.name: hp.values[p.name]
        for p in hp.space
        if p.name in hp.values and not isinstance(p, kt_hp.Fixed)
    }


def neighbour_values(
    hp: keras_tuner.HyperParameters, factors: tuple[float, ...] = SEED_LR_FACTORS
) -> list[dict[str, Any]]:
    """The seed's values with its learning rate(s) scaled by each factor, within their ranges.

    The learning rate is the hyperparameter a short budget is most sensitive to, and an article's
    seed usually has one chosen for long training on much more data: on the ISBI slices (128x128,
    the seed U-Net, 30 epochs) learning rate 1e-4 (the seed's) reached val mean IoU 0.51, 3e-4 0.65
    and 1e-3 0.73. So these neighbours of the known-good point are tried first, before the
    sampler's own proposals. Learning rates are the float hyperparameters named
    ``learning_rate`` (or ``<scope>/learning_rate``); a factor that leaves the value unchanged
    once clipped to the range, or repeats another, gives nothing.

    Args:
        hp: a space after :func:`declare` (every value at its default).
        factors: what the learning rate is multiplied by.
    """
    defaults = keras_tuner.HyperParameters()
    defaults.merge(hp.space)
    seeds = dict(defaults.values)
    rates = [p for p in hp.space if isinstance(p, kt_hp.Float) and p.name in seeds
             and p.name.rsplit("/", 1)[-1] == "learning_rate"]
    out: list[dict[str, Any]] = []
    for factor in factors:
        values = dict(seeds)
        for p in rates:
            values[p.name] = float(min(max(seeds[p.name] * factor, p.min_value), p.max_value))
        if values != seeds and values not in out:
            out.append(values)
    return out


def seed_neighbours(hypermodel: Any, factors: tuple[float, ...] = SEED_LR_FACTORS
                    ) -> list[dict[str, Any]]:
    """:func:`neighbour_values` of a hypermodel, tunable values only (for ``enqueue_trial``).

    Args:
        hypermodel: a keras-tuner ``HyperModel`` whose defaults are the seed network.
        factors: what the learning rate is multiplied by.
    """
    hp = declare(hypermodel)
    fixed = {p.name for p in hp.space if isinstance(p, kt_hp.Fixed)}
    return [{k: v for k, v in values.items() if k not in fixed}
            for values in neighbour_values(hp, factors)]


def space_signature(hp: keras_tuner.HyperParameters) -> list[dict[str, Any]]:
    """A JSON-able description of a declared space (type, range, choices, conditions; no defaults).

    Two spaces with the same signature give Optuna the same distributions, so a stored study can go
    on with the new one.

    Args:
        hp: a ``HyperParameters`` after :func:`declare`.
    """
    out = []
    for p in hp.space:
        config = dict(p.get_config())
        config.pop("default", None)
        if isinstance(p, kt_hp.Fixed):
            config["value"] = jsonable(config.get("value"), keep_nan=True)
        out.append({"type": type(p).__name__, **jsonable(config, keep_nan=True)})
    return sorted(out, key=lambda d: (d.get("name", ""), str(d.get("conditions"))))
