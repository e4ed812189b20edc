"""Declarative hyperparameter specs: the one helper that declares a hyperparameter.

A :class:`Param` describes one hyperparameter (its kind, range or choices, default and condition).
The hypermodels declare every hyperparameter through :meth:`Param.declare`, and whatever
pre-populates a search space from a YAML file uses the same specs after :meth:`Param.override`, so
the two code paths can never disagree (keras-tuner keys a hyperparameter by its name *and* its
conditions: two declarations that differ silently create two hyperparameters).

This module imports neither TensorFlow, Keras nor keras-tuner.

Example:
    >>> depth = Param.Int("depth", 2, 5, default=4, help="number of poolings")
    >>> depth.override({"min": 2, "max": 3}, where="spaces/unet.yaml: space.depth").describe()
    'int 2..3'
    >>> depth.override({"min": 5, "max": 3}, where="spaces/unet.yaml: space.depth")
    ConfigError: spaces/unet.yaml: space.depth: min must be <= max, got min=5, max=3; swap them
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from segsearch.errors import ConfigError, closest, yaml_text

__all__ = ["Param", "Domain", "Kind", "active_defaults", "is_active"]

Kind = Literal["int", "float", "choice", "boolean", "fixed"]
_KINDS = ("int", "float", "choice", "boolean", "fixed")
_SAMPLINGS = ("linear", "log")
# Keys a mapping entry of a `space:` file may hold (with the aliases low/high for min/max).
_ENTRY_KEYS = ("min", "max", "low", "high", "step", "sampling", "default", "values", "fixed")


_fmt = yaml_text  # values in messages as YAML writes them


def _type_name(value_type: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        value_type, value_type.__name__
    )


@dataclass(frozen=True)
class Domain:
    """Every value a numeric hyperparameter can take at all, as opposed to the range it searches.

    The declared range (``Param.min_value``..``max_value``, or the choices) is what a search tries
    by default; a space file may widen it, but only within the domain: the values the builder, the
    layer or the optimizer accept (dropout < 1, a learning rate > 0, at least one filter). A value
    outside the domain is refused when the space is read, before any study folder exists.

    Args:
        low: the smallest valid value; None for no lower limit.
        high: the largest valid value; None for no upper limit.
        low_open: ``low`` itself is not valid (a learning rate must be > 0).
        high_open: ``high`` itself is not valid (a dropout rate must be < 1).

    Example:
        >>> Domain(0.0, 1.0, high_open=True).describe()
        'in [0, 1)'
        >>> Domain(1).contains(0)
        False
    """

    low: int | float | None = None
    high: int | float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: Any) -> bool:
        """Whether the number ``value`` lies in the domain."""
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and
                                                                 value == self.high))

    def describe(self) -> str:
        """The domain as a person reads it: "> 0", ">= 1", "in [0.0, 1.0)", "in [2, 5]"."""
        lo = None if self.low is None else f"{self.low:g}"
        hi = None if self.high is None else f"{self.high:g}"
        if lo is not None and hi is not None:
            return f"in {'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {lo}"
        if hi is not None:
            return f"{'<' if self.high_open else '<='} {hi}"
        return "any number"


@dataclass(frozen=True)
class Param:
    """One hyperparameter: kind, range or choices, default (the seed's value) and condition.

    Args:
        name: flat snake_case name, e.g. "depth" (scoped by the caller's ``hp.name_scope``).
        kind: "int", "float", "choice", "boolean" or "fixed".
        default: the seed's value; the value of a "fixed" param.
        min_value: lower bound (int/float), inclusive.
        max_value: upper bound (int/float), inclusive.
        step: grid step (int/float), None for any value.
        sampling: "linear" or "log".
        values: the choices (choice kind), all of one type.
        parent: name of the hyperparameter this one depends on, or None.
        parent_values: values of ``parent`` for which this one is active.
        help: one line for docs and status output.
        allowed: for closed sets (upsampling, optimizer, ...): every value an override may use;
            empty when any value of the right type is accepted.
        domain: for numbers: every value an override may use (see :class:`Domain`); every
            numeric hyperparameter of a hypermodel declares one.
    """

    name: str
    kind: Kind
    default: Any = None
    min_value: int | float | None = None
    max_value: int | float | None = None
    step: int | float | None = None
    sampling: Literal["linear", "log"] = "linear"
    values: tuple = ()
    parent: str | None = None
    parent_values: tuple = ()
    help: str = ""
    allowed: tuple = field(default=(), compare=True)
    domain: Domain | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def Int(
        cls,
        name: str,
        min_value: int,
        max_value: int,
        *,
        default: int,
        step: int | None = None,
        sampling: Literal["linear", "log"] = "linear",
        parent: str | None = None,
        parent_values: Sequence[Any] = (),
        help: str = "",
        domain: Domain | None = None,
    ) -> Param:
        """An integer in [min_value, max_value] (both inclusive); overrides stay in ``domain``."""
        return cls(name, "int", default, min_value, max_value, step, sampling, (), parent,
                   tuple(parent_values), help, domain=domain)

    @classmethod
    def Float(
        cls,
        name: str,
        min_value: float,
        max_value: float,
        *,
        default: float,
        step: float | None = None,
        sampling: Literal["linear", "log"] = "linear",
        parent: str | None = None,
        parent_values: Sequence[Any] = (),
        help: str = "",
        domain: Domain | None = None,
    ) -> Param:
        """A float in [min_value, max_value]; overrides stay in ``domain``."""
        return cls(name, "float", float(default), float(min_value), float(max_value),
                   None if step is None else float(step), sampling, (), parent,
                   tuple(parent_values), help, domain=domain)

    @classmethod
    def Choice(
        cls,
        name: str,
        values: Sequence[Any],
        *,
        default: Any,
        closed: bool = False,
        parent: str | None = None,
        parent_values: Sequence[Any] = (),
        help: str = "",
        domain: Domain | None = None,
    ) -> Param:
        """One of ``values``; ``closed=True`` when overrides may only pick among these values,
        ``domain`` (numbers) the range overrides may pick from."""
        return cls(name, "choice", default, values=tuple(values), parent=parent,
                   parent_values=tuple(parent_values), help=help,
                   allowed=tuple(values) if closed else (), domain=domain)

    @classmethod
    def Boolean(
        cls,
        name: str,
        *,
        default: bool,
        parent: str | None = None,
        parent_values: Sequence[Any] = (),
        help: str = "",
    ) -> Param:
        """True or False."""
        return cls(name, "boolean", bool(default), parent=parent,
                   parent_values=tuple(parent_values), help=help)

    @classmethod
    def Fixed(
        cls,
        name: str,
        value: Any,
        *,
        allowed: Sequence[Any] = (),
        parent: str | None = None,
        parent_values: Sequence[Any] = (),
        help: str = "",
        domain: Domain | None = None,
    ) -> Param:
        """A constant; ``allowed`` lists the values an override may use instead (closed sets),
        ``domain`` the range of numbers it may use."""
        return cls(name, "fixed", value, parent=parent, parent_values=tuple(parent_values),
                   help=help, allowed=tuple(allowed), domain=domain)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        where = f"hyperparameter {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{where}: name must be a non-empty string, got {self.name!r}")
        if self.kind not in _KINDS:
            raise ConfigError(
                f"{where}: kind must be one of {', '.join(_KINDS)}, got {self.kind!r}"
            )
        if self.sampling not in _SAMPLINGS:
            raise ConfigError(
                f"{where}: sampling must be 'linear' or 'log', got {self.sampling!r}"
            )
        if (self.parent is None) != (len(self.parent_values) == 0):
            raise ConfigError(f"{where}: parent and parent_values go together, got "
                              f"parent={self.parent!r}, parent_values={self.parent_values!r}")
        if self.parent == self.name:
            raise ConfigError(f"{where}: a hyperparameter cannot depend on itself")
        if self.kind in ("int", "float"):
            self._check_range(where)
        elif self.kind == "choice":
            self._check_choices(self.values, self.default, where)
        elif self.kind == "boolean":
            if not isinstance(self.default, bool):
                raise ConfigError(
                    f"{where}: default must be true or false, got {_fmt(self.default)}"
                )
        elif self.kind == "fixed":
            if self.allowed and self.default not in self.allowed:
                raise ConfigError(f"{where}: {_fmt(self.default)} is not one of "
                                  f"{_fmt(list(self.allowed))}")
        if self.domain is not None:
            self.check_domain(self.space_values(), where)

    def _check_range(self, where: str) -> None:
        lo, hi, step, default = self.min_value, self.max_value, self.step, self.default
        want = int if self.kind == "int" else float
        for key, value in (("min", lo), ("max", hi), ("default", default)):
            if not _is_number(value, want):
                raise ConfigError(f"{where}: {key} must be {_type_name(want)}, got {_fmt(value)}")
        if step is not None and not _is_number(step, want):
            raise ConfigError(f"{where}: step must be {_type_name(want)}, got {_fmt(step)}")
        if lo > hi:
            raise ConfigError(f"{where}: min must be <= max, got min={_fmt(lo)}, max={_fmt(hi)}; "
                              "swap them")
        if self.sampling == "log" and lo <= 0:
            raise ConfigError(f"{where}: log sampling needs min > 0, got min={_fmt(lo)}; use a "
                              "positive min or sampling: linear")
        if step is not None and step <= 0:
            raise ConfigError(f"{where}: step must be > 0, got {_fmt(step)}")
        if self.sampling == "log" and step is not None and step <= 1:
            raise ConfigError(f"{where}: with log sampling step is a factor and must be > 1, got "
                              f"{_fmt(step)}")
        if not lo <= default <= hi:
            raise ConfigError(f"{where}: default {_fmt(default)} is outside "
                              f"[{_fmt(lo)}, {_fmt(hi)}]; give a default inside the range")

    def _check_choices(self, values: tuple, default: Any, where: str) -> None:
        if not values:
            raise ConfigError(f"{where}: a choice needs at least one value, got []")
        kinds = {_value_type(v) for v in values}
        if None in kinds or (len(kinds) > 1 and not kinds <= {int, float}):
            raise ConfigError(f"{where}: choices must all be numbers, all strings or all "
                              f"true/false, got {_fmt(list(values))}")
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}: choices contain duplicates: {_fmt(list(values))}")
        if self.allowed:
            bad = [v for v in values if v not in self.allowed]
            if bad:
                raise ConfigError(f"{where}: {_fmt(bad[0])} is not a valid value; valid: "
                                  f"{_fmt(list(self.allowed))}")
        if default not in values:
            raise ConfigError(f"{where}: default {_fmt(default)} is not one of the choices "
                              f"{_fmt(list(values))}")

    # ------------------------------------------------------------------ API
    def space_values(self) -> list[tuple[str, Any]]:
        """The values that bound this hyperparameter's space, each with a label for messages:
        a range's min, max and default, every choice, or the fixed value."""
        if self.kind in ("int", "float"):
            return [("min ", self.min_value), ("max ", self.max_value),
                    ("default ", self.default)]
        if self.kind == "choice":
            return [("", v) for v in self.values]
        if self.kind == "fixed":
            return [("", self.default)]
        return []

    def check_domain(self, values: Sequence[tuple[str, Any]], where: str) -> None:
        """Raise ConfigError when a number of ``values`` lies outside :attr:`domain`.

        Args:
            values: (label, value) pairs, as :meth:`space_values` gives them.
            where: where the entry sits, e.g. "spaces/unet.yaml: space.dropout".
        """
        domain = self.domain
        if domain is None:
            return
        for label, value in values:
            if _value_type(value) not in (int, float) or domain.contains(value):
                continue
            what = "keep min and max inside it" if label in ("min ", "max ") else \
                "give a value inside it"
            raise ConfigError(f"{where}: {label}{_fmt(value)} is out of range: {self.name} must "
                              f"be {domain.describe()}; {what}")

    @property
    def value_type(self) -> type:
        """The Python type of this hyperparameter's values (int, float, str or bool)."""
        if self.kind == "int":
            return int
        if self.kind == "float":
            return float
        if self.kind == "boolean":
            return bool
        if self.kind == "choice":
            types = {_value_type(v) for v in self.values}
            return float if types == {int, float} else types.pop()
        if self.allowed:
            return _value_type(self.allowed[0]) or type(self.default)
        return _value_type(self.default) or type(self.default)

    def declare(self, hp: Any) -> Any:
        """Declare this hyperparameter on ``hp`` and return its value (None when inactive).

        Args:
            hp: a ``keras_tuner.HyperParameters`` (or a subclass, such as segsearch's Optuna
                adapter). The parent, when there is one, must already be declared on ``hp``.

        Example:
            >>> import keras_tuner
            >>> hp = keras_tuner.HyperParameters()
            >>> Param.Choice("optimizer", ["adam", "sgd"], default="adam").declare(hp)
            'adam'
            >>> Param.Float("momentum", 0.0, 0.99, default=0.9, parent="optimizer",
            ...             parent_values=["sgd"]).declare(hp) is None
            True
        """
        if self.parent is None:
            return self._declare(hp)
        with hp.conditional_scope(self.parent, list(self.parent_values)):
            return self._declare(hp)

    def _declare(self, hp: Any) -> Any:
        if self.kind == "int":
            return hp.Int(self.name, self.min_value, self.max_value, step=self.step,
                          sampling=self.sampling, default=self.default)
        if self.kind == "float":
            return hp.Float(self.name, self.min_value, self.max_value, step=self.step,
                            sampling=self.sampling, default=self.default)
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.values), default=self.default)
        if self.kind == "boolean":
            return hp.Boolean(self.name, default=self.default)
        return hp.Fixed(self.name, self.default)

    def is_active(self, values: Mapping[str, Any]) -> bool:
        """Whether this hyperparameter is active given the values of the others (by flat name)."""
        return self.parent is None or (
            self.parent in values and values[self.parent] in self.parent_values
        )

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this hyperparameter's space."""
        if self.kind == "fixed":
            return value == self.default and type(value) is type(self.default)
        if self.kind == "boolean":
            return isinstance(value, bool)
        if self.kind == "choice":
            return value in self.values and _value_type(value) is not None and (
                _value_type(value) is not bool or self.value_type is bool
            )
        want = int if self.kind == "int" else float
        return _is_number(value, want) and self.min_value <= value <= self.max_value

    def override(self, entry: Any, where: str) -> Param:
        """Return this spec narrowed, widened or fixed by a YAML ``space:`` entry.

        A scalar fixes the value; a list gives the choices; a mapping gives ``min``/``max``
        (aliases ``low``/``high``), ``step``, ``sampling`` and ``default`` for a numeric range,
        ``values`` (+ ``default``) for other choices, or ``fixed``. Values keep their type (a
        number for a numeric hyperparameter, one of the listed words for a closed set such as
        ``upsampling``); an entry that does not give a default keeps the seed's default when it is
        still inside the new space, else takes the nearest value.

        Args:
            entry: the parsed YAML value.
            where: where the entry sits, for messages, e.g. "spaces/unet.yaml: space.depth".

        Raises:
            ConfigError: the entry's shape or values are wrong; the message names ``where``, what
                was received and the fix.

        Example:
            >>> p = Param.Int("depth", 2, 5, default=4)
            >>> p.override(3, "space.depth").kind
            'fixed'
            >>> p.override([2, 3], "space.depth").values
            (2, 3)
        """
        if isinstance(entry, Mapping):
            return self._override_mapping(dict(entry), where)
        if isinstance(entry, (list, tuple)):
            return self._override_choices(list(entry), None, where)
        return self._override_fixed(entry, where)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON friendly: lists, no tuples) describing this hyperparameter."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "default": self.default}
        if self.kind in ("int", "float"):
            out.update(min_value=self.min_value, max_value=self.max_value, step=self.step,
                       sampling=self.sampling)
        elif self.kind == "choice":
            out["values"] = list(self.values)
        elif self.kind == "boolean":
            out["values"] = [False, True]
        if self.parent is not None:
            out["parent"] = self.parent
            out["parent_values"] = list(self.parent_values)
        if self.help:
            out["help"] = self.help
        return out

    def describe(self) -> str:
        """A short human-readable form of the space, e.g. "int 2..5" or "choice adam|sgd"."""
        if self.kind in ("int", "float"):
            text = f"{self.kind} {_fmt(self.min_value)}..{_fmt(self.max_value)}"
            if self.step is not None:
                text += f" step {_fmt(self.step)}"
            if self.sampling == "log":
                text += " (log)"
            return text
        if self.kind == "choice":
            return "choice " + " / ".join(str(_fmt(v)).strip("'") for v in self.values)
        if self.kind == "boolean":
            return "boolean"
        return f"fixed {_fmt(self.default)}"

    # ------------------------------------------------------------------ override helpers
    def _coerce(self, value: Any, want: type, where: str, what: str = "value") -> Any:
        """Convert ``value`` to ``want`` (YAML gives "1e-4" as a string), or raise ConfigError."""
        if want is float:
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    pass
            if _is_number(value, float):
                return float(value)
        elif want is int:
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if _is_number(value, int):
                return value
        elif want is bool:
            if isinstance(value, bool):
                return value
        elif want is str:
            if isinstance(value, str):
                return value
        hint = ""
        if self.allowed:
            hint = f"; valid: {_fmt(list(self.allowed))}"
        raise ConfigError(f"{where}: {what} must be {_type_name(want)}, got {_fmt(value)}{hint}")

    def _check_allowed(self, value: Any, where: str) -> None:
        if self.allowed and value not in self.allowed:
            guess = closest(str(value), [str(v) for v in self.allowed])
            hint = f"; did you mean {guess!r}?" if guess else ""
            raise ConfigError(f"{where}: {_fmt(value)} is not a valid value{hint} Valid: "
                              f"{_fmt(list(self.allowed))}")

    def _override_fixed(self, value: Any, where: str) -> Param:
        value = self._coerce(value, self.value_type, where)
        self._check_allowed(value, where)
        self.check_domain([("", value)], where)
        return replace(self, kind="fixed", default=value, min_value=None, max_value=None,
                       step=None, sampling="linear", values=(),
                       allowed=self.allowed or self._implicit_allowed())

    def _implicit_allowed(self) -> tuple:
        """Boolean params stay closed to True/False once fixed."""
        return (False, True) if self.value_type is bool else ()

    def _override_choices(self, values: list, default: Any, where: str) -> Param:
        if not values:
            raise ConfigError(f"{where}: an empty list leaves nothing to choose; give at least one "
                              "value, or remove the entry to keep the default space")
        want = self.value_type
        values = [self._coerce(v, want, where) for v in values]
        for v in values:
            self._check_allowed(v, where)
        self.check_domain([("", v) for v in values], where)
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}: the list has duplicates: {_fmt(values)}; list each value "
                              "once")
        if default is None:
            default = self.default if self.default in values else values[0]
        else:
            default = self._coerce(default, want, where, "default")
            if default not in values:
                raise ConfigError(f"{where}: default {_fmt(default)} is not one of the values "
                                  f"{_fmt(values)}; pick one of them")
        if len(values) == 1:
            return replace(self, kind="fixed", default=values[0], min_value=None, max_value=None,
                           step=None, sampling="linear", values=(),
                           allowed=self.allowed or self._implicit_allowed())
        if want is bool:
            return replace(self, kind="boolean", default=default, values=(), min_value=None,
                           max_value=None, step=None, sampling="linear", allowed=())
        return replace(self, kind="choice", default=default, values=tuple(values), min_value=None,
                       max_value=None, step=None, sampling="linear")

    def _override_mapping(self, entry: dict, where: str) -> Param:
        unknown = [k for k in entry if k not in _ENTRY_KEYS]
        if unknown:
            key = unknown[0]
            guess = closest(str(key), _ENTRY_KEYS)
            hint = f"; did you mean {guess!r}?" if guess else ";"
            raise ConfigError(f"{where}: unknown key {key!r}{hint} Valid keys: min, max, step, "
                              "sampling, default (a range), values (+ default) or fixed")
        for a, b in (("min", "low"), ("max", "high")):
            if a in entry and b in entry:
                raise ConfigError(f"{where}: give either {a!r} or {b!r} (the same thing), not both")
            if b in entry:
                entry[a] = entry.pop(b)
        if "fixed" in entry:
            if len(entry) > 1:
                raise ConfigError(f"{where}: 'fixed' stands alone, got also "
                                  f"{', '.join(sorted(k for k in entry if k != 'fixed'))}")
            return self._override_fixed(entry["fixed"], where)
        range_keys = [k for k in ("min", "max", "step", "sampling") if k in entry]
        if "values" in entry:
            if range_keys:
                raise ConfigError(f"{where}: give either values or a range (min/max), got both "
                                  f"values and {', '.join(range_keys)}")
            values = entry["values"]
            if not isinstance(values, (list, tuple)):
                values = [values]
            return self._override_choices(list(values), entry.get("default"), where)
        if not range_keys:
            if "default" not in entry:
                raise ConfigError(f"{where}: an empty mapping changes nothing; give min/max, "
                                  "values, fixed or default")
            return self._override_default(entry["default"], where)
        return self._override_range(entry, where)

    def _override_default(self, default: Any, where: str) -> Param:
        default = self._coerce(default, self.value_type, where, "default")
        if self.kind == "fixed":
            return self._override_fixed(default, where)
        if not self.contains(default):
            raise ConfigError(f"{where}: default {_fmt(default)} is outside the space "
                              f"({self.describe()}); give a default inside it or change the range")
        return replace(self, default=default)

    def _override_range(self, entry: dict, where: str) -> Param:
        want = self.value_type
        if want not in (int, float):
            raise ConfigError(f"{where}: min/max/step/sampling only apply to numbers, but "
                              f"{self.name!r} takes {_type_name(want)} values; give a list of "
                              "values instead")
        kind: Kind = "int" if want is int else "float"
        base_lo, base_hi = self._numeric_bounds()
        lo = self._coerce(entry.get("min", base_lo), want, where, "min")
        hi = self._coerce(entry.get("max", base_hi), want, where, "max")
        if "min" not in entry and lo > hi:
            lo = hi
        if "max" not in entry and hi < lo:
            hi = lo
        if lo > hi:
            raise ConfigError(f"{where}: min must be <= max, got min={_fmt(lo)}, max={_fmt(hi)}; "
                              "swap them")
        self.check_domain([("min ", lo), ("max ", hi)], where)
        sampling = entry.get("sampling", self.sampling if self.kind in ("int", "float") else
                             "linear")
        if sampling not in _SAMPLINGS:
            raise ConfigError(f"{where}: sampling must be 'linear' or 'log', got {_fmt(sampling)}")
        if sampling == "log" and lo <= 0:
            raise ConfigError(f"{where}: log sampling needs min > 0, got min={_fmt(lo)}; use a "
                              "positive min or sampling: linear")
        step = entry.get("step", self.step if self.kind in ("int", "float") else None)
        if step is not None:
            step = self._coerce(step, want, where, "step")
            if step <= 0:
                raise ConfigError(f"{where}: step must be > 0, got {_fmt(step)}")
            if sampling == "log" and step <= 1:
                raise ConfigError(f"{where}: with log sampling step is a factor and must be > 1, "
                                  f"got {_fmt(step)}")
        if "default" in entry:
            default = self._coerce(entry["default"], want, where, "default")
            if not lo <= default <= hi:
                raise ConfigError(f"{where}: default {_fmt(default)} is outside [{_fmt(lo)}, "
                                  f"{_fmt(hi)}]; give a default inside the range")
        else:
            default = min(max(self._coerce(self.default, want, where, "default"), lo), hi)
        if lo == hi:
            return replace(self, kind="fixed", default=lo, min_value=None, max_value=None,
                           step=None, sampling="linear", values=(), allowed=())
        return replace(self, kind=kind, default=default, min_value=lo, max_value=hi, step=step,
                       sampling=sampling, values=(), allowed=())

    def _numeric_bounds(self) -> tuple[Any, Any]:
        if self.kind in ("int", "float"):
            return self.min_value, self.max_value
        if self.kind == "choice":
            return min(self.values), max(self.values)
        return self.default, self.default


def _value_type(value: Any) -> type | None:
    """int, float, str or bool for a value a hyperparameter may take; None otherwise."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    return None


def _is_number(value: Any, want: type) -> bool:
    if isinstance(value, bool):
        return False
    if want is int:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def is_active(param: Param, values: Mapping[str, Any]) -> bool:
    """Whether ``param`` is active given the values of the hyperparameters declared before it."""
    return param.is_active(values)


def active_defaults(params: Sequence[Param]) -> dict[str, Any]:
    """The default values of the params active when every param is at its default.

    Args:
        params: specs in declaration order (parents before children).
    """
    values: dict[str, Any] = {}
    for p in params:
        if p.is_active(values):
            values[p.name] = p.default
    return values
