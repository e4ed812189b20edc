"""Callbacks after each trial (``search.callbacks``, ``segsearch.run(..., callbacks=[...])``).

Each callback is called the way ``optuna.Study.optimize(callbacks=[...])`` calls it:
``callback(study, frozen_trial)`` once a trial has finished (complete, pruned or failed; an
infeasible configuration is a failed trial), with the study's ``optuna.Study`` and a copy of the
``FrozenTrial`` read back from the storage. So Optuna's ``MLflowCallback`` and
``WeightsAndBiasesCallback`` (``optuna-integration``) work unchanged. Only the Optuna engine has
an ``optuna.Study`` to hand over; keras-tuner studies refuse callbacks.

A space file names each callback as ``module:attr`` (``attr`` may be dotted: ``pkg.mod:Cls.x``),
and what it names decides how the callback is made, once, when the search starts:

- a class: instantiated with no arguments (``optuna_integration:MLflowCallback``, its defaults);
- a function that takes two positional arguments: it is the callback;
- a function that takes no argument: a factory, called once; it returns the callback;
- any other callable object (an instance, ``MLFLOW = MLflowCallback(metric_name="val_dice")``):
  it is the callback.

The name is imported when the configuration is loaded (a missing module or attribute is a
ConfigError naming ``search.callbacks`` and the entry); classes and factories are called only when
the search starts. A callback that raises stops the search as it stops ``optimize``: the trial it
was told about is already stored, so the study is kept and the same command resumes it; the
error names the callback, and its traceback is written to ``callback-error.txt`` in the study
folder. Once every callback has run without error again (the resumed study), that file is renamed
``callback-error.previous.txt``: it no longer describes the study's state, but is kept.

Example:
    >>> def record(study, trial):  # an MLflow-like recorder
    ...     print(study.study_name, trial.number, trial.state.name, trial.value, trial.params)
    >>> results = segsearch.run("unet", trials=3, callbacks=[record])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segsearch.errors import ConfigError, StudyError

__all__ = ["KEY", "ERROR_FILE", "SpecError", "NamedCallback", "check_spec", "load", "make",
           "resolve", "call_all"]

#: the space file's key.
KEY = "search.callbacks"
#: where the traceback of a callback that raised is written, in the study folder.
ERROR_FILE = "callback-error.txt"
#: ERROR_FILE once the callbacks run without error again
PREVIOUS_ERROR_FILE = "callback-error.previous.txt"
_FORM = ("name a callable as module:attr (e.g. optuna_integration:MLflowCallback or "
         "mypackage.tracking:record), importable where the search runs")


class SpecError(ConfigError):
    """A ConfigError about one callback entry: ``key`` and ``detail`` kept apart for the loader.

    Args:
        key: the key path (``search.callbacks``, or ``callbacks`` for the Python API).
        detail: what is wrong and the fix.
    """

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key, self.detail = key, detail


@dataclass(frozen=True)
class NamedCallback:
    """A callback ready to call, with the name messages use.

    Args:
        name: the space file's ``module:attr``, or the Python callable's qualified name.
        function: called with ``(study, frozen_trial)``.
    """

    name: str
    function: Callable[[Any, Any], Any]


def check_spec(spec: Any, key: str = KEY) -> str:
    """Check the form of one ``module:attr`` entry (nothing is imported); return it.

    Args:
        spec: the entry.
        key: the key path, for the message.

    Raises:
        ConfigError: not a string of the form ``module:attr``.
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise SpecError(key, f"{spec!r} is not of the form module:attr; {_FORM}")
    module, attr = spec.split(":")
    names = [*module.split("."), *attr.split(".")]
    if not all(part.isidentifier() for part in names):
        raise SpecError(key, f"{spec!r} is not of the form module:attr (dotted Python names); "
                             f"{_FORM}")
    return spec


def load(spec: str, key: str = KEY) -> Any:
    """Import what ``module:attr`` names and check that it can be called (it is not called).

    Args:
        spec: the entry.
        key: the key path, for the message.

    Raises:
        ConfigError: no such module or attribute, or it cannot be called.
    """
    module_name, attr = check_spec(spec, key).split(":")
    try:
        obj: Any = _import(module_name)
    except ImportError as e:
        raise SpecError(key, f"{spec!r}: cannot import module {module_name!r} ({e}); install "
                             "it or put it on PYTHONPATH, or remove the entry") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SpecError(key, f"{spec!r}: {getattr(obj, '__name__', module_name)!r} has "
                                 f"no attribute {part!r}; {_FORM}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SpecError(key, f"{spec!r} is not callable (its type: {type(obj).__name__}); name "
                             "a function of (study, trial), a class or a factory")
    return obj


