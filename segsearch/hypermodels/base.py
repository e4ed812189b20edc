"""SegmentationHyperModel: read hyperparameters, call a pure builder, compile.

A hypermodel is thin. Its architecture's hyperparameters come from the registry
(:mod:`segsearch.hypermodels.registry`: :class:`~segsearch.params.Param` specs named as the
builder's keyword arguments, the preset's values as defaults), declared on the ``hp`` object
through :meth:`Param.declare`; ``build(hp)`` gives the values to the builder as they are (the
builder checks them once, an :class:`~segsearch.errors.InfeasibleError` before any layer is made)
and compiles with the chosen optimizer, loss (:mod:`segsearch.losses`) and metrics
(:mod:`segsearch.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import keras_tuner

from segsearch import losses as seg_losses
from segsearch import metrics as seg_metrics
from segsearch.errors import ConfigError, unknown_name
from segsearch.hypermodels.registry import NON_NEGATIVE, POSITIVE, UNIT, ArchitectureSpec, spec
from segsearch.params import Param, active_defaults

__all__ = [
    "SegmentationHyperModel",
    "MultiArchitectureHyperModel",
    "training_params",
    "make_optimizer",
    "make_loss",
    "OPTIONS",
]

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "rmsprop")
LOSSES: tuple[str, ...] = ("ce", "dice", "ce_dice", "focal", "tversky")
#: Options accepted by ``segsearch.hypermodels.get(..., **options)`` besides weights/space/where.
OPTIONS: tuple[str, ...] = ("jit_compile", "tunable", "name", "background", "class_weights")
#: Values of the ``class_weights`` hyperparameter: no weighting, the weights computed from the
#: training masks (``train.class_weights: auto``), the list ``train.class_weights`` gives.
CLASS_WEIGHTS: tuple[str, ...] = ("none", "auto", "given")


def training_params() -> tuple[Param, ...]:
    """The hyperparameters every hypermodel shares.

    Learning rate, optimizer and loss (+ conditionals).
    """
    return (
        Param.Float("learning_rate", 1e-5, 1e-2, default=1e-4, sampling="log",
                    help="optimizer learning rate", domain=POSITIVE),
        Param.Choice("optimizer", OPTIMIZERS, default="adam", closed=True,
                     help="optimizer: adam, adamw (+ weight_decay), sgd (+ momentum), rmsprop"),
        Param.Float("weight_decay", 1e-6, 1e-2, default=1e-4, sampling="log",
                    parent="optimizer", parent_values=["adamw"], help="AdamW weight decay",
                    domain=NON_NEGATIVE),
        Param.Float("momentum", 0.0, 0.99, default=0.9, parent="optimizer",
                    parent_values=["sgd"], help="SGD momentum", domain=UNIT),
        Param.Choice("loss", LOSSES, default="ce", closed=True,
                     help="ce (binary/categorical cross-entropy), dice, ce_dice, focal, tversky"),
        Param.Float("focal_gamma", 0.0, 5.0, default=2.0, parent="loss", parent_values=["focal"],
                    help="focal loss focusing parameter gamma", domain=NON_NEGATIVE),
        Param.Float("tversky_alpha", 0.1, 0.9, default=0.3, parent="loss",
                    parent_values=["tversky"],
                    help="tversky loss weight of false positives (beta = 1 - alpha)", domain=UNIT),
    )


def make_optimizer(name: str, learning_rate: float, *, weight_decay: float | None = None,
                   momentum: float | None = None) -> Any:
    """Create a Keras optimizer by name.

    Args:
        name: "adam", "adamw", "sgd" or "rmsprop".
        learning_rate: the learning rate.
        weight_decay: AdamW's weight decay (default 1e-4).
        momentum: SGD's momentum (default 0.9).
    """
    import keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate,
                                      weight_decay=1e-4 if weight_decay is None else weight_decay)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate,
                                    momentum=0.9 if momentum is None else momentum)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    raise ConfigError(unknown_name("optimizer", name, OPTIMIZERS))


def class_weight_setting(value: Any = "none", auto: Any = None) -> dict[str, Any]:
    """The ``class_weights`` option of a hypermodel from ``train.class_weights``.

    Args:
        value: "none" (or None), "auto", or a list of weights (one per class).
        auto: the weights "auto" stands for (computed from the training masks), when known.

    Returns:
        ``{"default": "none" | "auto" | "given", "auto": [...] | None, "given": [...] | None}``.
    """
    if value is None or value == "none":
        return {"default": "none", "auto": auto, "given": None}
    if value == "auto":
        return {"default": "auto", "auto": auto, "given": None}
    return {"default": "given", "auto": auto, "given": list(value)}


def class_weights_param(default: str) -> Param:
    """The ``class_weights`` hyperparameter: fixed at ``train.class_weights``'s kind; a space entry
    such as ``class_weights: [none, auto]`` searches it like the loss."""
    return Param.Fixed("class_weights", default, allowed=CLASS_WEIGHTS,
                       help="class weights in the loss: none, auto (from the training masks' "
                            "class frequencies) or given (train.class_weights' list)")


def make_loss(name: str, num_classes: int, *, focal_gamma: float | None = None,
              tversky_alpha: float | None = None, background: int | None = 0,
              class_weights: Any = None) -> seg_losses.SegmentationLoss:
    """Create the loss named by the ``loss`` hyperparameter, with its conditional options.

    Args:
        name: "ce", "dice", "ce_dice", "focal" or "tversky".
        num_classes: 1 for a sigmoid head, >= 2 for softmax.
        focal_gamma: focal loss gamma.
        tversky_alpha: tversky alpha (false positives); beta = 1 - alpha.
        background: ``data.background``, the class the dice-like losses leave out (None: none).
        class_weights: one weight per class (None: unweighted), see :mod:`segsearch.losses`.
    """
    kwargs: dict[str, Any] = {"class_weights": class_weights} if class_weights is not None else {}
    if name == "focal" and focal_gamma is not None:
        kwargs["gamma"] = focal_gamma
    if name == "tversky" and tversky_alpha is not None:
        kwargs.update(alpha=tversky_alpha, beta=1.0 - tversky_alpha)
    return seg_losses.get(name, num_classes, background=background, **kwargs)


def _check_input_shape(input_shape: Any, where: str) -> tuple:
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ConfigError(f"{where}: input_shape must be a tuple like (256, 256, 3), got "
                          f"{input_shape!r}") from None
    return shape


class SegmentationHyperModel(keras_tuner.HyperModel):
    """Base of the five architecture hypermodels.

    A subclass sets ``key``; what the architecture is (builder, hyperparameters, preset) is its
    :class:`~segsearch.hypermodels.registry.ArchitectureSpec`. Everything else (space overrides,
    declaration, freezing check, compile) lives here.

    Args:
        input_shape: (H, W, C) of the images, e.g. (256, 256, 3).
        num_classes: 1 for binary (sigmoid), >= 2 for softmax; None = the preset's head.
        weights: encoder weights for ResNet50-based architectures: None, "imagenet" or a file path.
        space: YAML-style overrides by hyperparameter name (see :meth:`Param.override`).
        where: prefix for error messages, e.g. "spaces/unet.yaml: space".
        jit_compile: passed to ``model.compile``.
        tunable: keras-tuner's flag.
        name: keras-tuner's hypermodel name (default: the registry key).
        background: the class the dice and iou metrics and the dice-like losses leave out
            (``data.background``, default 0); None: every class is a real one and counts.
        class_weights: ``train.class_weights`` ("none", "auto", a list), or the mapping
            :func:`class_weight_setting` returns (with the computed "auto" weights). Unless it is
            "none", or the space names ``class_weights``, the hyperparameter ``class_weights``
            is declared (fixed at its kind).

    Example:
        >>> import keras_tuner
        >>> hm = UNetHyperModel((64, 64, 1), space={"filters": 8, "depth": [2, 3]})
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    key: ClassVar[str] = ""

    def __init__(
        self,
        input_shape: Sequence[int | None],
        num_classes: int | None = None,
        *,
        weights: Any = None,
        space: Mapping[str, Any] | None = None,
        where: str = "space",
        jit_compile: bool | str = "auto",
        tunable: bool = True,
        name: str | None = None,
        background: int | None = 0,
        class_weights: Any = "none",
    ) -> None:
        super().__init__(name=name or self.key, tunable=tunable)
        self.spec: ArchitectureSpec = spec(self.key)
        self.where = where
        self.input_shape = _check_input_shape(input_shape, where)
        allows_3d = self.spec.allows_3d
        ranks = (3, 4) if allows_3d else (3,)
        if len(self.input_shape) not in ranks:
            expected = "(H, W, C) or (D, H, W, C)" if allows_3d else "(H, W, C)"
            hint = "" if allows_3d else "; 3D volumes (D, H, W, C) work with resblock_unet"
            raise ConfigError(f"{where}: {self.key} needs input_shape {expected}, got "
                              f"{self.input_shape}{hint}")
        if num_classes is None:
            num_classes = self.spec.default_num_classes
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"{where}: num_classes must be an integer >= 1 "
                              f"(1 = binary, sigmoid), got {num_classes!r}")
        self.num_classes = num_classes
        self.background = seg_metrics.check_background(background, num_classes,
                                                       f"{where}: background")
        if weights is not None and not self.spec.takes_weights:
            raise ConfigError(f"{where}: {self.key} has no pretrained encoder, so weights must be "
                              f"None, got {weights!r}; weights apply to resnet50_unet and "
                              "deeplabv3plus")
        if weights is not None:  # a missing file is found now, not when the first trial builds
            from segsearch.blocks import check_weights

            check_weights(weights, self.input_shape[-1])
        self.weights = weights
        self.jit_compile = jit_compile
        self.class_weights = (dict(class_weights) if isinstance(class_weights, Mapping)
                              else class_weight_setting(class_weights))
        self._weights_param = (class_weights_param(self.class_weights["default"])
                               if self.class_weights["default"] != "none"
                               or "class_weights" in (space or {}) else None)
        self._params = self._apply_space(dict(space or {}), where)
        self._check_freeze_space(where)
        self._check_class_weights_space(where)

    # ------------------------------------------------------------------ the space
    def architecture_params(self) -> tuple[Param, ...]:
        """The architecture's own hyperparameters (the registry's), defaults = the preset."""
        return self.spec.params(self.input_shape, self.weights)

    def base_params(self) -> tuple[Param, ...]:
        """Architecture params then training params (and ``class_weights`` where it is declared),
        before space overrides."""
        extra = () if self._weights_param is None else (self._weights_param,)
        return tuple(self.architecture_params()) + training_params() + extra

    def params(self) -> tuple[Param, ...]:
        """The effective hyperparameter specs (space overrides applied), in declaration order."""
        return self._params

    def names(self) -> list[str]:
        """The hyperparameter names of this hypermodel, in declaration order."""
        return [p.name for p in self._params]

    def defaults(self) -> dict[str, Any]:
        """The default (preset) values of the params active when every param is at its default."""
        return active_defaults(self._params)

    def normalize_entry(self, name: str, entry: Any, where: str) -> Any:
        """Rewrite a space entry before :meth:`Param.override` (subclasses: special formats)."""
        return entry

    def validate_param(self, param: Param, where: str) -> None:
        """Check an overridden param's values beyond their type (subclasses)."""

    def _apply_space(self, space: dict[str, Any], where: str) -> tuple[Param, ...]:
        params = list(self.base_params())
        names = [p.name for p in params]
        if len(set(names)) != len(names):  # pragma: no cover - programming error
            raise ConfigError(f"{self.key}: duplicate hyperparameter names in {names}")
        for key in space:
            if key not in names:
                raise ConfigError(unknown_name(f"hyperparameter of {self.key}", key, names,
                                               where=where))
        out = []
        for p in params:
            if p.name in space:
                at = f"{where}.{p.name}"
                p = p.override(self.normalize_entry(p.name, space[p.name], at), at)
                self.validate_param(p, at)
            out.append(p)
        return tuple(out)

    def _check_freeze_space(self, where: str) -> None:
        by_name = {p.name: p for p in self._params}
        freeze = by_name.get("freeze")
        if freeze is None or self.weights is not None:
            return
        values = freeze.values if freeze.kind == "choice" else (freeze.default,)
        frozen = [v for v in values if v != "none"]
        if frozen:
            raise ConfigError(
                f"{where}.freeze: freezing the encoder needs pretrained weights, but weights is "
                f"None and the space allows freeze={frozen!r}; pass weights='imagenet' or a "
                "weights file, or set freeze to 'none' (remove it from the space)"
            )

    def _check_class_weights_space(self, where: str) -> None:
        param = next((p for p in self._params if p.name == "class_weights"), None)
        if param is None:
            return
        values = param.values if param.kind == "choice" else (param.default,)
        if "given" in values and self.class_weights.get("given") is None:
            raise ConfigError(f"{where}.class_weights: 'given' needs train.class_weights: [w0, "
                              "w1, ...] (one weight per class); set it, or search [none, auto]")

    def class_weight_values(self, kind: str | None) -> list[float] | None:
        """The weights a ``class_weights`` value stands for (None: no weighting).

        Raises:
            ConfigError: "auto" before the training masks' frequencies are known.
        """
        if kind in (None, "none"):
            return None
        weights = self.class_weights.get(kind)
        if weights is None:
            raise ConfigError(f"{self.where}: class_weights {kind!r}: the weights are not known "
                              "here; 'auto' is computed from the training masks by a study "
                              "(segsearch run), or pass class_weights={'default': 'auto', "
                              "'auto': [w0, w1, ...]}")
        return list(weights)

    # ------------------------------------------------------------------ build
    def declare(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """Declare every hyperparameter on ``hp``; return their values (None when inactive).

        This is also how a search engine pre-populates its space without building a model.

        Args:
            hp: a ``keras_tuner.HyperParameters`` (or segsearch's Optuna adapter).
        """
        return {p.name: p.declare(hp) for p in self._params}

    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        """keras-tuner's hook: register the whole space (every conditional branch) on ``hp``."""
        self.declare(hp)

    def build(self, hp: keras_tuner.HyperParameters) -> Any:
        """Build and compile the model for the hyperparameter values in ``hp``.

        Args:
            hp: a ``keras_tuner.HyperParameters``; ``HyperParameters()`` gives the preset network.

        Raises:
            InfeasibleError: the values cannot work at this input size (raised before building).
            ConfigError: freeze != "none" without pretrained weights, or a bad value.
        """
        values = self.declare(hp)
        _space_is_complete(hp)
        return self.build_from_values(values)

    def build_from_values(self, values: Mapping[str, Any]) -> Any:
        """Build and compile from a dict of hyperparameter values (flat names).

        Args:
            values: values by name; missing active ones take their defaults.
        """
        values = self._complete(values)
        freeze = values.get("freeze")
        if freeze not in (None, "none") and self.weights is None:
            raise ConfigError(
                f"{self.where}.freeze: freeze={freeze!r} needs pretrained weights, but weights is "
                "None; pass weights='imagenet' or a weights file, or use freeze='none'"
            )
        # hyperparameters are named as the builder's keyword arguments; inactive ones (None) are
        # left to the builder's defaults, and the builder checks the values once before building
        kwargs = {p.name: values[p.name] for p in self.architecture_params()
                  if values.get(p.name) is not None}
        if self.spec.takes_weights:
            kwargs["weights"] = self.weights
        model = self.spec.builder(self.input_shape, self.num_classes, **kwargs)
        self.compile_model(model, values)
        return model

    def seed_feasibility(self) -> str | None:
        """Why the defaults (the seed network, as the space sets them) cannot be built at the
        input size, or None when they can (checked without building)."""
        from segsearch.errors import InfeasibleError
        from segsearch.hypermodels.registry import check_input_size

        names = {p.name for p in self.architecture_params()}
        values = self._complete({})
        try:
            check_input_size(self.key, self.input_shape,
                             **{n: values[n] for n in names if values.get(n) is not None})
        except (InfeasibleError, ConfigError) as e:
            return str(e)
        return None

    def feasibility(self, samples: int = 200, seed: int = 0) -> str | None:
        """Why no configuration of the space can be built at the input size, or None if one can.

        Checks without building (the builder's own checks): the defaults, each value of every
        hyperparameter varied alone from the defaults, then ``samples`` random configurations.

        Args:
            samples: random configurations tried after the one-at-a-time ones.
            seed: seed of the random draw.

        Returns:
            None when a feasible configuration was found, else the defaults' reason.
        """
        import random

        from segsearch.errors import InfeasibleError
        from segsearch.hypermodels.registry import check_input_size

        rng = random.Random(seed)
        defaults = self._complete({})
        arch_params = self.architecture_params()
        names = {p.name for p in arch_params}
        params = [p for p in self._params if p.name in names]
        candidates: list[dict[str, Any]] = [{}]
        for p in params:
            candidates.extend({p.name: v} for v in _some_values(p, rng, limit=16))
        for _ in range(samples):
            candidates.append({p.name: rng.choice(_some_values(p, rng, limit=16) or [p.default])
                               for p in params})
        first: str | None = None
        for changes in candidates:
            values = self._complete({**defaults, **changes})
            kwargs = {n: values[n] for n in names if values.get(n) is not None}
            try:
                check_input_size(self.key, self.input_shape, **kwargs)
                return None
            except (InfeasibleError, ConfigError) as e:
                first = first or str(e)
        return first

    def _complete(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self._params:
            if p.is_active(out):
                value = values.get(p.name)
                out[p.name] = p.default if value is None else value
        return out

    def compile_model(self, model: Any, values: Mapping[str, Any]) -> Any:
        """Compile ``model`` with the optimizer, loss and metrics chosen in ``values``."""
        optimizer = make_optimizer(values["optimizer"], values["learning_rate"],
                                   weight_decay=values.get("weight_decay"),
                                   momentum=values.get("momentum"))
        loss = make_loss(values["loss"], self.num_classes, focal_gamma=values.get("focal_gamma"),
                         tversky_alpha=values.get("tversky_alpha"), background=self.background,
                         class_weights=self.class_weight_values(values.get("class_weights")))
        model.compile(optimizer=optimizer, loss=loss,
                      metrics=seg_metrics.default_metrics(self.num_classes, self.background),
                      jit_compile=self.jit_compile)
        return model

    def fit(self, hp: keras_tuner.HyperParameters, model: Any, *args: Any, **kwargs: Any) -> Any:
        """keras-tuner's training hook: passes through to ``model.fit``."""
        return model.fit(*args, **kwargs)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(input_shape={self.input_shape}, "
                f"num_classes={self.num_classes}, weights={self.weights!r})")


def _space_is_complete(hp: Any) -> None:
    """Tell keras-tuner's space exploration that no conditional branch is left to discover.

    keras-tuner's ``Tuner`` rebuilds the model once for every conditional scope that has not been
    active yet (``hp.inactive_scopes``), only to discover the hyperparameters declared inside it:
    with the optimizer, loss, freeze and architecture conditions that is dozens of full model
    builds before the first trial. ``declare`` already registers every branch (inactive ones
    included), so the scopes are marked as seen and one build suffices.
    """
    active = getattr(hp, "active_scopes", None)
    inactive = getattr(hp, "inactive_scopes", None)
    if isinstance(active, list) and isinstance(inactive, list):
        active.extend(inactive)
        inactive.clear()


class MultiArchitectureHyperModel(keras_tuner.HyperModel):
    """Search across architectures: hp "architecture" picks one, its params live under its key.

    Each architecture's hyperparameters are declared under ``hp.conditional_scope("architecture",
    [key])`` and ``hp.name_scope(key)``, so they are named "unet/depth", "deeplabv3plus/aspp_rates",
    ... and are active only when that architecture is chosen.

    Args:
        hypermodels: the architecture hypermodels, in choice order (the first is the default).
        where: prefix for error messages.
        tunable: keras-tuner's flag.
        name: keras-tuner's hypermodel name.
    """

    def __init__(self, hypermodels: Sequence[SegmentationHyperModel], *, where: str = "space",
                 tunable: bool = True, name: str = "auto") -> None:
        super().__init__(name=name, tunable=tunable)
        if not hypermodels:
            raise ConfigError(f"{where}: a multi-architecture search needs at least one "
                              "architecture")
        self.hypermodels = {hm.key: hm for hm in hypermodels}
        if len(self.hypermodels) != len(hypermodels):
            keys = [hm.key for hm in hypermodels]
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise ConfigError(f"{where}: architectures listed twice: {', '.join(dup)}")
        self.keys = [hm.key for hm in hypermodels]
        self.where = where

    def params(self) -> tuple[Param, ...]:
        """Every hyperparameter with its scoped name ("unet/depth") and its conditions flattened.

        The "architecture" choice comes first; a scoped param's parent is its architecture's
        own parent (scoped) or, for unconditional ones, "architecture".
        """
        out = [Param.Choice("architecture", self.keys, default=self.keys[0], closed=True,
                            help="which architecture this trial builds")]
        from dataclasses import replace

        for key, hm in self.hypermodels.items():
            for p in hm.params():
                if p.parent is None:
                    out.append(replace(p, name=f"{key}/{p.name}", parent="architecture",
                                       parent_values=(key,)))
                else:
                    out.append(replace(p, name=f"{key}/{p.name}", parent=f"{key}/{p.parent}"))
        return tuple(out)

    def defaults(self) -> dict[str, Any]:
        """The default values: the first architecture and its preset values (scoped names)."""
        key = self.keys[0]
        out: dict[str, Any] = {"architecture": key}
        out.update({f"{key}/{n}": v for n, v in self.hypermodels[key].defaults().items()})
        return out

    def seed_feasibility(self) -> str | None:
        """Why the first architecture's defaults cannot be built at the input size, or None."""
        return self.hypermodels[self.keys[0]].seed_feasibility()

    def feasibility(self, samples: int = 200, seed: int = 0) -> str | None:
        """None when some architecture has a feasible configuration, else each one's reason."""
        reasons = []
        for hm in self.hypermodels.values():
            reason = hm.feasibility(samples, seed)
            if reason is None:
                return None
            reasons.append(reason)
        return "; ".join(reasons)

    def declare(self, hp: keras_tuner.HyperParameters) -> tuple[str, dict[str, Any]]:
        """Declare "architecture" and every architecture's params; return (key, its values)."""
        arch = hp.Choice("architecture", self.keys, default=self.keys[0])
        chosen: dict[str, Any] = {}
        for key, hm in self.hypermodels.items():
            with hp.conditional_scope("architecture", [key]), hp.name_scope(key):
                values = hm.declare(hp)
            if key == arch:
                chosen = values
        return arch, chosen

    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        """keras-tuner's hook: register the whole space (every architecture) on ``hp``."""
        self.declare(hp)

    def build(self, hp: keras_tuner.HyperParameters) -> Any:
        """Build the chosen architecture with its values (see SegmentationHyperModel.build)."""
        arch, values = self.declare(hp)
        _space_is_complete(hp)
        return self.hypermodels[arch].build_from_values(values)

    def fit(self, hp: keras_tuner.HyperParameters, model: Any, *args: Any, **kwargs: Any) -> Any:
        """keras-tuner's training hook: passes through to ``model.fit``."""
        return model.fit(*args, **kwargs)


def _some_values(p: Param, rng: Any, limit: int) -> list[Any]:
    """Up to ``limit`` values of ``p``'s range: its bounds and grid, or its choices."""
    if p.kind in ("choice",):
        return list(p.values)
    if p.kind == "boolean":
        return [False, True]
    if p.kind == "fixed" or p.min_value is None or p.max_value is None:
        return [p.default]
    lo, hi = p.min_value, p.max_value
    if p.kind == "int":
        step = int(p.step or 1)
        grid = list(range(int(lo), int(hi) + 1, step))
        if len(grid) <= limit:
            return grid
        return [grid[0], grid[-1], *rng.sample(grid[1:-1], limit - 2)]
    return [lo, hi, *(rng.uniform(lo, hi) for _ in range(limit - 2))]
