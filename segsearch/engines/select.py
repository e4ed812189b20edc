"""The engine a study runs: ``search.engine`` -> its ``Engine`` class (imported when chosen)."""

from __future__ import annotations

import importlib

from segsearch.errors import ConfigError, unknown_name

__all__ = ["ENGINE_MODULES", "engine_class"]

#: engine name (``search.engine``) -> module holding its ``Engine`` class.
ENGINE_MODULES: dict[str, str] = {
    "optuna": "segsearch.engines.optuna_engine",
    "keras-tuner": "segsearch.engines.keras_tuner_engine",
}


def engine_class(name: str) -> type:
    """Return the engine class for ``search.engine`` (imports TensorFlow, Optuna, keras-tuner).

    Args:
        name: "optuna" or "keras-tuner".
    """
    if name not in ENGINE_MODULES:
        raise ConfigError(unknown_name("engine", name, ENGINE_MODULES, "search.engine"))
    return importlib.import_module(ENGINE_MODULES[name]).Engine
