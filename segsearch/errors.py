"""Errors a person can act on.

Every error segsearch raises on purpose derives from :class:`SegsearchError` and from the builtin it
refines, so ``except ValueError`` keeps working for code that does not know segsearch. A message
says what is wrong, what was received, and how to fix it, and names the file and key where there is
one.
The CLI prints the message of a ``SegsearchError`` and exits with status 2; a traceback means a bug.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "SegsearchError",
    "ConfigError",
    "DataError",
    "InfeasibleError",
    "WeightsError",
    "StudyError",
    "CompatError",
    "library_moved",
    "private_attr",
    "closest",
    "similar_path",
    "yaml_text",
    "first_names",
    "unknown_name",
    "os_error_message",
    "DISK_ERRNOS",
]


class SegsearchError(Exception):
    """Base class of every error segsearch raises on purpose."""


class ConfigError(SegsearchError, ValueError):
    """A space file, option, key or argument is wrong.

    For example an unknown name, a wrong type or an impossible range.
    """


class DataError(SegsearchError, ValueError):
    """The images or masks cannot be used as they are.

    For example missing pairs, unreadable files or bad values.
    """


class InfeasibleError(SegsearchError, ValueError):
    """A configuration cannot work at this input size.

    Raised while a model is built, before any training, so that a search engine can record the trial
    as infeasible and move on instead of crashing.
    """


class WeightsError(SegsearchError, RuntimeError):
    """Backbone weights cannot be loaded.

    For example offline without a cached file, or a missing or wrong file.
    """


class StudyError(SegsearchError, RuntimeError):
    """A study folder cannot be used as asked (changed space, missing files, nothing to export)."""


class CompatError(SegsearchError, RuntimeError):
    """A library segsearch depends on no longer has a private name segsearch uses (it moved in a
    newer release): the message names the library, its version, the version checked and the fix.
    Only the compat modules raise it (``segsearch/engines/_optuna_compat.py``,
    ``segsearch/engines/_keras_tuner_compat.py``, ``segsearch/_keras_compat.py``)."""


def library_moved(library: str, name: str, use: str, checked: str, where: str) -> CompatError:
    """The error for a private name of ``library`` that segsearch uses and the installed release
    no longer has (only the compat modules call this).

    Args:
        library: the distribution, e.g. "optuna" or "keras-tuner".
        name: the private name, e.g. "optuna.storages.RDBStorage._get_stale_trial_ids".
        use: what segsearch uses it for ("tell which running trials have no heartbeat").
        checked: the release segsearch was checked with, e.g. "5.0.0".
        where: the compat module to adapt, e.g. "segsearch/engines/_optuna_compat.py".
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version(library)
    except PackageNotFoundError:
        installed = "(version unknown)"
    return CompatError(f"{library} {installed} has no {name}, which segsearch uses to {use} "
                       f"(checked with {library} {checked}); fix: pip install "
                       f"'{library}=={checked}', or adapt {where} to {library} {installed}")


def private_attr(obj: object, attr: str, library: str, name: str, use: str, checked: str,
                 where: str) -> Any:
    """``getattr(obj, attr)`` for a private name of ``library``, or :func:`library_moved`'s error
    when the installed release no longer has it (arguments as there)."""
    try:
        return getattr(obj, attr)
    except AttributeError:
        raise library_moved(library, name, use, checked, where) from None


def yaml_text(value: Any) -> str:
    """A received value for a message, written the way a YAML file writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, os.PathLike):
        return repr(os.fspath(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {yaml_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def closest(name: str, choices: Iterable[str]) -> str | None:
    """Return the choice most similar to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return matches[0] if matches else None


def similar_path(path: str | os.PathLike[str]) -> str:
    """ " (did you mean PATH?)" naming the entry beside a missing ``path`` most like it, or ""."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.normpath(path)) or "."
    try:
        names = [n for n in os.listdir(parent) if not n.startswith(".")]
    except OSError:
        return ""
    guess = closest(os.path.basename(os.path.normpath(path)), names)
    return f" (did you mean {os.path.join(os.path.dirname(path), guess)}?)" if guess else ""


def first_names(names: Iterable[object], n: int = 5) -> str:
    """'a, b, c and 7 more' for messages."""
    names = list(names)
    shown = ", ".join(str(v) for v in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


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


#: errno values that mean "the study folder cannot be written": no trial would escape them.
DISK_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM",
                                      "EIO")
    if hasattr(errno, name)
)

_OS_FIXES = {
    "ENOSPC": "the disk is full: free some space (or use --study-dir on another disk) and run the "
              "same command again; finished trials are kept",
    "EDQUOT": "the disk quota is used up: free some space (or use --study-dir on another disk) "
              "and run the same command again; finished trials are kept",
    "EFBIG": "the file is larger than this process may write (ulimit -f) or the file system "
             "allows: raise the limit (or use --study-dir on another disk) and run the same "
             "command again",
    "EROFS": "the file system is read-only: use --study-dir on a writable disk, or remount it",
    "EACCES": "check the owner and permissions of the file and its folder, or use --study-dir "
              "on a folder you may write",
    "EPERM": "check the owner and permissions of the file and its folder, or use --study-dir "
             "on a folder you may write",
    "ELOOP": "a symbolic link in the path points (through others) back to itself: fix or remove "
             "the link, or give another path",
    "ENOENT": "check the path",
    "ENOTDIR": "a part of the path is a file, not a folder: check the path",
    "EISDIR": "it is a folder, not a file: check the path",
    "EEXIST": "something is in the way there: remove it or give another path",
    "ENAMETOOLONG": "use a shorter path",
    "EIO": "the disk or network file system failed to read or write: check it, then run the "
           "same command again",
    "EMFILE": "too many open files: raise the limit (ulimit -n) and run again",
    "ENOMEM": "out of memory: use a smaller data.image_size or train.batch_size",
}


def os_error_message(error: OSError, path: str | os.PathLike[str] | None = None,
                     doing: str = "") -> str:
    """One line for an OSError: the file, what the system said, and the fix.

    Args:
        error: the error (ENOSPC, EACCES, EROFS, ELOOP, ...).
        path: the file to name when the error carries none (a failed write names no file).
        doing: what segsearch was doing, e.g. "writing the checkpoint of trial 3".

    Example:
        >>> os_error_message(OSError(errno.ENOSPC, "No space left on device"), "s/study.db")
        's/study.db: No space left on device; the disk is full: free some space ...'
    """
    where = error.filename if error.filename is not None else path
    if getattr(error, "filename2", None) is not None:
        where = f"{where} -> {error.filename2}"
    what = error.strerror or str(error) or type(error).__name__
    name = errno.errorcode.get(error.errno or -1)
    fix = _OS_FIXES.get(name or "")
    text = f"{os.fspath(where)}: {what}" if where is not None else what
    if doing:
        text = f"{text} ({doing})"
    return f"{text}; {fix}" if fix else text
