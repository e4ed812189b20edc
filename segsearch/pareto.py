"""The Pareto front of a study with several objectives, and the rule that picks the trial to export.

A complete trial is on the front when no other complete trial is at least as good in every
objective and better in one (Optuna's ``study.best_trials`` by the same values: the objectives each
trial told its engine, :attr:`segsearch.records.TrialRecord.objectives`). ``export.pick`` chooses
among the front:

- ``best_quality`` (the default): the best first objective (the quality metric);
- ``knee``: the balanced trial. Each objective is scaled to [0, 1] over the front, 0 at the front's
  best value and 1 at its worst (a minimised cost and a maximised metric alike); the knee is the
  trial closest (Euclidean) to the utopia point, where every scaled objective is 0. Ties go to the
  better quality, then the lower trial number;
- limits ``{max_latency_ms: 20}``, ``{max_params: N}``, ``{max_flops: N}`` (one or several): the
  best quality among the trials within every limit. A trial within the limits that is not on the
  front is dominated by one on it that is within them too, so the front holds the answer; when no
  trial meets the limits a :class:`~segsearch.errors.StudyError` names the cheapest trial's figure.

This module imports only :mod:`segsearch.records` and :mod:`segsearch.errors`: ``segsearch status``
uses it without TensorFlow.

Example:
    >>> from segsearch.records import Objective, TrialRecord
    >>> objective = Objective(("val_dice", "latency_ms"), ("maximize", "minimize"))
    >>> trials = [TrialRecord(n, "complete", value=d, objectives=[d, ms])
    ...           for n, (d, ms) in enumerate([(0.9, 30.0), (0.8, 10.0), (0.7, 12.0)])]
    >>> [t.number for t in pareto_front(trials, objective)]
    [0, 1]
    >>> pick(trials, objective, {"max_latency_ms": 20}).trial.number
    1
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segsearch.errors import StudyError
from segsearch.records import Objective, TrialRecord, sort_best

__all__ = ["PICK_RULES", "PICK_LIMITS", "Pick", "PickError", "objective_values", "dominates",
           "pareto_front", "knee", "pick", "rule_text"]

#: the named rules of ``export.pick``.
PICK_RULES: tuple[str, ...] = ("best_quality", "knee")
#: the limits ``export.pick`` may set, and the cost objective each bounds.
PICK_LIMITS: dict[str, str] = {"max_params": "params", "max_flops": "flops",
                               "max_latency_ms": "latency_ms"}


class PickError(StudyError):
    """``export.pick`` cannot pick: no complete trial meets its limits (or has the objectives)."""


@dataclass(frozen=True)
class Pick:
    """The trial ``export.pick`` chose.

    Args:
        trial: its record.
        rule: the rule as a plain value ("best_quality", "knee" or the limits mapping).
        values: its objectives by name.
        front: the numbers of the trials on the Pareto front, best quality first.
    """

    trial: TrialRecord
    rule: Any
    values: dict[str, float] = field(default_factory=dict)
    front: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """What best/metrics.yaml records: the rule, the trial, its objectives, the front."""
        return {"rule": self.rule, "means": rule_text(self.rule), "trial": self.trial.number,
                "objectives": dict(self.values), "front": list(self.front)}


def objective_values(record: TrialRecord, objective: Objective) -> tuple[float, ...] | None:
    """A complete trial's objectives in the objective's order; None when one is missing or not
    finite (such a trial is on no front).

    Args:
        record: the trial.
        objective: the study's objective(s).
    """
    if record.state != "complete":
        return None
    values = record.objectives
    if values is None and len(objective.names) == 1:
        values = [record.value]
    if values is None or len(values) != len(objective.names):
        return None
    out = []
    for value in values:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                not math.isfinite(value):
            return None
        out.append(float(value))
    return tuple(out)


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and better in one.

    Args:
        a: objective values.
        b: objective values.
        directions: "maximize" or "minimize", one per value.
    """
    better = False
    for x, y, direction in zip(a, b, directions):
        if direction == "maximize":
            x, y = -x, -y
        if x > y:
            return False
        better = better or x < y
    return better


def pareto_front(records: Iterable[TrialRecord], objective: Objective) -> list[TrialRecord]:
    """The non-dominated complete trials, best quality (first objective) first, then by number.

    Args:
        records: the study's trials (only complete ones with every objective count).
        objective: the study's objective(s).
    """
    points = [(r, v) for r in records if (v := objective_values(r, objective)) is not None]
    front = [(r, v) for r, v in points
             if not any(dominates(w, v, objective.directions) for _, w in points)]
    sign = -1.0 if objective.direction == "maximize" else 1.0
    front.sort(key=lambda rv: (sign * rv[1][0], rv[0].number))
    return [r for r, _ in front]


