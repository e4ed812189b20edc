"""Search engines: Optuna and Keras Tuner run the same hypermodels and report one results format.

- :mod:`segsearch.engines.hp`: the bridge that offers keras-tuner's ``HyperParameters`` calls on top
  of an ``optuna.Trial``, so one ``hypermodel.build(hp)`` serves both engines.
- :mod:`segsearch.engines.trial`: the one function every trial goes through (build, train, report
  each epoch, checkpoint), whichever engine proposes it.
- :mod:`segsearch.engines.optuna_engine` / :mod:`segsearch.engines.keras_tuner_engine`: the engines;
  :mod:`segsearch.engines.select` picks one by ``search.engine``.
- :mod:`segsearch.engines.optuna_records` / :mod:`segsearch.engines.keras_tuner_records`: each
  engine's ``read_records``, which reads its storage into :class:`segsearch.records.TrialRecord`
  without importing the engine (``segsearch status``).

Importing this package is cheap; the engines import TensorFlow, Optuna and keras-tuner when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RECORD_READERS", "read_records"]

#: engine name -> module holding its ``read_records(config, study_dir, *, storage_url, state)``,
#: which imports neither the engine nor TensorFlow.
RECORD_READERS: dict[str, str] = {
    "optuna": "segsearch.engines.optuna_records",
    "keras-tuner": "segsearch.engines.keras_tuner_records",
}


def read_records(name: str, config: Any, study_dir: Any, *, storage_url: str | None,
                 state: Any) -> list[Any]:
    """Every trial an engine's storage holds, as records by number (nothing is written).

    Args:
        name: the engine that ran the study ("optuna" or "keras-tuner").
        config: the study's Config.
        study_dir: the study folder.
        storage_url: the resolved Optuna storage URL (unused by keras-tuner).
        state: what the storage holds (:class:`segsearch.engines.storage.StorageState`).
    """
    import importlib

    from segsearch.errors import ConfigError, unknown_name

    if name not in RECORD_READERS:
        raise ConfigError(unknown_name("engine", name, RECORD_READERS, "search.engine"))
    reader = importlib.import_module(RECORD_READERS[name]).read_records
    return reader(config, study_dir, storage_url=storage_url, state=state)
