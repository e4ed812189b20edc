"""The only place segsearch touches keras-tuner's private names (checked with keras-tuner 1.4.8).

Everything else goes through keras-tuner's public API: ``Oracle.populate_space`` (the seed network
first), ``Oracle.get_state`` / ``set_state`` (the retry queue, Hyperband's brackets, the values
tried), ``Oracle.get_space`` / ``update_space`` (the space, declared once before the tuner is
made). What keras-tuner offers no public route for is here, each function naming the private name
it needs; when one has moved it raises :class:`~segsearch.errors.CompatError` naming the release
and the fix, never a silent no-op. ``tests/engines/test_compat.py`` touches every name in
:data:`PRIVATE_NAMES`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from segsearch.errors import library_moved, private_attr

__all__ = ["CHECKED", "PRIVATE_NAMES", "already_tried", "values_hash", "restart_brackets",
           "quiet_trial_tracebacks"]

#: the keras-tuner release these names were checked with.
CHECKED = "1.4.8"
#: every private keras-tuner name this module uses.
PRIVATE_NAMES: tuple[str, ...] = (
    "keras_tuner.Oracle._compute_values_hash",
    "keras_tuner.Oracle._duplicate",
    "keras_tuner.oracles.HyperbandOracle._get_num_brackets",
    "keras_tuner.oracles.HyperbandOracle._start_new_bracket",
    "keras_tuner.oracles.HyperbandOracle._current_bracket",
    "keras_tuner.oracles.HyperbandOracle._brackets",
    "keras_tuner.src.config.DEBUG",
)
_HERE = "segsearch/engines/_keras_tuner_compat.py"


def _private(obj: Any, attr: str, name: str, use: str) -> Any:
    return private_attr(obj, attr, "keras-tuner", name, use, CHECKED, _HERE)


def values_hash(oracle: Any, values: Mapping[str, Any]) -> str:
    """The key under which the oracle records a configuration as tried (``tried_so_far`` and
    ``id_to_hash`` of ``Oracle.get_state()``).

    Private name (keras-tuner 1.4.8): ``Oracle._compute_values_hash`` (Hyperband's leaves its
    ``tuner/`` values out). If it moves, ``--rebuild-storage`` cannot tell the rebuilt oracle which
    configurations it has tried.

    Args:
        oracle: the keras-tuner Oracle.
        values: hyperparameter values.
    """
    compute = _private(oracle, "_compute_values_hash", "keras_tuner.Oracle._compute_values_hash",
                       "record rebuilt trials as tried")
    return str(compute(dict(values)))


def already_tried(oracle: Any, values: Mapping[str, Any]) -> bool:
    """Whether the oracle has already run (or is running) a configuration with these values.

    Private name (keras-tuner 1.4.8): ``Oracle._duplicate``, the check its random sampling uses.
    If it moves, the seed network and its neighbours cannot be proposed first.

    Args:
        oracle: the keras-tuner Oracle.
        values: hyperparameter values.
    """
    duplicate = _private(oracle, "_duplicate", "keras_tuner.Oracle._duplicate",
                         "propose the seed network first")
    return bool(duplicate(dict(values)))


def restart_brackets(oracle: Any) -> None:
    """Plan a new Hyperband oracle's brackets again after its ``min_epochs`` was changed.

    ``HyperbandOracle.__init__`` plans its first bracket for ``min_epochs = 1`` (it takes no
    ``min_epochs``); segsearch's smallest fidelity is ``train.min_epochs``. A reloaded oracle
    brings its own brackets and min_epochs (``set_state``), so this is for a new one only.

    Private names (keras-tuner 1.4.8): ``HyperbandOracle._get_num_brackets``,
    ``_start_new_bracket``, ``_current_bracket`` and ``_brackets``. If they move, Hyperband
    cannot start from ``train.min_epochs``.

    Args:
        oracle: a new ``keras_tuner.oracles.HyperbandOracle`` whose ``min_epochs`` was set.
    """
    use = "start Hyperband from train.min_epochs"
    prefix = "keras_tuner.oracles.HyperbandOracle."
    count = _private(oracle, "_get_num_brackets", prefix + "_get_num_brackets", use)
    start = _private(oracle, "_start_new_bracket", prefix + "_start_new_bracket", use)
    for attr in ("_current_bracket", "_brackets"):
        _private(oracle, attr, prefix + attr, use)
    oracle._current_bracket = count() - 1
    oracle._brackets = []
    start()


@contextlib.contextmanager
def quiet_trial_tracebacks() -> Iterator[None]:
    """Within: keras-tuner does not print the traceback of every failed trial (segsearch reports
    the reason in its progress and ``trial.json``).

    Private name (keras-tuner 1.4.8): ``keras_tuner.src.config.DEBUG`` (True prints them; there
    is no public switch). If it moves, failed trials would print their tracebacks again.
    """
    use = "keep keras-tuner from printing every failed trial's traceback"
    try:
        config = importlib.import_module("keras_tuner.src.config")
    except ImportError:
        raise library_moved("keras-tuner", "keras_tuner.src.config", use, CHECKED,
                            _HERE) from None
    debug = _private(config, "DEBUG", "keras_tuner.src.config.DEBUG", use)
    config.DEBUG = False
    try:
        yield
    finally:
        config.DEBUG = debug