def _import(module_name: str) -> Any:
    """Import a module; a module in the current folder is found too (as ``python -m`` finds it,
    and as uvicorn or gunicorn find ``module:attr``), also from the ``segsearch`` command."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        here = os.getcwd()
        top = module_name.split(".")[0]
        if e.name != top or here in sys.path or "" in sys.path:
            raise
        sys.path.insert(0, here)
        return importlib.import_module(module_name)


def make(obj: Any, name: str, key: str = KEY) -> Callable[[Any, Any], Any]:
    """The callback an imported object stands for (see the module docstring).

    Args:
        obj: what ``module:attr`` named, or a callable given in Python.
        name: its name, for messages.
        key: the key path, for the message.

    Raises:
        ConfigError: a class or factory failed or returned something that cannot be called.
    """
    if inspect.isclass(obj):
        made, what = _call_maker(obj, name, key, "instantiating"), "the instance"
    elif _takes_two(obj):
        return obj
    elif inspect.isroutine(obj):
        made, what = _call_maker(obj, name, key, "calling the factory"), "the factory's result"
    else:
        return obj
    if not callable(made):
        raise SpecError(key, f"{name!r}: {what} is not callable (its type: "
                             f"{type(made).__name__}); it must be a function of (study, trial)")
    return made


def resolve(specs: Sequence[str] = (), callables: Iterable[Any] = ()) -> list[NamedCallback]:
    """The callbacks of a search: the space file's entries, then the Python ones.

    Args:
        specs: ``search.callbacks`` (``module:attr`` strings).
        callables: the Python API's callbacks: callables, or ``module:attr`` strings.

    Raises:
        ConfigError: an entry cannot be imported or made into a callback.
    """
    out: list[NamedCallback] = []
    for spec in specs:
        out.append(NamedCallback(spec, make(load(spec), spec)))
    for item in callables:
        if isinstance(item, str):
            out.append(NamedCallback(item, make(load(item, "callbacks"), item, "callbacks")))
        elif callable(item):
            name = getattr(item, "__qualname__", None) or type(item).__qualname__
            out.append(NamedCallback(str(name), item))
        else:
            raise ConfigError(f"callbacks: expected functions of (study, trial) or module:attr "
                              f"strings, got {type(item).__name__} {item!r}")
    return out


def call_all(callbacks: Sequence[NamedCallback], study: Any, frozen: Any,
             study_dir: str | Path | None = None, *, raise_errors: bool = True) -> None:
    """Call each callback with ``(study, copy of frozen)``, as ``Study.optimize`` does.

    Args:
        callbacks: the callbacks.
        study: the ``optuna.Study``.
        frozen: the finished trial, read back from the storage.
        study_dir: where ``callback-error.txt`` is written when one raises.
        raise_errors: False while another error is on its way (the callbacks are still called;
            one that raises is only recorded in ``callback-error.txt``).

    Raises:
        StudyError: a callback raised (the error names it and the trial; the study is kept).
    """
    failed = False
    for callback in callbacks:
        try:
            callback.function(study, copy.deepcopy(frozen))
        except Exception as e:  # noqa: BLE001 - the user's code: reported with its name
            failed = True
            where = _write_error(study_dir, callback, frozen, e)
            if not raise_errors:
                continue
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            state = getattr(getattr(frozen, "state", None), "name", "?").lower()
            raise StudyError(
                f"{KEY}: callback {callback.name!r} raised {type(e).__name__}: {message} after "
                f"trial {frozen.number} ({state}); the study is kept: fix or remove the callback "
                f"and run the same command again to resume"
                + (f" (traceback: {where})" if where else "")) from e
    if callbacks and not failed and study_dir is not None:
        _retire_error(Path(study_dir))


def _retire_error(study_dir: Path) -> None:
    """Rename a ``callback-error.txt`` left by an earlier run: the callbacks ran cleanly since."""
    stale = study_dir / ERROR_FILE
    if stale.is_file():
        try:
            os.replace(stale, study_dir / PREVIOUS_ERROR_FILE)
        except OSError:
            pass  # a read-only folder: the old file stays, as before


def _takes_two(obj: Any) -> bool:
    """Whether ``obj(study, trial)`` fits its signature (False when it has none to read)."""
    try:
        inspect.signature(obj).bind(None, None)
    except (TypeError, ValueError):
        return False
    return True


def _call_maker(obj: Any, name: str, key: str, doing: str) -> Any:
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise SpecError(key, f"{name!r} needs arguments; name a function of (study, trial), a "
                             "class or factory that needs none, or an instance made in your "
                             "module (e.g. MLFLOW = MLflowCallback(metric_name='val_dice'))") \
            from None
    except ValueError:
        pass  # no signature to read (a builtin): try the call
    try:
        return obj()
    except Exception as e:  # noqa: BLE001 - the user's code: reported with its name
        raise SpecError(key, f"{name!r}: {doing} raised {type(e).__name__}: {e}") from e


def _write_error(study_dir: str | Path | None, callback: NamedCallback, frozen: Any,
                 error: BaseException) -> Path | None:
    if study_dir is None:
        return None
    path = Path(study_dir) / ERROR_FILE
    text = (f"{KEY}: callback {callback.name!r} raised after trial {frozen.number}\n\n"
            + "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    try:
        path.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return path
