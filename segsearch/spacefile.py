"""Space files: the YAML a user writes, read into frozen, validated dataclasses.

A space file has seven top-level sections, all optional except ``architecture``::

    study: resunet              # the study's name: its folder is studies/<study>/
    architecture: resunet       # one registry key, or a list of keys (the architecture is searched)
    data: {...}                 # segsearch.data.DataConfig fields; default: the built-in sample
    train: {...}                # TrainConfig
    search: {...}               # SearchConfig
    space: {...}                # per hyperparameter: a fixed value, a range, or choices
    export: {...}               # ExportConfig

:func:`load_config` reads a file (or a bare name such as ``"resunet"``, found among the spaces
that ship inside the package), applies command-line overrides and ``--set key.path=value``
strings, and returns a :class:`Config`. Every mistake raises
:class:`~segsearch.errors.ConfigError` with the file, the key path, what was received and the fix::

    spaces/unet.yaml: train.epoch: unknown key 'epoch'; did you mean 'epochs'? Valid: ...

This module imports neither TensorFlow, Keras, Optuna nor keras-tuner, except that
:func:`load_config` checks the ``space:`` entries against the hypermodels (which import Keras)
and imports the modules ``search.callbacks`` names, as its last steps.

Example:
    >>> from segsearch.spacefile import load_config
    >>> config = load_config("resunet", trials=2, epochs=1, sets=["data.image_size=32"])
    >>> config.search.trials, config.data.image_size, str(config.study_dir)
    (2, (32, 32), 'studies/resunet')
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import importlib.util
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from segsearch.autoconf import Choice, auto_keys, placeholder, resolve
from segsearch.cost import COSTS
from segsearch.errors import ConfigError, SegsearchError, closest, yaml_text
from segsearch.jsonable import jsonable
from segsearch.pareto import PICK_LIMITS, PICK_RULES
from segsearch.precision import MIXED_PRECISION_VALUES

__all__ = [
    "Config",
    "TrainConfig",
    "SearchConfig",
    "ExportConfig",
    "load_config",
    "shipped_spaces",
    "space_path",
    "spaces_dir",
    "parse_duration",
    "ENGINES",
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "PRUNERS",
    "METRIC_NAMES",
    "SECTIONS",
]

Engine = Literal["optuna", "keras-tuner"]
Direction = Literal["maximize", "minimize"]
Pruner = Literal["hyperband", "median", "successive_halving", "none"]

ENGINES: tuple[str, ...] = ("optuna", "keras-tuner")
#: The search algorithms each engine offers; the first one is the engine's default.
ALGORITHMS: dict[str, tuple[str, ...]] = {
    "optuna": ("tpe", "random", "cmaes", "qmc", "nsga2"),
    "keras-tuner": ("hyperband", "random", "bayesian", "grid"),
}
DEFAULT_ALGORITHM: dict[str, str] = {engine: algos[0] for engine, algos in ALGORITHMS.items()}
#: Optuna pruners (keras-tuner stops trials early through its hyperband algorithm instead).
PRUNERS: tuple[str, ...] = ("hyperband", "median", "successive_halving", "none")
#: export.ensemble's values (segsearch.ensemble).
ENSEMBLES: tuple[str, ...] = ("none", "folds", "top_k")
#: Optuna algorithms that handle several objectives at once.
MULTI_OBJECTIVE_ALGORITHMS: tuple[str, ...] = ("nsga2", "tpe", "random", "qmc")
#: The metrics every hypermodel compiles (see segsearch.metrics.default_metrics), plus the loss;
#: an objective is one of these, usually with the "val_" prefix.
METRIC_NAMES: tuple[str, ...] = ("dice", "iou", "mean_iou", "pixel_accuracy", "loss")
#: Top-level sections of a space file.
SECTIONS: tuple[str, ...] = ("study", "architecture", "data", "train", "search", "space", "export")


def _backbone_architectures() -> tuple[str, ...]:
    """The architectures whose encoder takes pretrained weights (train.weights), by the registry."""
    from segsearch.hypermodels.registry import ARCHITECTURES

    return tuple(key for key, s in ARCHITECTURES.items() if s.takes_weights)


_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(h|m|s)", re.IGNORECASE)
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


# ----------------------------------------------------------------------------------- errors
class _KeyError(ConfigError):
    """A ConfigError about one key path; :func:`load_config` adds the file (or --set) in front."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}" if path else detail)
        self.path = path
        self.detail = detail


_fmt = yaml_text  # values in messages as YAML writes them


def _unknown_key(path: str, key: Any, valid: Iterable[str]) -> _KeyError:
    valid = sorted(str(v) for v in valid)
    guess = closest(str(key), valid)
    hint = f"; did you mean {guess!r}?" if guess else ";"
    where = f"{path}.{key}" if path else str(key)
    return _KeyError(where, f"unknown key {str(key)!r}{hint} Valid: {', '.join(valid)}")


