"""The only place segsearch touches Optuna's private names (checked with optuna 5.0.0).

Everything else goes through Optuna's public API: ``RDBStorage(heartbeat_interval=...,
grace_period=..., heartbeat_stale_trial_callback=...)``, ``optuna.storages.fail_stale_trials``,
``RDBStorage.record_heartbeat`` / ``get_heartbeat_interval``, and the storage's
``get_study_id_from_name`` / ``get_trial_id_from_study_id_trial_number`` instead of
``Study._study_id`` / ``Trial._trial_id``. What Optuna offers no public route for is here, each
function naming the private name it needs; when one has moved it raises
:class:`~segsearch.errors.CompatError` naming the release and the fix, never a silent no-op.
``tests/engines/test_compat.py`` touches every name in :data:`PRIVATE_NAMES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from segsearch.errors import library_moved, private_attr

__all__ = ["CHECKED", "PRIVATE_NAMES", "enqueued_params", "stale_trial_numbers"]

#: the optuna release these names were checked with.
CHECKED = "5.0.0"
#: every private Optuna name this module uses.
PRIVATE_NAMES: tuple[str, ...] = (
    "optuna.Study._storage",
    "optuna.storages._CachedStorage",
    "optuna.storages._CachedStorage._backend",
    "optuna.storages.RDBStorage._get_stale_trial_ids",
    'FrozenTrial.system_attrs["fixed_params"]',
)
_HERE = "segsearch/engines/_optuna_compat.py"


def _private(obj: Any, attr: str, name: str, use: str) -> Any:
    return private_attr(obj, attr, "optuna", name, use, CHECKED, _HERE)


def stale_trial_numbers(study: optuna.Study, heartbeat_interval: int,
                        grace_period: int) -> set[int]:
    """The numbers of the RUNNING trials whose last heartbeat is older than ``grace_period``.

    Read only: nothing is failed (``optuna.storages.fail_stale_trials``, the public route, fails
    them). A storage opened without heartbeat settings (``segsearch status``) is lent
    ``heartbeat_interval`` and ``grace_period`` for the query. A storage without heartbeats
    (journal, in-memory) or without the heartbeat table: an empty set.

    Private names (optuna 5.0.0): ``Study._storage`` (the study's storage, wrapped by
    ``optuna.storages._CachedStorage``), ``_CachedStorage._backend`` (the ``RDBStorage``) and
    ``RDBStorage._get_stale_trial_ids(study_id)`` (Optuna has no public read-only query). If one
    moves, ``segsearch status`` cannot mark silent trials "stale".

    Args:
        study: the Optuna study.
        heartbeat_interval: seconds between heartbeats, lent to a storage opened without one.
        grace_period: seconds without a heartbeat after which a trial is stale (lent likewise).
    """
    use = "tell which running trials have stopped sending heartbeats"
    storage = _private(study, "_storage", "optuna.Study._storage", use)
    cached = _private(optuna.storages, "_CachedStorage", "optuna.storages._CachedStorage", use)
    if isinstance(storage, cached):
        storage = _private(storage, "_backend", "optuna.storages._CachedStorage._backend", use)
    if not isinstance(storage, optuna.storages.RDBStorage):
        return set()  # no heartbeats
    query = _private(storage, "_get_stale_trial_ids",
                     "optuna.storages.RDBStorage._get_stale_trial_ids", use)
    saved = (storage.heartbeat_interval, storage.grace_period)
    try:
        if saved[0] is None:
            storage.heartbeat_interval, storage.grace_period = heartbeat_interval, grace_period
        study_id = storage.get_study_id_from_name(study.study_name)
        return {storage.get_trial(trial_id).number for trial_id in query(study_id)}
    except NotImplementedError:  # only the abstract BaseHeartbeat method is left
        raise library_moved("optuna", "optuna.storages.RDBStorage._get_stale_trial_ids", use,
                            CHECKED, _HERE) from None
    except Exception:  # noqa: BLE001 - a storage without the heartbeat table: nothing to tell
        return set()
    finally:
        storage.heartbeat_interval, storage.grace_period = saved


def enqueued_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any] | None:
    """The values ``Study.enqueue_trial`` fixed for this trial, or None if it was not enqueued.

    Private name (optuna 5.0.0): the system attribute ``"fixed_params"`` that ``enqueue_trial``
    writes and ``ask()`` reads. If it is renamed, this returns None for every trial: a surplus
    trial handed back by the Optuna engine would no longer put its queued values (a seed, a retry)
    back in the queue. ``tests/engines/test_compat.py`` checks it on an enqueued trial.

    Args:
        trial: a trial of the study (``FrozenTrial``).
    """
    fixed = trial.system_attrs.get("fixed_params")
    return dict(fixed) if isinstance(fixed, Mapping) else None
