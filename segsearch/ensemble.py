"""One Keras model that averages the probabilities of several trained models (``export.ensemble``).

:func:`average_model` puts the members, as sub-models, behind one input and an ``Average`` layer:
plain Keras layers, no ``Lambda``, so the exported ``best/model.keras`` reloads with
``keras.models.load_model(path, safe_mode=True)`` and no custom objects, and ``segsearch
predict`` runs it as any exported model. :class:`Ensemble` is what the export gets: the members
(which trial, which fold, their checkpoint), the model built from them, and each member's score
on the export's validation images beside the ensemble's.

Which members (the winner's fold models, or the best configurations) is decided by
:func:`segsearch.folds.ensemble_for`.

Example:
    >>> ensemble = average_model([keras.saving.load_model(p) for p in paths])
    >>> ensemble.predict(images).shape   # the members' average probabilities
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segsearch.errors import StudyError

__all__ = ["Member", "Ensemble", "average_model"]


@dataclass
class Member:
    """One member of an ensemble.

    Args:
        trial: its trial number.
        fold: the fold it trained on held out (``export.ensemble: folds``), else None.
        path: its checkpoint.
        params: its hyperparameter values.
        architecture: its architecture.
        own_value: the objective it was chosen by: its trial's value, or its fold's (held out).
    """

    trial: int
    fold: int | None
    path: Path
    params: dict[str, Any]
    architecture: str | None = None
    own_value: float | None = None

    def describe(self, study_dir: Path | None = None) -> dict[str, Any]:
        """The member for ``best/hyperparameters.yaml``."""
        path = self.path
        if study_dir is not None and path.resolve().is_relative_to(Path(study_dir).resolve()):
            path = path.resolve().relative_to(Path(study_dir).resolve())
        out: dict[str, Any] = {"trial": self.trial}
        if self.fold is not None:
            out["fold"] = self.fold
        out.update(architecture=self.architecture, model=str(path), params=dict(self.params))
        return out


@dataclass
class Ensemble:
    """The members an export averages, and the model made of them.

    Args:
        kind: "folds" or "top_k".
        members: the members, the winner first.
        missing: members asked for whose model is gone (said in the report).
        note: a caveat about the validation figures.
    """

    kind: str
    members: list[Member]
    missing: list[str] = field(default_factory=list)
    note: str | None = None
    _models: list[Any] = field(default_factory=list, repr=False)

    def build(self, first: Any) -> Any:
        """The averaging model, compiled like ``first`` (the first member, already loaded).

        Args:
            first: the first member's loaded (compiled) model.

        Raises:
            StudyError: the members disagree on the input size, channels or classes.
        """
        import keras

        self._models = [first] + [keras.saving.load_model(m.path) for m in self.members[1:]]
        return average_model(self._models, labels=[m.path for m in self.members])

    def out_of_fold(self, first_val: Any, fold_validation: Callable[[int], Any]
                    ) -> list[tuple[Any, Any]] | None:
        """(member, its held-out fold's part) for every member of a "folds" ensemble after
        :meth:`build`: fold 0's is ``first_val``, the others' ``fold_validation(k)``; None when
        a member has no fold."""
        if any(m.fold is None for m in self.members) or len(self._models) != len(self.members):
            return None
        return [(model, first_val if member.fold == 0 else fold_validation(member.fold))
                for member, model in zip(self.members, self._models)]

    def report(self, measure: Callable[[Any], dict[str, float]], objective: str,
               value: float | None, direction: str = "maximize") -> dict[str, Any]:
        """The ensemble's objective beside each member's on the same validation images, and a
        ``warning`` when a member alone scores better than the ensemble.

        Args:
            measure: scores one model on the export's validation images (``val_*`` metrics).
            objective: the objective's name.
            value: the ensemble's objective there.
            direction: the objective's direction.
        """
        members = []
        for member, model in zip(self.members, self._models):
            scores = measure(model)
            row: dict[str, Any] = {"trial": member.trial}
            if member.fold is not None:
                row["fold"] = member.fold
            row.update(value=scores.get(objective), own_value=member.own_value,
                       validation=scores)
            members.append(row)
        out: dict[str, Any] = {"kind": self.kind, "size": len(self.members), "value": value,
                               "members": members}
        if self.missing:
            out["missing"] = list(self.missing)
        if self.note:
            out["note"] = self.note
        scored = [m for m in members if m.get("value") is not None]
        if value is not None and scored:
            sign = 1.0 if direction == "maximize" else -1.0
            top = max(scored, key=lambda m: sign * float(m["value"]))
            if sign * float(top["value"]) > sign * float(value):
                which = f"trial #{top['trial']}" + (f" fold {top['fold']}" if "fold" in top
                                                    else "")
                out["warning"] = (f"the ensemble's {objective} {value:.4f} is worse than its "
                                  f"member {which} alone ({float(top['value']):.4f}) on these "
                                  "validation images; set export.ensemble: none to export the "
                                  "best model alone")
        return out

    def describe(self, study_dir: Path | None = None) -> dict[str, Any]:
        """The ensemble for ``best/hyperparameters.yaml``: its kind and members."""
        out: dict[str, Any] = {"kind": self.kind,
                               "members": [m.describe(study_dir) for m in self.members]}
        if self.missing:
            out["missing"] = list(self.missing)
        return out


def average_model(models: Sequence[Any], *, labels: Sequence[Any] | None = None,
                  name: str = "ensemble") -> Any:
    """A functional model that feeds one input to every member and averages their outputs.

    Each member is rebuilt from its configuration under the name ``member_<i>`` (with its
    weights), so members of the same architecture do not clash; the result is compiled with the
    first member's compile configuration when it has one (the export evaluates it).

    Args:
        models: the members (Keras models with one input and one probability output).
        labels: what to call each member in an error (its checkpoint).
        name: the model's name.

    Raises:
        StudyError: fewer than two members, or members with different input or output shapes.
    """
    import keras

    if len(models) < 2:
        raise StudyError(f"an ensemble needs at least 2 members, got {len(models)}")
    labels = list(labels) if labels is not None else [f"member {i}" for i in range(len(models))]
    shape_in, shape_out = tuple(models[0].input_shape), tuple(models[0].output_shape)
    for model, label in zip(models[1:], labels[1:]):
        if tuple(model.input_shape) != shape_in or tuple(model.output_shape) != shape_out:
            raise StudyError(
                f"export.ensemble: {label} takes {tuple(model.input_shape)} and gives "
                f"{tuple(model.output_shape)}, but {labels[0]} takes {shape_in} and gives "
                f"{shape_out}: the members must share the input size, channels and classes; "
                "use export.ensemble: none"
            )
    inputs = keras.Input(shape=shape_in[1:], name="image")
    outputs = []
    for index, model in enumerate(models):
        config = dict(model.get_config())
        config["name"] = f"member_{index}"
        clone = type(model).from_config(config)
        clone.set_weights(model.get_weights())
        outputs.append(clone(inputs))
    averaged = keras.layers.Average(name="average", dtype="float32")(outputs)
    ensemble = keras.Model(inputs, averaged, name=name)
    compiled = getattr(models[0], "get_compile_config", lambda: None)()
    if compiled:
        ensemble.compile_from_config(compiled)
    return ensemble
