"""Errors a person can act on.

Every error segsearch raises on purpose derives from :class:`SegsearchError` and from the builtin it
refines, so ``except ValueError`` keeps working for code that does not know segsearch. A message says
what is wrong, what was received, and how to fix it, and names the file and key where there is one.
The CLI prints the message of a ``SegsearchError`` and exits with status 2; a traceback means a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "SegsearchError",
    "ConfigError",
    "DataError",
    "InfeasibleError",
    "WeightsError",
    "StudyError",
    "closest",
    "unknown_name",
]


class SegsearchError(Exception):
    """Base class of every error segsearch raises on purpose."""


class ConfigError(SegsearchError, ValueError):
    """A space file, option, key or argument is wrong (unknown name, wrong type, impossible range)."""


class DataError(SegsearchError, ValueError):
    """The images or masks cannot be used as they are (missing pairs, unreadable files, bad values)."""


class InfeasibleError(SegsearchError, ValueError):
    """A configuration cannot work at this input size.

    Raised while a model is built, before any training, so that a search engine can record the trial
    as infeasible and move on instead of crashing.
    """


class WeightsError(SegsearchError, RuntimeError):
    """Backbone weights cannot be loaded (offline without a cached file, a missing or wrong file)."""


class StudyError(SegsearchError, RuntimeError):
    """A study folder cannot be used as asked (changed space, missing files, nothing to export)."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """Return the choice most similar to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name(what: str, name: object, choices: Iterable[str], where: str = "") -> str:
    """Build the message for an unknown key: the sorted valid keys and the closest match.

    Args:
        what: what kind of name it is, e.g. "architecture" or "hyperparameter".
        name: the name that was received.
        choices: the valid names.
        where: an optional location prefix such as "spaces/unet.yaml: space".

    Example:
        >>> unknown_name("architecture", "resnet", ["unet", "resunet"])
        "unknown architecture 'resnet'; did you mean 'resunet'? Valid: resunet, unet"
    """
    choices = sorted(str(c) for c in choices)
    guess = closest(str(name), choices)
    hint = f"; did you mean {guess!r}?" if guess else ";"
    prefix = f"{where}: " if where else ""
    return f"{prefix}unknown {what} {name!r}{hint} Valid: {', '.join(choices)}"