# ----------------------------------------------------------------------------------- checks
def _int(value: Any, path: str, *, minimum: int | None = None, none: bool = False) -> int | None:
    if value is None and none:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        want = "an integer" + (" or null" if none else "")
        raise _KeyError(path, f"must be {want}, got {_fmt(value)}")
    if minimum is not None and value < minimum:
        raise _KeyError(path, f"must be >= {minimum}, got {value}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _KeyError(path, f"must be true or false, got {_fmt(value)}")
    return value


def _resolve_workers(workers: int | None, gpus: str | None,
                     workers_per_gpu: int | None) -> int | None:
    """``search.workers`` by the rule: ``len(gpus) * workers_per_gpu`` unless given (a given
    number that contradicts both is a ConfigError); None (workers_per_gpu without gpus): counted
    from the GPUs found when the search starts (segsearch.devices.plan_slots)."""
    ids = [g for g in (gpus or "").split(",") if g.strip()]
    if ids:
        expected = len(ids) * (workers_per_gpu or 1)
        if workers is None:
            return expected
        if workers_per_gpu is not None and workers != expected:
            raise _KeyError("search.workers", f"{workers} contradicts search.gpus {gpus!r} with "
                                              f"search.workers_per_gpu {workers_per_gpu}, which "
                                              f"make {expected} workers; drop --workers (it "
                                              "follows from the other two) or make them agree")
        return workers
    if workers is None and workers_per_gpu is None:
        return 1
    return workers


def _choice(value: Any, path: str, choices: Sequence[str], what: str = "value") -> str:
    if not isinstance(value, str) or value not in choices:
        guess = closest(str(value), choices) if isinstance(value, str) else None
        hint = f"; did you mean {guess!r}?" if guess else ";"
        raise _KeyError(path, f"unknown {what} {_fmt(value)}{hint} Valid: {', '.join(choices)}")
    return value


def _class_weights(value: Any, path: str) -> str | tuple[float, ...]:
    """``train.class_weights``: "none" (also null), "auto", or a list of numbers >= 0."""
    if value is None or value == "none":
        return "none"
    if value == "auto":
        return "auto"
    if not isinstance(value, (list, tuple)) or not value:
        raise _KeyError(path, f"must be none, auto or a list of weights (one per class, e.g. "
                              f"[1, 5]), got {_fmt(value)}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _KeyError(path, f"weights must be numbers, got {_fmt(v)} in {_fmt(list(value))}")
        if v < 0:
            raise _KeyError(path, f"weights must be >= 0, got {_fmt(v)} in {_fmt(list(value))}; "
                                  "use 0 to leave a class out")
    return tuple(float(v) for v in value)


def parse_duration(value: Any, path: str = "duration") -> float | None:
    """Seconds from a number or a string such as "90s", "30m", "2h", "1h30m" (None stays None).

    Args:
        value: a number of seconds, a duration string, or None.
        path: the key path, for the error message.

    Example:
        >>> parse_duration("1h30m")
        5400.0
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts).lower() != text.lower():
                raise _KeyError(path, f"must be a duration such as 90s, 30m, 2h or 1h30m (or a "
                                      f"number of seconds), got {_fmt(value)}") from None
            seconds = sum(float(n) * _UNITS[u.lower()] for n, u in parts)
    else:
        raise _KeyError(path, f"must be a duration such as 90s, 30m or 2h, got {_fmt(value)}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise _KeyError(path, f"must be > 0, got {_fmt(value)}; use null for no time limit")
    return seconds


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _check_known(cls: type, mapping: Mapping[str, Any], path: str) -> None:
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in mapping:
        if key not in names:
            raise _unknown_key(path, key, names)


# ----------------------------------------------------------------------------------- sections
#: ``train.final_schedule``: the final training's learning rate (see TrainConfig).
FINAL_SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """How each trial trains (the ``train:`` section).

    Args:
        epochs: most epochs one trial trains (multi-fidelity algorithms give many trials fewer).
        batch_size: images per training step.
        budget_epochs: total epochs: the trials, the refit (search.refit_folds) and the final
            training (with export.ensemble: folds, of each of the winner's K fold models, an
            equal part); None means trials * epochs.
        final_epochs: epochs to train the best configuration further after the search, continuing
            from its checkpoint; None means what is left of budget_epochs (divided by K with
            export.ensemble: folds), 0 means none.
        final_schedule: the learning rate of the final training (and of the fold models'
            further training): "cosine" (default) decays it from the winner's rate to nearly 0
            over those epochs, half a cosine wave, epoch by epoch (SGDR's and nnU-Net's practice:
            a network ends its training at a small rate); "constant" keeps the winner's rate. The
            trials and the refit always train at a constant rate, so they stay comparable.
        min_epochs: the shortest a trial trains before it can be stopped (the lowest fidelity of
            hyperband / successive halving).
        mixed_precision: "auto" (bfloat16 compute with float32 weights on a GPU that has
            bfloat16, float16 with loss scaling on an older GPU, float32 on a CPU), true
            ("mixed_float16", as before "auto"), false (float32), "mixed_bfloat16" or
            "mixed_float16"; the head and the loss stay float32 (``segsearch.precision``).
        jit_compile: XLA compilation: true, false or "auto" (on a GPU only: on a CPU, compiling
            each new network costs more than a short trial saves).
        steps_per_epoch: batches per epoch; None means one pass over the training images.
        verbose: Keras' own fit output (0 silent, 1 progress bar, 2 one line per epoch); segsearch
            shows its own progress either way.
        weights: backbone weights of resnet50_unet / deeplabv3plus: null (random), "imagenet", or
            the path of a .weights.h5 / .h5 file.
        isolation: "process" (default) trains each trial in a worker process, so a trial that
            crashes its process (segfault, the OOM killer) fails alone and the driver's memory stays
            flat; "none" trains in the calling process (for embedding segsearch).
        oom_retry: a trial that runs out of accelerator memory is tried once more at half the
            batch size: true, false, or "auto" (the default): where workers share a GPU
            (search.workers_per_gpu), whose neighbours may have taken the memory.
        worker_max_trials: the worker process (isolation "process") is replaced by a fresh one
            after training this many trials (the final training counts too); None: never.
        worker_max_growth_mb: ... or as soon as its resident memory grew by this many MiB since
            its first trial ended (what the first trial loads, the GPU libraries and compiled
            kernels, counts as its start-up); None: no limit. TensorFlow keeps a little
            of every network it built, so a long-lived worker grows trial after trial.
        class_weights: class weights in every loss (segsearch.losses): "none" (null), "auto"
            (inverse square-root class frequency of the training masks, recorded in the study's
            class_weights.json), or one weight >= 0 per class ([w0, w1] for binary masks). The
            hyperparameter ``class_weights`` ([none, auto] in ``space:``) searches it.
    """

    epochs: int = 20
    batch_size: int = 8
    budget_epochs: int | None = None
    final_epochs: int | None = None
    final_schedule: Literal["cosine", "constant"] = "cosine"
    min_epochs: int = 1
    mixed_precision: bool | Literal["auto", "mixed_bfloat16", "mixed_float16"] = "auto"
    jit_compile: bool | Literal["auto"] = "auto"
    steps_per_epoch: int | None = None
    verbose: int = 0
    weights: str | None = None
    isolation: Literal["process", "none"] = "process"
    oom_retry: bool | Literal["auto"] = "auto"
    worker_max_trials: int | None = 10
    worker_max_growth_mb: int | None = 1024
    class_weights: Literal["none", "auto"] | tuple[float, ...] = "none"

    def __post_init__(self) -> None:
        p = "train."
        _set(self, "class_weights", _class_weights(self.class_weights, p + "class_weights"))
        _choice(self.isolation, p + "isolation", ("process", "none"), "isolation")
        if self.oom_retry != "auto":
            _bool(self.oom_retry, p + "oom_retry")
        _int(self.worker_max_trials, p + "worker_max_trials", minimum=1, none=True)
        _int(self.worker_max_growth_mb, p + "worker_max_growth_mb", minimum=1, none=True)
        _int(self.epochs, p + "epochs", minimum=1)
        _int(self.batch_size, p + "batch_size", minimum=1)
        _int(self.budget_epochs, p + "budget_epochs", minimum=1, none=True)
        _int(self.final_epochs, p + "final_epochs", minimum=0, none=True)
        _choice(self.final_schedule, p + "final_schedule", FINAL_SCHEDULES, "schedule")
        _int(self.min_epochs, p + "min_epochs", minimum=1)
        if not isinstance(self.mixed_precision, bool):
            _choice(self.mixed_precision, p + "mixed_precision", MIXED_PRECISION_VALUES,
                    "mixed precision (or true / false)")
        if self.jit_compile != "auto" and not isinstance(self.jit_compile, bool):
            raise _KeyError(p + "jit_compile", f"must be true, false or 'auto', got "
                                               f"{_fmt(self.jit_compile)}")
        _int(self.steps_per_epoch, p + "steps_per_epoch", minimum=1, none=True)
        if _int(self.verbose, p + "verbose", minimum=0) > 2:
            raise _KeyError(p + "verbose", f"must be 0, 1 or 2, got {self.verbose}")
        if self.weights is not None and (not isinstance(self.weights, str) or not self.weights):
            raise _KeyError(p + "weights", f"must be null, 'imagenet' or a file path, got "
                                           f"{_fmt(self.weights)}")
        if self.min_epochs > self.epochs:
            raise _KeyError(p + "min_epochs", f"must be <= train.epochs, got min_epochs="
                                              f"{self.min_epochs}, epochs={self.epochs}; lower "
                                              "min_epochs or raise epochs")
        if self.budget_epochs is not None and self.budget_epochs < self.epochs:
            raise _KeyError(p + "budget_epochs", f"must be >= train.epochs (one full trial), got "
                                                 f"budget_epochs={self.budget_epochs}, epochs="
                                                 f"{self.epochs}; raise it or use null")


@dataclass(frozen=True)
class SearchConfig:
    """How the search runs (the ``search:`` section).

    Args:
        engine: "optuna" or "keras-tuner".
        algorithm: the engine's search algorithm; None picks the engine's default (optuna: tpe,
            random, cmaes, qmc, nsga2; keras-tuner: hyperband, random, bayesian, grid). Resolved
            to a name when built.
        trials: how many finished (complete or pruned) trials the study holds when it is done,
            the seed network included; failed, infeasible and cut-off trials do not count.
        time_limit: seconds after the search starts when no new trial starts and a running one
            stops at its next epoch end ("30m", "2h", "90s" or a number in YAML); None for no
            limit.
        objective: the metric to optimise, e.g. "val_dice"; a list of two or more for nsga2 (or
            tpe, random, qmc), which may name the costs "params", "flops" and "latency_ms" after
            a quality metric: [val_dice, latency_ms].
        direction: "maximize" or "minimize" (a list, one per objective); None means minimize for a
            loss or a cost and maximize otherwise. Resolved when built.
        pruner: optuna's pruner: "hyperband", "median", "successive_halving" or "none"; None means
            hyperband (none for several objectives, and always none for keras-tuner, whose
            hyperband algorithm does the early stopping). Resolved when built.
        seed: random seed of the search algorithm and of the trials' training.
        max_failures: failed trials in a row that stop the study (a StudyError listing the last
            reasons).
        workers: trials trained at once on this machine (each in its own worker process);
            None: ``len(gpus) * workers_per_gpu`` with ``gpus``, else ``workers_per_gpu`` times
            the GPUs found when the search starts (1 without either).
        gpus: GPU ids handed out to the workers in turn (CUDA_VISIBLE_DEVICES); None: all.
        refit_folds: with ``data.folds``, the best N complete configurations are trained and
            scored on every fold after the search and the winner is the best mean over folds
            (:mod:`segsearch.folds`); 0: off, the best trial on fold 0 wins.
        latency_batches: timed batches whose median is a trial's ``latency_ms`` (after a few
            warm-up batches that are not timed).
        latency_batch_size: images per batch when ``latency_ms`` is measured.
        callbacks: ``module:attr`` names of Optuna callbacks, each called with ``(study,
            frozen_trial)`` after every trial (engine optuna; see :mod:`segsearch.callbacks`).
        workers_per_gpu: workers sharing each GPU, each capped at its share of the GPU's memory
            (see segsearch.devices); None: one, or as ``workers`` spreads over ``gpus``. Given
            with ``gpus`` and ``workers``, ``workers`` must be ``len(gpus) * workers_per_gpu``.
    """

    engine: Engine = "optuna"
    algorithm: str | None = None
    trials: int = 20
    time_limit: float | None = None
    objective: str | tuple[str, ...] = "val_dice"
    direction: Direction | tuple[Direction, ...] | None = None
    pruner: Pruner | None = None
    seed: int = 0
    max_failures: int = 5
    workers: int | None = None
    gpus: str | None = None
    refit_folds: int = 0
    latency_batches: int = 20
    latency_batch_size: int = 1
    callbacks: tuple[str, ...] = ()
    workers_per_gpu: int | None = None

    def __post_init__(self) -> None:
        p = "search."
        _int(self.refit_folds, p + "refit_folds", minimum=0)
        _int(self.max_failures, p + "max_failures", minimum=1)
        _int(self.latency_batches, p + "latency_batches", minimum=1)
        _int(self.latency_batch_size, p + "latency_batch_size", minimum=1)
        if self.gpus is not None:
            gpus = self.gpus
            if isinstance(gpus, (list, tuple)):
                gpus = ",".join(str(g) for g in gpus)
            gpus = str(gpus).strip()
            if not all(part.strip().isdigit() for part in gpus.split(",")):
                raise _KeyError(p + "gpus", f"must be GPU ids such as '0,1', got {_fmt(self.gpus)}")
            _set(self, "gpus", gpus)
        engine = _choice(self.engine, p + "engine", ENGINES, "engine")
        algos = ALGORITHMS[engine]
        _int(self.workers, p + "workers", minimum=1, none=True)
        _int(self.workers_per_gpu, p + "workers_per_gpu", minimum=1, none=True)
        for name in ("workers", "workers_per_gpu"):
            if (getattr(self, name) or 1) > 1 and engine != "optuna":
                raise _KeyError(p + name, f"parallel workers need engine optuna (keras-tuner runs "
                                          f"one trial at a time), got {name}="
                                          f"{getattr(self, name)}; use --engine optuna or drop "
                                          f"--{name.replace('_', '-')}")
        if engine != "optuna" and self.workers is None:
            _set(self, "workers", 1)  # --gpus alone: keras-tuner's one worker takes the first
        _set(self, "workers", _resolve_workers(self.workers, self.gpus, self.workers_per_gpu))
        algorithm = DEFAULT_ALGORITHM[engine] if self.algorithm is None else self.algorithm
        if algorithm not in algos:
            other = [e for e in ENGINES if e != engine and algorithm in ALGORITHMS[e]]
            fix = (f"; {algorithm!r} belongs to engine {other[0]!r}: set search.engine: "
                   f"{other[0]}." if other else "")
            everywhere = list(dict.fromkeys(a for names in ALGORITHMS.values() for a in names))
            guess = closest(str(algorithm), algos) or closest(str(algorithm), everywhere)
            hint = ""
            if guess and not other:
                owner = "" if guess in algos else \
                    f" (engine {next(e for e in ENGINES if guess in ALGORITHMS[e])!r})"
                hint = f"; did you mean {guess!r}{owner}?"
            raise _KeyError(p + "algorithm", f"unknown {engine} algorithm {_fmt(algorithm)}"
                                             f"{hint or fix or ';'} Valid for {engine}: "
                                             f"{', '.join(algos)}")
        if algorithm == "cmaes" and importlib.util.find_spec("cmaes") is None:
            raise _KeyError(p + "algorithm", "'cmaes' needs the cmaes package, which is not "
                                             "installed; run `pip install cmaes` or pick tpe")
        _set(self, "algorithm", algorithm)
        _int(self.trials, p + "trials", minimum=1)
        _set(self, "time_limit", parse_duration(self.time_limit, p + "time_limit"))
        _int(self.seed, p + "seed", minimum=0)

        objectives = self._objectives()
        costs = [o for o in objectives if o in COSTS]
        if costs and engine != "optuna":
            raise _KeyError(p + "objective", f"keras-tuner adds several objectives up unscaled "
                                             f"(its MultiObjective), so {costs[0]} would outweigh "
                                             f"{objectives[0]}, got {_fmt(list(objectives))}; "
                                             "use engine: optuna with algorithm: nsga2")
        if len(objectives) > 1:
            if engine != "optuna":
                raise _KeyError(p + "objective", f"keras-tuner optimises one objective, got "
                                                 f"{_fmt(list(objectives))}; use engine: optuna "
                                                 "with algorithm: nsga2, or one objective")
            if algorithm not in MULTI_OBJECTIVE_ALGORITHMS:
                raise _KeyError(p + "algorithm", f"{algorithm!r} optimises one objective, got "
                                                 f"{len(objectives)} objectives; use "
                                                 "algorithm: nsga2")
        elif algorithm == "nsga2":
            raise _KeyError(p + "objective", f"nsga2 searches two or more objectives, got "
                                             f"{_fmt(objectives[0])}; give a list such as "
                                             "[val_dice, val_loss], or use algorithm: tpe")
        _set(self, "objective", objectives[0] if len(objectives) == 1 else objectives)
        _set(self, "direction", self._directions(objectives))

        if self.pruner is None:
            pruner = "hyperband" if engine == "optuna" and len(objectives) == 1 else "none"
        else:
            pruner = _choice(self.pruner, p + "pruner", PRUNERS, "pruner")
        if pruner != "none" and engine != "optuna":
            raise _KeyError(p + "pruner", f"pruners are Optuna's, got {pruner!r} with engine "
                                          "keras-tuner; remove it (keras-tuner stops trials early "
                                          "with algorithm: hyperband)")
        if pruner != "none" and len(objectives) > 1:
            raise _KeyError(p + "pruner", f"Optuna cannot prune with several objectives, got "
                                          f"{pruner!r}; use pruner: none")
        _set(self, "pruner", pruner)
        self._check_callbacks()

    def _check_callbacks(self) -> None:
        """``search.callbacks``: a list of ``module:attr`` (imported by :func:`load_config`)."""
        from segsearch import callbacks

        items = self.callbacks
        items = () if items is None else (items,) if isinstance(items, str) else items
        if not isinstance(items, (list, tuple)):
            raise _KeyError(callbacks.KEY, f"must be a list of module:attr names, got "
                                           f"{_fmt(self.callbacks)}")
        try:
            for item in items:
                callbacks.check_spec(item)
        except callbacks.SpecError as e:
            raise _KeyError(e.key, e.detail) from None
        if items and self.engine != "optuna":
            raise _KeyError(callbacks.KEY, f"Optuna callbacks get an optuna.Study and its trials, "
                                           f"which engine {_fmt(self.engine)} has not; use "
                                           "engine: optuna, or remove search.callbacks")
        _set(self, "callbacks", tuple(items))

    @property
    def objectives(self) -> tuple[str, ...]:
        """The objective(s) as a tuple."""
        return (self.objective,) if isinstance(self.objective, str) else tuple(self.objective)

    @property
    def directions(self) -> tuple[str, ...]:
        """The direction(s) as a tuple, one per objective."""
        return (self.direction,) if isinstance(self.direction, str) else tuple(self.direction)

    def _objectives(self) -> tuple[str, ...]:
        path = "search.objective"
        raw = self.objective
        items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        if not items:
            raise _KeyError(path, "must name at least one metric, got []; e.g. val_dice")
        metrics = [m for name in METRIC_NAMES for m in (f"val_{name}", name)]
        valid = metrics + list(COSTS)
        for item in items:
            if not isinstance(item, str) or item not in valid:
                guess = closest(str(item), valid)
                hint = f"; did you mean {guess!r}?" if guess else ";"
                raise _KeyError(path, f"unknown metric {_fmt(item)}{hint} Valid: "
                                      f"{', '.join(valid)}")
        if len(set(items)) != len(items):
            raise _KeyError(path, f"lists a metric twice, got {_fmt(items)}")
        if items[0] in COSTS:
            quality = [i for i in items if i not in COSTS]
            ordered = quality + [i for i in items if i in COSTS]
            fix = (f"put the quality metric first: [{', '.join(ordered)}]" if quality
                   else f"add one first: [val_dice, {', '.join(items)}]")
            raise _KeyError(path, f"a search needs a quality metric as its first objective (it "
                                  f"picks each trial's best epoch; {items[0]} is a cost), got "
                                  f"{_fmt(items)}; {fix}")
        return tuple(items)

    def _directions(self, objectives: tuple[str, ...]) -> str | tuple[str, ...]:
        path = "search.direction"
        raw = self.direction
        if raw is None:
            items = ["minimize" if o.endswith("loss") or o in COSTS else "maximize"
                     for o in objectives]
        elif isinstance(raw, (list, tuple)):
            items = list(raw)
            if len(items) != len(objectives):
                raise _KeyError(path, f"needs one direction per objective ({len(objectives)}), "
                                      f"got {_fmt(items)}")
        else:
            items = [raw] * len(objectives)
        for item in items:
            _choice(item, path, ("maximize", "minimize"), "direction")
        for name, item in zip(objectives, items):
            if name in COSTS and item != "minimize":
                raise _KeyError(path, f"{name} is a cost and is minimised, got {item!r} for it; "
                                      "use minimize (or leave search.direction out)")
        return items[0] if len(items) == 1 else tuple(items)


@dataclass(frozen=True)
class ExportConfig:
    """What is written for the best model (the ``export:`` section), in <study>/best/.

    Args:
        enabled: export when the search ends (``segsearch export`` works either way).
        saved_model: deprecated, use ``formats``: false drops ``saved_model`` from the formats,
            true adds it; read into ``formats`` (and then None).
        overlays: how many PNG overlays of the best model's predictions on validation images.
        ensemble: "none"; "folds": the winning configuration's K fold models (``data.folds``);
            "top_k": the ``ensemble_size`` best configurations' models; exported as one model
            that averages their probabilities (:mod:`segsearch.ensemble`).
        ensemble_size: the members of a "top_k" ensemble.
        tta: test-time augmentation (the training augmentation's flips and rotations, averaged):
            "auto" uses it when it raises the validation score, true always, false never; the
            score with and without is recorded either way (segsearch.refine).
        threshold: a one-channel (sigmoid) model's foreground threshold, applied by predict:
            "auto" takes the one of segsearch.refine.THRESHOLDS that scores best on the
            validation images (0.5 unless another raises the score), a number between 0 and 1
            fixes it. Softmax models take the argmax.
        postprocess: choose per-class post-processing (keep the largest component, remove small
            ones; for binary masks also fill small holes) on the validation images, each step
            kept only when it raises the score.
        pick: which trial of a several-objective study is trained further and exported:
            "best_quality" (the best first objective), "knee" (the Pareto front's balanced
            trial), or limits such as {max_latency_ms: 20} (max_params, max_flops too): the best
            quality within them (see segsearch.pareto).
        tensorboard: each trial (and the final training) writes TensorBoard scalars and its
            HParams into <study>/tensorboard/<trial_nnnn | final>/.
        formats: the model files to write, of keras, saved_model, onnx, litert (a list, or one
            string "onnx,litert"); ``keras`` is always written. None: keras, plus saved_model on
            the TensorFlow backend (see segsearch.formats).
    """

    enabled: bool = True
    saved_model: bool | None = None
    overlays: int = 4
    ensemble: Literal["none", "folds", "top_k"] = "none"
    ensemble_size: int = 3
    tta: bool | Literal["auto"] = "auto"
    threshold: float | Literal["auto"] = "auto"
    postprocess: bool = True
    pick: str | dict[str, float] = "best_quality"
    tensorboard: bool = False
    formats: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _bool(self.enabled, "export.enabled")
        _int(self.overlays, "export.overlays", minimum=0)
        _choice(self.ensemble, "export.ensemble", ENSEMBLES, "ensemble")
        _int(self.ensemble_size, "export.ensemble_size", minimum=2)
        if self.tta != "auto" and not isinstance(self.tta, bool):
            raise _KeyError("export.tta", f"must be true, false or 'auto', got {_fmt(self.tta)}")
        if self.threshold != "auto":
            if (isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float))
                    or not 0.0 < float(self.threshold) < 1.0):
                raise _KeyError("export.threshold", "must be 'auto' or a number between 0 and 1 "
                                f"(0.5: the plain cut), got {_fmt(self.threshold)}")
            _set(self, "threshold", float(self.threshold))
        _bool(self.postprocess, "export.postprocess")
        _check_pick(self.pick)
        _bool(self.tensorboard, "export.tensorboard")
        _set(self, "formats", _export_formats(self.formats, self.saved_model))
        _set(self, "saved_model", None)


def _check_folds(config: Config) -> None:
    """search.refit_folds and export.ensemble: folds need data.folds >= 2."""
    folds = getattr(config.data, "folds", None) or 1
    if config.search.refit_folds and folds < 2:
        raise _KeyError("search.refit_folds", f"re-scoring on every fold needs data.folds >= 2, "
                                              f"got refit_folds={config.search.refit_folds} "
                                              "without folds; set data.folds (e.g. 5) or "
                                              "search.refit_folds: 0")
    if config.export.ensemble == "folds" and folds < 2:
        raise _KeyError("export.ensemble", "an ensemble of the fold models needs data.folds >= "
                                           "2, got ensemble=folds without folds; set data.folds "
                                           "(e.g. 5), or use export.ensemble: top_k")


def _check_pick(pick: Any) -> None:
    """export.pick: a rule name, or a mapping of limits (max_latency_ms, ...) to positive
    numbers."""
    path = "export.pick"
    if isinstance(pick, str):
        _choice(pick, path, PICK_RULES, "rule")
        return
    example = "{max_latency_ms: 20}"
    if not isinstance(pick, Mapping) or not pick:
        raise _KeyError(path, f"must be {', '.join(PICK_RULES)} or limits such as {example}, "
                              f"got {_fmt(pick)}")
    for key, value in pick.items():
        if key not in PICK_LIMITS:
            raise _unknown_key(path, key, PICK_LIMITS)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or value <= 0:
            raise _KeyError(f"{path}.{key}", f"must be a number > 0, got {_fmt(value)}")


def _check_pick_objectives(pick: Any, objectives: Sequence[str]) -> None:
    """export.pick against search.objective: knee needs several objectives, a limit its cost."""
    if pick == "knee" and len(objectives) < 2:
        raise _KeyError("export.pick", f"knee balances several objectives, got search.objective "
                                       f"{_fmt(list(objectives))}; add a cost such as latency_ms "
                                       "or use best_quality")
    if isinstance(pick, Mapping):
        for key in pick:
            cost = PICK_LIMITS[key]
            if cost not in objectives:
                raise _KeyError("export.pick", f"{key} needs {cost} among search.objective, got "
                                               f"{_fmt(list(objectives))}; add it, e.g. "
                                               f"[{objectives[0]}, {cost}]")


def _export_formats(value: Any, saved_model: Any) -> tuple[str, ...] | None:
    """``export.formats`` as a tuple (keras first, in segsearch.formats.FORMATS order), with the
    deprecated ``export.saved_model`` applied; None stays None (the default)."""
    from segsearch.formats import FORMATS

    path = "export.formats"
    if saved_model is not None:
        _bool(saved_model, "export.saved_model")
    if value is None:
        if saved_model is None or saved_model:
            return None  # the default holds saved_model already
        value = ["keras"]
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise _KeyError(path, f"must be a list of formats ({', '.join(FORMATS)}), got "
                              f"{_fmt(value)}")
    for item in items:
        _choice(item, path, FORMATS, "format")
    wanted = set(items) | {"keras"}
    if saved_model is not None:
        wanted = wanted | {"saved_model"} if saved_model else wanted - {"saved_model"}
    return tuple(f for f in FORMATS if f in wanted)


def _check_study_name(name: Any) -> None:
    if not isinstance(name, str) or not _STUDY_NAME.match(name) or ".." in name:
        raise _KeyError("study", f"must be a plain folder name (letters, digits, '_', '-', '.'; "
                                 f"starting with a letter or digit; no '..' or '/'), got "
                                 f"{_fmt(name)}; use --study-dir to put the study somewhere else")


def _data_config_class() -> type:
    from segsearch.data import DataConfig

    return DataConfig


def _default_data() -> Any:
    return _data_config_class()()


@dataclass(frozen=True)
class Config:
    """One study's whole configuration: a space file after overrides, validated.

    Args:
        study: the study's name (safe characters only); its folder is studies/<study>/.
        architectures: one or more registry keys (several: the architecture is searched too).
        data: where the images are and how to read them (segsearch.data.DataConfig).
        train: how each trial trains.
        search: engine, algorithm, trials, objective, pruner, seed.
        space: the ``space:`` entries: {hp_name: entry} for one architecture, {arch: {hp_name:
            entry}} for several. Entries are checked against the hypermodels by load_config.
        export: what is written for the best model.
        study_dir: the study's folder; None means studies/<study> in the current directory.
        storage: an Optuna storage URL; None means SQLite in the study folder.
        source: where the configuration came from (the space file), for messages.
        auto: the values ``auto`` resolved to, with their reasons (segsearch.autoconf); the
            fields hold the values themselves.
    """

    study: str
    architectures: tuple[str, ...]
    data: Any = field(default_factory=_default_data)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    space: Mapping[str, Any] = field(default_factory=dict)
    export: ExportConfig = field(default_factory=ExportConfig)
    study_dir: Path = None  # type: ignore[assignment]  # filled in: studies/<study>
    storage: str | None = None
    source: str = field(default="<config>", compare=False)
    auto: tuple[Choice, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        _check_study_name(self.study)
        archs = self.architectures
        if isinstance(archs, str):
            archs = (archs,)
        if not isinstance(archs, (list, tuple)) or not archs or not all(
            isinstance(a, str) for a in archs
        ):
            raise _KeyError("architecture", f"must be a registry key or a list of keys, got "
                                            f"{_fmt(archs)}")
        if len(set(archs)) != len(archs):
            raise _KeyError("architecture", f"lists an architecture twice, got {_fmt(list(archs))}")
        _set(self, "architectures", tuple(archs))
        for name, cls in (("train", TrainConfig), ("search", SearchConfig),
                          ("export", ExportConfig), ("data", _data_config_class())):
            if not isinstance(getattr(self, name), cls):
                raise _KeyError(name, f"must be a {cls.__name__}, got "
                                      f"{type(getattr(self, name)).__name__}")
        if not isinstance(self.space, Mapping):
            raise _KeyError("space", f"must be a mapping of hyperparameter names to entries, got "
                                     f"{_fmt(self.space)}")
        if len(archs) > 1:
            for key, value in self.space.items():
                if key not in archs:
                    guess = closest(str(key), archs)
                    fix = (f"did you mean {guess!r}?" if guess else
                           f"give each architecture's entries under its name, e.g. "
                           f"space.{archs[0]}.{key}" if not isinstance(value, Mapping) else
                           f"add {key!r} to architecture: or remove this entry")
                    raise _KeyError(f"space.{key}", f"{key!r} is not one of the searched "
                                                    f"architectures ({', '.join(archs)}); {fix}")
                if not isinstance(value, Mapping):
                    raise _KeyError(f"space.{key}", f"must be a mapping of hyperparameter names "
                                                    f"to entries, got {_fmt(value)}")
        weights, classes = self.train.class_weights, getattr(self.data, "num_classes", None)
        if isinstance(weights, tuple) and classes and len(weights) != max(2, classes):
            what = ("binary masks have 2 classes (background, foreground)" if classes == 1
                    else f"data.num_classes is {classes}")
            raise _KeyError("train.class_weights", f"{len(weights)} weights but {what}; give one "
                                                   "weight per class id")
        _check_pick_objectives(self.export.pick, self.search.objectives)
        backbones = _backbone_architectures()
        if self.train.weights is not None and not set(archs) & set(backbones):
            raise _KeyError("train.weights", f"only {' and '.join(backbones)} load "
                                             f"backbone weights, got architecture "
                                             f"{_fmt(list(archs))}; remove train.weights")
        if self.storage is not None:
            if not isinstance(self.storage, str) or "://" not in self.storage:
                raise _KeyError("storage", f"must be an Optuna storage URL such as "
                                           f"sqlite:///study.db, got {_fmt(self.storage)}")
            if self.search.engine != "optuna":
                raise _KeyError("storage", "a storage URL is for engine optuna; keras-tuner keeps "
                                           "its state in the study folder: remove --storage")
        _check_folds(self)
        if self.study_dir is None:
            _set(self, "study_dir", Path("studies") / self.study)
        else:
            _set(self, "study_dir", Path(self.study_dir))

    @property
    def architecture(self) -> str | None:
        """The architecture when there is exactly one, else None (the architecture is searched)."""
        return self.architectures[0] if len(self.architectures) == 1 else None

    @property
    def studies_root(self) -> Path:
        """The folder that holds the study folder."""
        return self.study_dir.parent

    def space_for(self, architecture: str) -> dict[str, Any]:
        """The ``space:`` entries that apply to one architecture."""
        if len(self.architectures) == 1:
            return dict(self.space) if architecture == self.architectures[0] else {}
        return dict(self.space.get(architecture, {}))

    def hypermodel(self, input_shape: Sequence[int | None] | None = None,
                   num_classes: int | None = None, **options: Any) -> Any:
        """Make the hypermodel this configuration searches (one architecture or several).

        Args:
            input_shape: (H, W, C) of the images; default: data.image_size with data.channels
                (3 when the channels come from the data).
            num_classes: 1 = binary, >= 2 = softmax; default: data.num_classes (None = the seed's).
            **options: passed on to segsearch.hypermodels.for_config (jit_compile defaults to
                train.jit_compile).

        Raises:
            ConfigError: a ``space:`` entry does not fit the hypermodel ("FILE: space.NAME: ...").
        """
        from segsearch.hypermodels import for_config

        return for_config(self, input_shape, num_classes, **options)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as a plain, YAML-able dict (what a study stores).

        ``load_config(c.to_dict(), study_dir=c.study_dir, storage=c.storage) == c`` holds.
        """
        data = self.data.to_dict()
        out = {
            "study": self.study,
            "architecture": self.architecture or list(self.architectures),
            "data": data,
            "train": dataclasses.asdict(self.train),
            "search": dataclasses.asdict(self.search),
            "space": self.space,
            "export": dataclasses.asdict(self.export),
        }
        return jsonable(out, keep_nan=True)

    def with_overrides(self, *, sets: Sequence[str] = (), **cli_overrides: Any) -> Config:
        """A new Config with the same overrides load_config accepts (validated again).

        Args:
            sets: "key.path=value" strings.
            **cli_overrides: data, trials, epochs, image_size, engine, study_dir, storage.
        """
        cli_overrides.setdefault("study_dir", self.study_dir)
        cli_overrides.setdefault("storage", self.storage)
        config = _build(self.to_dict(), self.source, sets=sets, **cli_overrides)
        kept = tuple(c for c in self.auto if _value_at(config, c.key) == _value_at(self, c.key))
        if kept and not config.auto:
            _set(config, "auto", kept)
        return config


# ----------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first on line {first.line + 1}); remove one of them",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_error(source: str, error: yaml.YAMLError) -> ConfigError:
    mark = getattr(error, "problem_mark", None)
    where = f"{source}: line {mark.line + 1}" if mark is not None else source
    problem = getattr(error, "problem", None) or str(error)
    if "duplicate key" in str(problem):
        return ConfigError(f"{where}: {problem}")
    return ConfigError(f"{where}: not valid YAML: {problem}; check the indentation and quoting "
                       "around that line")


#: the most values (after expanding YAML aliases) and the deepest nesting a configuration may hold.
MAX_VALUES = 100_000
MAX_DEPTH = 50


def _check_tree(value: Any, where: str) -> None:
    """Refuse a value that refers to itself (a YAML alias inside its own anchor: ``a: &a [*a]``),
    nests deeper than MAX_DEPTH, or expands to more than MAX_VALUES values through aliases (an
    alias bomb). Nothing else in segsearch then recurses without end or runs out of memory.

    Args:
        value: the parsed YAML (or a mapping given in Python).
        where: the file or option, for the message.

    Raises:
        ConfigError: naming the key path and the fix.
    """
    count = 0
    stack: list[tuple[Any, str, tuple[int, ...]]] = [(value, "", ())]
    while stack:
        node, path, parents = stack.pop()
        count += 1
        key = path or "the top level"
        if count > MAX_VALUES:
            key = key.split("[")[0] or "the top level"
            raise ConfigError(f"{where}: {key}: more than {MAX_VALUES} values once its YAML "
                              "aliases (*name) are expanded; write the values out instead of "
                              "repeating aliases")
        if not isinstance(node, (Mapping, list, tuple)):
            continue
        if id(node) in parents:
            raise ConfigError(f"{where}: {key}: refers to itself (a YAML alias inside its own "
                              "anchor, such as `&a [*a]`); write the value out")
        if len(parents) >= MAX_DEPTH:
            raise ConfigError(f"{where}: {key}: nested more than {MAX_DEPTH} levels deep; a "
                              "space file needs a few")
        inner = (*parents, id(node))
        items = node.items() if isinstance(node, Mapping) else enumerate(node)
        for k, v in items:
            name = f"{path}[{k}]" if not isinstance(node, Mapping) else (
                f"{path}.{k}" if path else str(k))
            stack.append((v, name, inner))


def _read_yaml(path: Path, source: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file; give the path of a space file or the name of "
                          f"a shipped space ({', '.join(shipped_spaces())})") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a folder, not a space file; give a .yaml file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: cannot read the file: {e}") from None
    try:
        value = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise _yaml_error(source, e) from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to read (or a YAML alias refers to "
                          "itself); a space file needs a few levels") from None
    _check_tree(value, source)
    return value


# ----------------------------------------------------------------------------------- lookup
def spaces_dir() -> Any:
    """The folder of the space files that ship inside the package (an importlib Traversable)."""
    return importlib.resources.files("segsearch") / "spaces"


def shipped_spaces() -> list[str]:
    """The names of the space files that ship inside the package (``segsearch run NAME``)."""
    folder = spaces_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def space_path(space: str | Path) -> Path:
    """The file a space argument names: an existing path, else a shipped space by bare name.

    Args:
        space: a path to a YAML file, or a bare name such as "resunet" (or "resunet.yaml").

    Raises:
        ConfigError: neither a file nor a shipped space; the message lists the shipped names.
    """
    path = Path(space)
    if path.exists():
        return path
    text = str(space)
    name = text[: -len(".yaml")] if text.endswith(".yaml") else text
    bare = "/" not in text and "\\" not in text
    if bare:
        candidate = spaces_dir() / f"{name}.yaml"
        if candidate.is_file():
            return Path(str(candidate))
    names = shipped_spaces()
    guess = closest(name if bare else path.stem, names)
    hint = f"; did you mean {guess!r}?" if guess else ";"
    raise ConfigError(f"{text}: no such space file{hint} give the path of a .yaml file or the name "
                      f"of a shipped space ({', '.join(names) or 'none installed'})")


# ----------------------------------------------------------------------------------- loading
def load_config(
    space: str | Path | Mapping[str, Any],
    *,
    sets: Sequence[str | tuple[str, str]] = (),
    data: str | Path | None = None,
    trials: int | None = None,
    epochs: int | None = None,
    image_size: int | Sequence[int] | str | None = None,
    engine: Engine | None = None,
    study_dir: str | Path | None = None,
    storage: str | None = None,
    check_space: bool = True,
) -> Config:
    """Read a space file, apply overrides, and return the validated :class:`Config`.

    Args:
        space: a YAML file path, a bare shipped-space name ("resunet"), or an already-parsed
            mapping.
        sets: "key.path=value" overrides, values parsed as YAML ("data.val_fraction=0.25",
            "space.filters=[8,16]"), applied after the named overrides below; an item may be a
            pair (flag, "key.path=value"), the command-line flag that set it, which messages then
            name (``("--workers 3", "search.workers=3")``).
        data: data.source (a folder of images/ + masks/, an .npz file, or "sample").
        trials: search.trials.
        epochs: train.epochs.
        image_size: data.image_size: N, "HxW" or (H, W).
        engine: search.engine ("optuna" or "keras-tuner").
        study_dir: the study's folder (default studies/<study>).
        storage: an Optuna storage URL (default SQLite in the study folder).
        check_space: check the ``space:`` entries against the hypermodels (imports Keras).

    Raises:
        ConfigError: "FILE: key.path: what is wrong, got X; fix" for every mistake.

    Example:
        >>> config = load_config("spaces/unet.yaml", sets=["search.engine=keras-tuner"])
    """
    if isinstance(space, Mapping):
        _check_tree(space, "<config>")
        raw: Any = dict(space)
        source = "<config>"
    else:
        path = space_path(space)
        source = str(space) if Path(space).exists() else str(path)
        raw = _read_yaml(path, source)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: a space file is a mapping of sections "
                              f"({', '.join(SECTIONS)}), got {_fmt(raw)}")
        raw = dict(raw)
        if "study" not in raw:
            raw["study"] = _study_name_from(path)
    return _build(raw, source, sets=sets, data=data, trials=trials, epochs=epochs,
                  image_size=image_size, engine=engine, study_dir=study_dir, storage=storage,
                  check_space=check_space)


def _study_name_from(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip("._-")
    return name or "study"


def _build(
    raw: dict[str, Any],
    source: str,
    *,
    sets: Sequence[str | tuple[str, str]] = (),
    data: str | Path | None = None,
    trials: int | None = None,
    epochs: int | None = None,
    image_size: int | Sequence[int] | str | None = None,
    engine: str | None = None,
    study_dir: str | Path | None = None,
    storage: str | None = None,
    check_space: bool = True,
) -> Config:
    raw = _copy(raw)
    origins: dict[tuple[str, ...], str] = {}
    named = [
        ("--data", ("data", "source"), None if data is None else str(data)),
        ("--trials", ("search", "trials"), trials),
        ("--epochs", ("train", "epochs"), epochs),
        ("--image-size", ("data", "image_size"),
         None if image_size is None else _parse_image_size(image_size)),
        ("--engine", ("search", "engine"), engine),
    ]
    for origin, keys, value in named:
        if value is not None:
            _apply(raw, keys, value, origin, source)
            origins[keys] = f"{origin} {_fmt(value) if not isinstance(value, str) else value}"
    for entry in sets:
        flag, item = entry if isinstance(entry, tuple) else (None, entry)
        keys, value = _parse_set(item)
        label = flag or f"--set {item}"
        _apply(raw, keys, value, label, source)
        origins[keys] = label
    def build(raw: Mapping[str, Any]) -> Config:
        try:
            return _from_raw(raw, study_dir=study_dir, storage=storage, source=source)
        except _KeyError as e:
            where = _origin_of(e.path, origins) or source
            raise ConfigError(f"{where}: {e.path}: {e.detail}" if e.path else
                              f"{where}: {e.detail}") from None
        except SegsearchError as e:
            raise ConfigError(f"{source}: {e}") from None

    auto = auto_keys(raw)
    choices: tuple[Choice, ...] = ()
    if auto:  # the rest checked first, with stand-ins; then the data and the device decide
        checked = build(placeholder(_copy(raw), auto))
        try:
            raw, choices = resolve(raw, checked, auto)
        except ConfigError as e:
            key = str(e).split(":", 1)[0]
            raise ConfigError(f"{_origin_of(key, origins) or source}: {e}") from None
    config = build(raw)
    if choices:
        _set(config, "auto", choices)
    if check_space:
        _check_space(config, origins)
        _check_callbacks(config, origins)
    return config


def _check_callbacks(config: Config, origins: Mapping[tuple[str, ...], str]) -> None:
    """Import each ``search.callbacks`` entry (a class or factory is not called yet)."""
    from segsearch import callbacks

    for spec in config.search.callbacks:
        try:
            callbacks.load(spec)
        except callbacks.SpecError as e:
            where = _origin_of(callbacks.KEY, origins) or config.source
            raise ConfigError(f"{where}: {e}") from None


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _value_at(config: Config, key: str) -> Any:
    """The value of a dotted key ("data.image_size", "space.unet.depth") in a Config."""
    head, *rest = key.split(".")
    value: Any = getattr(config, head)
    for part in rest:
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
    return jsonable(value)


def _origin_of(path: str, origins: Mapping[tuple[str, ...], str]) -> str | None:
    """The override (--set / named option) that set ``path`` or one of its parents/children."""
    keys = tuple(path.split(".")) if path else ()
    for n in range(len(keys), 0, -1):
        if keys[:n] in origins:
            return origins[keys[:n]]
    for k, origin in origins.items():
        if keys and k[: len(keys)] == keys:
            return origin
    return None


def _parse_image_size(value: int | Sequence[int] | str) -> Any:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, str):
        parts = re.split(r"[x,]", value.strip().lower())
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"--image-size: must be N, HxW (e.g. 64 or 64x96) or auto, got "
                              f"{value!r}") from None
        return nums[0] if len(nums) == 1 else nums
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


def _parse_set(item: str) -> tuple[tuple[str, ...], Any]:
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"--set {item}: expected KEY=VALUE such as train.epochs=3 or "
                          "data.val_fraction=0.25")
    key, text = item.split("=", 1)
    keys = tuple(k.strip() for k in key.strip().split("."))
    if not keys or any(not k for k in keys):
        raise ConfigError(f"--set {item}: the key must be a dotted path such as train.epochs")
    try:
        value = yaml.load(text, Loader=_Loader) if text.strip() else None  # noqa: S506
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or e
        raise ConfigError(f"--set {item}: the value is not valid YAML ({problem}); quote strings "
                          "that hold ':' or '#'") from None
    except RecursionError:
        raise ConfigError(f"--set {item}: the value is nested too deeply") from None
    _check_tree(value, f"--set {item}")
    return keys, value