def knee(front: Sequence[TrialRecord], objective: Objective) -> TrialRecord:
    """The front's trial closest to the utopia point once each objective is scaled to [0, 1] over
    the front (0: the front's best, 1: its worst); ties to the better quality, then the lower
    number.

    Args:
        front: the Pareto front, as :func:`pareto_front` orders it (best quality first).
        objective: the study's objective(s).

    Raises:
        ValueError: the front is empty.
    """
    if not front:
        raise ValueError("knee: the Pareto front is empty")
    points = [objective_values(r, objective) or () for r in front]
    scaled: list[list[float]] = [[] for _ in front]
    for i, direction in enumerate(objective.directions):
        column = [p[i] for p in points]
        low, high = min(column), max(column)
        span = high - low
        for row, value in zip(scaled, column):
            if span <= 0:
                row.append(0.0)
            else:
                gap = (high - value) if direction == "maximize" else (value - low)
                row.append(gap / span)
    distances = [math.sqrt(sum(x * x for x in row)) for row in scaled]
    best = min(range(len(front)), key=lambda i: (round(distances[i], 12), i))
    return front[best]


def rule_text(rule: Any) -> str:
    """What a pick rule means, in words (for status and best/metrics.yaml).

    Args:
        rule: "best_quality", "knee" or a limits mapping such as {"max_latency_ms": 20}.
    """
    if rule == "best_quality":
        return "the best quality (first objective) on the Pareto front"
    if rule == "knee":
        return ("the knee: the front's trial closest to the utopia point, each objective scaled "
                "to [0, 1] over the front")
    if isinstance(rule, Mapping):
        limits = ", ".join(f"{PICK_LIMITS.get(k, k)} <= {v:g}" for k, v in rule.items())
        return f"the best quality among the trials with {limits}"
    return str(rule)


def pick(records: Sequence[TrialRecord], objective: Objective, rule: Any = "best_quality",
         *, where: str = "export.pick") -> Pick:
    """The complete trial ``rule`` picks (see the module docstring).

    Args:
        records: the study's trials.
        objective: the study's objective(s).
        rule: "best_quality", "knee", or limits such as {"max_latency_ms": 20}.
        where: how messages name the rule's origin.

    Raises:
        StudyError: no trial completed, or none meets the limits (the message names the cheapest
            trial's figure of each limit).
    """
    records = list(records)
    front = pareto_front(records, objective)
    numbers = tuple(r.number for r in front)
    chosen: TrialRecord | None = None
    if not front:
        complete = [r for r in records if r.state == "complete" and r.value is not None]
        ranked = sort_best(complete, objective.direction)
        if rule != "best_quality" or not ranked:
            raise PickError(f"{where}: no complete trial has every objective "
                             f"({', '.join(objective.names)}); run the search first")
        chosen = ranked[0]
    elif rule == "best_quality":
        chosen = front[0]
    elif rule == "knee":
        chosen = knee(front, objective)
    elif isinstance(rule, Mapping):
        chosen = _within(front, records, objective, rule, where)
    else:
        raise ValueError(f"{where}: unknown rule {rule!r}; use one of {', '.join(PICK_RULES)} "
                         f"or limits such as {{max_latency_ms: 20}}")
    values = objective_values(chosen, objective)
    named = dict(zip(objective.names, values)) if values is not None else {
        objective.name: chosen.value}
    return Pick(trial=chosen, rule=dict(rule) if isinstance(rule, Mapping) else rule,
                values=named, front=numbers)


def _within(front: Sequence[TrialRecord], records: Sequence[TrialRecord], objective: Objective,
            limits: Mapping[str, Any], where: str) -> TrialRecord:
    """The best-quality front trial within every limit, or a StudyError naming the cheapest."""
    index = {}
    for key in limits:
        cost = PICK_LIMITS.get(key)
        if cost is None or cost not in objective.names:
            raise PickError(f"{where}: {key} needs {cost or 'a cost'} among search.objective "
                             f"({', '.join(objective.names)})")
        index[key] = objective.names.index(cost)

    def fits(record: TrialRecord) -> bool:
        values = objective_values(record, objective) or ()
        return bool(values) and all(values[i] <= float(limits[k]) for k, i in index.items())

    for record in front:  # best quality first
        if fits(record):
            return record
    scored = [(r, v) for r in records if (v := objective_values(r, objective)) is not None]
    figures = []
    for i in index.values():
        cheapest, values = min(scored, key=lambda rv: (rv[1][i], rv[0].number))
        figures.append(f"the lowest {objective.names[i]} is trial {cheapest.number}'s "
                       f"{values[i]:.4g}")
    wanted = " and ".join(f"{PICK_LIMITS[k]} <= {float(v):g}" for k, v in limits.items())
    raise PickError(f"{where}: no complete trial has {wanted} ({'; '.join(figures)}); raise "
                     "the limit, or search smaller networks")
