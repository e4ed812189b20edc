"""Search engines: Optuna and Keras Tuner run the same hypermodels and report one results format.

- :mod:`segsearch.engines.hp`: the bridge that offers keras-tuner's ``HyperParameters`` calls on top
  of an ``optuna.Trial``, so one ``hypermodel.build(hp)`` serves both engines.
- :mod:`segsearch.engines.trial`: the one function every trial goes through (build, train, report
  each epoch, checkpoint), whichever engine proposes it.
- :mod:`segsearch.engines.optuna_engine` / :mod:`segsearch.engines.keras_tuner_engine`: the engines.
- :mod:`segsearch.engines.results`: :class:`TrialRecord` and ``trials.csv``.

Importing this package is cheap; the engines import TensorFlow, Optuna and keras-tuner when used.
"""

from __future__ import annotations

__all__ = ["ENGINE_MODULES", "engine_class"]

#: engine name (``search.engine``) -> module holding its ``Engine`` class.
ENGINE_MODULES: dict[str, str] = {
    "optuna": "segsearch.engines.optuna_engine",
    "keras-tuner": "segsearch.engines.keras_tuner_engine",
}


def engine_class(name: str) -> type:
    """Return the engine class for ``search.engine``.

    Args:
        name: "optuna" or "keras-tuner".
    """
    import importlib

    from segsearch.errors import ConfigError, unknown_name

    if name not in ENGINE_MODULES:
        raise ConfigError(unknown_name("engine", name, ENGINE_MODULES, "search.engine"))
    return importlib.import_module(ENGINE_MODULES[name]).Engine