def _schema(section: str) -> list[str] | None:
    """Valid keys of a section, or None when any key may appear (space)."""
    classes = {"train": TrainConfig, "search": SearchConfig, "export": ExportConfig}
    if section in classes:
        return [f.name for f in dataclasses.fields(classes[section]) if f.init]
    if section == "data":
        return [f.name for f in dataclasses.fields(_data_config_class()) if f.init]
    return None


def _apply(raw: dict[str, Any], keys: tuple[str, ...], value: Any, origin: str,
           source: str) -> None:
    """Set raw[keys...] = value, checking the key path against the schema first."""
    head = keys[0]
    if head not in SECTIONS:
        raise ConfigError(f"{origin}: {_unknown_key('', head, SECTIONS).detail}")
    if head in ("study", "architecture"):
        if len(keys) > 1:
            raise ConfigError(f"{origin}: {head} has no sub-keys; use {head}=VALUE")
        raw[head] = value
        return
    valid = _schema(head)
    if valid is not None and len(keys) > 1 and keys[1] not in valid:
        raise ConfigError(f"{origin}: {_unknown_key(head, keys[1], valid)}")
    if valid is not None and len(keys) > 2:
        raise ConfigError(f"{origin}: {'.'.join(keys[:2])} has no sub-keys; use "
                          f"{'.'.join(keys[:2])}=VALUE")
    node = raw
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if head == "data" and i == 0 and isinstance(child, str):
            child = {"source": child}  # `data: DIR` shorthand
        if child is None:
            child = {}
        if not isinstance(child, dict):
            path = ".".join(keys[: i + 1])
            raise ConfigError(f"{origin}: {source}: {path} is {_fmt(child)}, not a mapping, so "
                              f"{'.'.join(keys)} cannot be set; use --set {path}=VALUE")
        node[key] = child
        node = child
    node[keys[-1]] = value


def _section(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _KeyError(name, f"must be a mapping of keys, got {_fmt(value)}")
    for key in value:
        if not isinstance(key, str):
            raise _KeyError(name, f"keys must be names, got {_fmt(key)}")
    return dict(value)


def _from_raw(raw: Mapping[str, Any], *, study_dir: Any, storage: Any, source: str) -> Config:
    for key in raw:
        if key not in SECTIONS:
            raise _unknown_key("", key, SECTIONS)
    if raw.get("architecture") is None:
        raise _KeyError("architecture", "missing; add `architecture: unet` (or resunet, "
                                        "resnet50_unet, deeplabv3plus, resblock_unet, or a list "
                                        "of them)")
    _check_study_name(raw.get("study", "study"))
    archs = raw["architecture"]
    sections: dict[str, Any] = {}
    for name, cls in (("train", TrainConfig), ("search", SearchConfig),
                      ("export", ExportConfig)):
        values = _section(raw, name)
        _check_known(cls, values, name)
        sections[name] = cls(**values)
    data = raw.get("data")
    if isinstance(data, str):
        data = {"source": data}
    sections["data"] = _make_data(_section({"data": data}, "data"))
    space = raw.get("space")
    if space is None:
        space = {}
    if not isinstance(space, Mapping):
        raise _KeyError("space", f"must be a mapping of hyperparameter names to entries, got "
                                 f"{_fmt(space)}")
    _check_architectures(archs)  # last: it imports the hypermodels (Keras)
    return Config(
        study=raw.get("study", "study"),
        architectures=tuple(archs) if isinstance(archs, list) else archs,
        space=dict(space),
        study_dir=None if study_dir is None else Path(study_dir),
        storage=storage,
        source=source,
        **sections,
    )


def _architecture_names() -> list[str]:
    from segsearch.hypermodels import names

    return list(names())


def _check_architectures(archs: Any) -> None:
    items = archs if isinstance(archs, list) else [archs]
    if not items:
        raise _KeyError("architecture", "the list is empty; name at least one architecture")
    valid = _architecture_names()
    for item in items:
        if not isinstance(item, str) or item not in valid:
            guess = closest(str(item), valid)
            hint = f"; did you mean {guess!r}?" if guess else ";"
            raise _KeyError("architecture", f"unknown architecture {_fmt(item)}{hint} Valid: "
                                            f"{', '.join(valid)}")


def _make_data(values: dict[str, Any]) -> Any:
    cls = _data_config_class()
    _check_known(cls, values, "data")
    if isinstance(values.get("val_source"), Path):
        values["val_source"] = str(values["val_source"])
    try:
        return cls.from_dict(values, where="data")
    except ConfigError as e:
        message = str(e)
        match = re.match(r"(data(?:\.[A-Za-z_]+)?)(?:\[[^\]]*\])?: (.*)", message, re.S)
        if match:
            raise _KeyError(match.group(1), match.group(2)) from None
        raise _KeyError("data", message) from None


def _check_space(config: Config, origins: Mapping[tuple[str, ...], str]) -> None:
    """Check the ``space:`` entries and ``train.weights`` by making the hypermodel(s) (no network
    is built): every value against its hyperparameter's domain (segsearch.params.Domain)."""
    from segsearch.errors import WeightsError

    try:
        config.hypermodel()
    except WeightsError as e:
        where = _origin_of("train.weights", origins) or config.source
        raise ConfigError(f"{where}: train.weights: {e}") from None
    except ConfigError as e:
        message = str(e)
        for keys, origin in origins.items():
            if keys[0] == "space" and len(keys) > 1 and (
                f"space.{'.'.join(keys[1:])}" in message or repr(keys[-1]) in message
            ):
                message = message.replace(config.source, origin, 1)
                break
        raise ConfigError(message) from None
