"""The Optuna engine: samplers, pruners, a resumable storage, one trial at a time (ask / tell).

- Samplers (``search.algorithm``): tpe (default; multivariate, grouped for conditional spaces),
  random, cmaes (needs the ``cmaes`` package), qmc, nsga2 (several objectives). Each (re)start seeds
  the sampler with ``search.seed`` plus the number of trials already stored, so a resumed study does
  not replay the proposals of its first run.
- Pruners (``search.pruner``): hyperband (default: multi-fidelity between ``train.min_epochs`` and
  ``train.epochs``), median, successive_halving, none. The objective is reported after every epoch.
- Storage: SQLite in the study folder (``study.db``) unless ``storage`` names another URL, opened
  with ``load_if_exists=True`` so the same command resumes.
- The seed network (the hypermodel's defaults) is enqueued as the first trial of a new study, then
  the seed with its learning rate times sqrt(10) and 10
  (:func:`segsearch.engines.hp.seed_neighbours`).
- A trial left RUNNING by a run that was killed is marked FAIL ("cut off") and its values are
  enqueued again, so it is re-run.
- Infeasible configurations are FAIL with the user attribute ``infeasible`` (and ``reason``); they
  are not counted and not retried. The search stops when ``search.trials`` trials are COMPLETE or
  PRUNED.
- A failed trial carries the user attribute ``failure`` (see
  :data:`segsearch.records.FAILURES`). When a run starts and the study still needs trials,
  the failed trials whose failure came from outside their configuration ("environment": an import
  error, a missing file, a full disk, a killed worker), and the seed trials (the seed network and
  its learning-rate neighbours) that failed for any reason but their configuration (infeasible,
  out of memory, a NaN loss), are enqueued again, once each (the new trial's ``retry_of`` names
  the old one; at most as many as the study still needs, the lowest numbers first), before the
  sampler proposes new ones.
- Robustness (issue 5): each trial trains in a worker process (``train.isolation: process``, see
  :mod:`segsearch.engines.worker`); a configuration that ran out of memory is FAIL with the user
  attribute ``oom`` and, proposed again, is skipped at once (recorded infeasible) instead of
  trained; ``search.workers`` trials run at once (one thread and one worker process each); RDB
  storages record a heartbeat per running trial (``HEARTBEAT_INTERVAL``), and a RUNNING trial
  whose heartbeat is older than ``GRACE_PERIOD`` (its process was killed) is failed and enqueued
  again (Optuna's ``fail_stale_trials`` with segsearch's retry callback; the heartbeat of an
  ask/tell trial is recorded by :class:`_Heartbeat` through ``RDBStorage.record_heartbeat``).
  A trial of a dead driver on this machine (its pid is gone) is recovered at once. SQLite waits
  for its lock (``timeout``) rather than failing with "database is locked". Several drivers on
  one study stop at exactly ``search.trials``: a trial asked for when the study already has
  enough finished or running trials of lower numbers is given back (FAIL, "not needed").
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from segsearch.engines import storage as storage_module
from segsearch.engines._optuna_compat import enqueued_params
from segsearch.engines.base import BaseEngine, SearchSession
from segsearch.engines.hp import (
    OptunaHyperParameters,
    declare,
    seed_neighbours,
    seed_values,
    space_signature,
)
from segsearch.engines.optuna_records import (
    OPTUNA_RECORD_ATTR,
    PARAMS_ATTR,
    grace_period,
    heartbeat_interval,
    optuna_records,
)
from segsearch.engines.trial import TrialOutcome, TrialTask, now_iso
from segsearch.errors import ConfigError, StudyError
from segsearch.records import HISTORY_FILE, TrialRecord, read_history, trial_dir

__all__ = ["Engine", "make_sampler", "make_pruner", "storage_url"]

CUT_OFF_REASON = "cut off: the run stopped during this trial; it is run again"
SURPLUS_REASON = "not needed: the study already had its trials when this one was asked for"
REBUILT_GAP_REASON = ("rebuilt storage: trials/ holds no record of this trial (it was cut off or "
                      "not needed); a placeholder keeps the numbering")
#: seconds between heartbeats of a running trial (RDB storages).
HEARTBEAT_INTERVAL = heartbeat_interval()
#: seconds without a heartbeat after which another worker fails a RUNNING trial and re-runs it.
GRACE_PERIOD = grace_period()
#: seconds SQLite waits for a lock held by another worker before giving up.
SQLITE_TIMEOUT = 120
_HOST = socket.gethostname()


def make_storage(url: str) -> Any:
    """An Optuna storage for ``url``: RDB storages with heartbeats (SQLite waiting for its lock).

    Args:
        url: an SQLAlchemy URL (sqlite:///..., postgresql://..., mysql://...).
    """
    if url.startswith("sqlite"):
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
        if url.startswith("postgresql"):
            engine_kwargs["connect_args"] = {"connect_timeout": storage_module.CONNECT_TIMEOUT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_INTERVAL,
                grace_period=GRACE_PERIOD, heartbeat_stale_trial_callback=_retry_cut_off,
            )
        except Exception as e:  # noqa: BLE001 - SQLAlchemy's and the drivers' errors
            raise storage_module.connect_error(url, e) from None


def _retry_cut_off(study: optuna.Study, trial: Any) -> None:
    """A trial left RUNNING by a dead process (now FAIL): enqueue its values again.

    (Its reason is set before it is failed where segsearch fails it; a trial failed by Optuna's
    heartbeat check shows the cut-off reason through ``optuna_records``.) Given to ``RDBStorage``
    as its public ``heartbeat_stale_trial_callback``. Not Optuna's
    ``RetryHeartbeatStaleTrialCallback``: that copies every user attribute of the dead trial
    (its host, pid, reason, record) into the new one and notes the retry in system attributes,
    where segsearch's records and retry rules read ``retry_of`` and the seed marks only.
    """
    attrs: dict[str, Any] = {"retry_of": trial.number, **_seed_attrs(trial)}
    study.enqueue_trial(dict(trial.params), user_attrs=attrs)


_SEED_ATTRS = ("seed_network", "seed_neighbour")


def _seed_attrs(trial: Any) -> dict[str, Any]:
    """The user attributes that mark a seed trial (kept by the trials that run it again)."""
    return {k: True for k in _SEED_ATTRS if trial.user_attrs.get(k)}


class _Heartbeat:
    """Records a running trial's heartbeat every ``get_heartbeat_interval()`` seconds while it
    trains (what ``Study.optimize`` does for its own trials; ask/tell trials need it done), through
    the storage's public ``record_heartbeat``. Nothing for a storage without heartbeats.

    Args:
        storage: the ``RDBStorage``.
        trial_id: the storage's id of the trial.
    """

    def __init__(self, storage: Any, trial_id: int) -> None:
        self.storage, self.trial_id = storage, trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        interval = self.storage.get_heartbeat_interval()
        if interval is not None:
            self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True,
                                            name=f"segsearch-heartbeat-{self.trial_id}")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self, interval: int) -> None:
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self._stop.wait(timeout=interval):
                return


def _fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's fail_stale_trials (experimental) without its warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def storage_url(session: SearchSession) -> str:
    """The storage URL: ``session.storage`` or SQLite in the study folder.

    Args:
        session: the search session.
    """
    return storage_module.study_url(session.study_dir, session.storage)


def make_sampler(algorithm: str, seed: int, trials: int = 20) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``search.algorithm``.

    Args:
        algorithm: tpe, random, cmaes, qmc or nsga2.
        seed: the sampler's seed.
        trials: the study's number of trials (TPE samples a third of them at random first, at
            least 2 and at most 10, the seed network included).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if algorithm == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              n_startup_trials=max(2, min(10, trials // 3)))
        if algorithm == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if algorithm == "cmaes":
            return optuna.samplers.CmaEsSampler(
                seed=seed, warn_independent_sampling=False,
                independent_sampler=optuna.samplers.TPESampler(seed=seed),
            )
        if algorithm == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        if algorithm == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
    raise ConfigError(f"search.algorithm: unknown optuna algorithm {algorithm!r}; valid: tpe, "
                      "random, cmaes, qmc, nsga2")


def make_pruner(name: str, *, min_epochs: int, epochs: int,
                trials: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner for ``search.pruner``.

    Args:
        name: hyperband, median, successive_halving or none.
        min_epochs: the shortest a trial trains before it can be pruned.
        epochs: the most epochs a trial trains.
        trials: the number of trials of the study (sets the median pruner's start-up).
    """
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=epochs,
                                              reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, trials // 5)),
                                           n_warmup_steps=min_epochs)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"search.pruner: unknown pruner {name!r}; valid: hyperband, median, "
                      "successive_halving, none")


class Engine(BaseEngine):
    """Runs a segsearch study with Optuna.

    Args:
        session: the search session.
        pruner: a pruner to use instead of ``search.pruner`` (tests, custom policies).
    """

    name = "optuna"
    supports_isolation = True

    def __init__(self, session: SearchSession, *, pruner: optuna.pruners.BasePruner | None = None):
        super().__init__(session)
        optuna.logging.set_verbosity(logging.WARNING)
        search, train = self.config.search, self.config.train
        self.url = storage_url(session)
        self.multi = len(search.objectives) > 1
        self.pruner = pruner or make_pruner(
            search.pruner, min_epochs=train.min_epochs, epochs=train.epochs, trials=search.trials
        )
        storage = self._rdb = make_storage(self.url)  # the study's storage, unwrapped
        try:
            self.study = optuna.create_study(
                study_name=self.config.study,
                storage=storage,
                pruner=self.pruner,
                directions=list(search.directions),
                load_if_exists=True,
            )
        except Exception as e:  # noqa: BLE001 - SQLAlchemy's and the drivers' errors
            if isinstance(e, (optuna.exceptions.OptunaError, ValueError)):
                raise
            raise storage_module.connect_error(self.url, e) from None
        self._study_id = storage.get_study_id_from_name(self.study.study_name)
        stored = len(self.study.get_trials(deepcopy=False))
        self._stop = threading.Event()
        self._active: dict[int, Any] = {}
        self._run_id = uuid.uuid4().hex
        self.study.sampler = make_sampler(search.algorithm, search.seed + stored, search.trials)

    # ------------------------------------------------------------------ engine API
    @classmethod
    def fingerprint(cls, config: Any, hypermodel: Any) -> dict[str, Any]:
        """The space's distributions and the objective, which a stored Optuna study fixes.

        Args:
            config: the study's Config.
            hypermodel: the study's hypermodel.
        """
        return {
            "space": space_signature(declare(hypermodel)),
            "objective": list(config.search.objectives),
            "direction": list(config.search.directions),
        }

    def run(self) -> None:
        """Run trials until ``search.trials`` are complete or pruned (see the module docstring)."""
        self._recover_cut_off()
        if not self.study.get_trials(deepcopy=False):
            self.study.enqueue_trial(seed_values(self.session.hypermodel),
                                     user_attrs={"seed_network": True})
            for values in seed_neighbours(self.session.hypermodel)[:max(0, self.target - 1)]:
                self.study.enqueue_trial(values, user_attrs={"seed_neighbour": True})
        else:
            self._retry_failed()
        workers = max(1, len(self.slots()))  # search.workers, or from workers_per_gpu
        done = False
        try:
            if workers == 1:
                self._loop(0)
                done = True
                return
            errors: list[BaseException] = []

            def loop(slot: int) -> None:
                try:
                    self._loop(slot)
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    errors.append(e)
                    self._stop.set()

            threads = [threading.Thread(target=loop, args=(i,), name=f"segsearch-worker-{i}",
                                        daemon=True) for i in range(workers)]
            for thread in threads:
                thread.start()
            try:
                for thread in threads:
                    while thread.is_alive():
                        thread.join(0.5)
            except BaseException:
                self._stop.set()
                raise
            if errors:
                raise errors[0]
            done = True
        finally:
            self._stop.set()
            if not done:  # otherwise the driver closes them after the final training
                self.close_workers()
                self._cut_off_own()

    def _trial_id(self, number: int) -> int:
        """The storage's id of trial ``number`` (public lookup; ``Trial._trial_id`` is private)."""
        return self._rdb.get_trial_id_from_study_id_trial_number(self._study_id, number)

    def _cut_off_own(self) -> None:
        """The run stops (Ctrl-C, an error): fail the trials it was running and enqueue them."""
        storage = self._rdb
        for trial in list(self._active.values()):
            try:
                trial_id = self._trial_id(trial.number)
                frozen = storage.get_trial(trial_id)
                if frozen.state != TrialState.RUNNING:
                    continue
                storage.set_trial_user_attr(trial_id, "reason", CUT_OFF_REASON)
                if storage.set_trial_state_values(trial_id, TrialState.FAIL):
                    _retry_cut_off(self.study, frozen)
            except Exception:  # noqa: BLE001 - the next run recovers it anyway
                continue
        self._active.clear()

    def _loop(self, slot: int) -> None:
        """One worker's trials: until the study holds ``search.trials`` finished ones."""
        while not self._stop.is_set() and not self.deadline_passed():
            finished, running = self._counts()
            if finished >= self.target:
                return
            if finished + running >= self.target:  # others are on the last ones; they may fail
                _fail_stale_trials(self.study)
                time.sleep(1.0)
                continue
            if self.isolated:
                self.worker(slot).start()  # before asking: a trial's heartbeat starts at once
            self._run_one(slot)

    def records(self) -> list[TrialRecord]:
        """Every trial in the storage as a record (a RUNNING one as "running")."""
        return optuna_records(self.study, self.study_dir, self.config.architectures)

    def rebuild(self, records: list[TrialRecord]) -> int:
        """Rebuild the study's trials in the (empty) storage from the trial folders' records.

        Trial ``n`` of the storage is ``trials/<n>`` again: a number without a record (a trial
        that was cut off or handed back) becomes a failed placeholder, so no new trial takes a
        folder that holds one. Parameters, distributions (from the space), values, the state,
        the per-epoch objective (``history.csv``) and the record are restored through Optuna's
        public ``create_trial`` / ``add_trial``.

        Args:
            records: the records of ``trials/<nnnn>/trial.json``.

        Returns:
            The number of trials added.
        """
        if self.study.get_trials(deepcopy=False):
            raise StudyError(f"--rebuild-storage: the storage already holds trials of study "
                             f"{self.config.study!r}; nothing was changed")
        by_number = {r.number: r for r in records}
        top = max(by_number, default=-1)
        for number in range(top + 1):
            self.study.add_trial(self._frozen(by_number.get(number)))
        search = self.config.search
        self.study.sampler = make_sampler(search.algorithm, search.seed + top + 1, search.trials)
        return top + 1

    def _frozen(self, record: TrialRecord | None) -> optuna.trial.FrozenTrial:
        """One rebuilt trial (a failed placeholder for a number without a record)."""
        if record is None:
            return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={
                "reason": REBUILT_GAP_REASON, "rebuilt": True})
        attrs: dict[str, Any] = {OPTUNA_RECORD_ATTR: record.to_dict(),
                                 PARAMS_ATTR: dict(record.params), "rebuilt": True}
        intermediate = self._history_values(record)
        kwargs: dict[str, Any] = {"intermediate_values": intermediate}
        if record.state == "complete" and record.value is not None:
            kwargs["state"] = TrialState.COMPLETE
            if self.multi and record.objectives:
                kwargs["values"] = list(record.objectives)
            else:
                kwargs["value"] = record.value
        elif record.state == "pruned":
            kwargs["state"] = TrialState.PRUNED
            last = intermediate[max(intermediate)] if intermediate else record.value
            kwargs["value"] = None if self.multi else last
        else:
            kwargs["state"] = TrialState.FAIL
            attrs["reason"] = record.reason or CUT_OFF_REASON
            if record.state == "infeasible":
                attrs["infeasible"] = True
            if (record.reason or "").startswith("out of memory"):
                attrs["oom"] = True
        params, distributions = self._distributions(record.params)
        try:
            return optuna.trial.create_trial(params=params, distributions=distributions,
                                             user_attrs=attrs, **kwargs)
        except ValueError:  # values outside today's space: kept in the record, not as params
            return optuna.trial.create_trial(user_attrs=attrs, **kwargs)

    def _distributions(self, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The Optuna parameters and distributions of a configuration, from the space."""
        fixed = optuna.trial.FixedTrial(dict(values))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                declare(self.session.hypermodel, OptunaHyperParameters(fixed), build=False)
        except (ValueError, TypeError, KeyError):
            return {}, {}
        return dict(fixed.params), dict(fixed.distributions)

    def _history_values(self, record: TrialRecord) -> dict[int, float]:
        """The objective after each epoch, from the trial's history.csv (as reported)."""
        path = trial_dir(self.study_dir, record.number) / HISTORY_FILE
        if not path.is_file():
            return {}
        out: dict[int, float] = {}
        try:
            rows = read_history(path)
        except (OSError, ValueError):
            return {}
        for row in rows:
            value, epoch = row.get(self.objective.name), row.get("epoch")
            if isinstance(value, (int, float)) and isinstance(epoch, int) and \
                    math.isfinite(value):
                out[epoch] = float(value)
        return out

    # ------------------------------------------------------------------ internals
    def _finished_count(self) -> int:
        return len(self.study.get_trials(deepcopy=False,
                                         states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def _counts(self) -> tuple[int, int]:
        """(finished, running) trials of the study, whoever runs them."""
        trials = self.study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        running = sum(t.state == TrialState.RUNNING for t in trials)
        return len(trials) - running, running

    def _surplus(self, trial: optuna.Trial) -> bool:
        """Whether trials of lower numbers, finished or running, already make ``search.trials``."""
        ahead = [t for t in self.study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)) if t.number < trial.number]
        return len(ahead) >= self.target

    def _give_back(self, trial: optuna.Trial) -> None:
        """Fail a surplus trial (not counted) and enqueue its values again if they were queued."""
        frozen = self._rdb.get_trial(self._trial_id(trial.number))
        trial.set_user_attr("reason", SURPLUS_REASON)
        trial.set_user_attr("surplus", True)
        self.study.tell(trial, state=TrialState.FAIL)
        queued = enqueued_params(frozen)
        if queued is not None:
            attrs = {k: v for k, v in frozen.user_attrs.items()
                     if k in (*_SEED_ATTRS, "retry_of")}
            self.study.enqueue_trial(queued, user_attrs=attrs)

    def _ran_out_of_memory_before(self, params: dict[str, Any], number: int) -> int | None:
        """The number of an earlier trial with these values that ran out of memory, if any."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if t.number != number and t.user_attrs.get("oom") and t.params == params:
                return t.number
        return None

    def _recover_cut_off(self) -> None:
        """Fail and enqueue again the trials a killed run left RUNNING.

        At once for a trial of a driver on this machine whose process is gone (or of a run that
        recorded no owner); other RUNNING trials belong to live workers, or are failed by the
        heartbeat check once their heartbeat is older than ``GRACE_PERIOD``.
        """
        storage = self._rdb
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            host, pid = t.user_attrs.get("host"), t.user_attrs.get("pid")
            earlier_run_here = pid == os.getpid() and t.user_attrs.get("run") != self._run_id
            if host is not None and not (host == _HOST and earlier_run_here) and (
                    host != _HOST or (pid is not None and _pid_alive(int(pid)))):
                continue
            trial_id = self._trial_id(t.number)
            try:
                storage.set_trial_user_attr(trial_id, "reason", CUT_OFF_REASON)
                if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker recovered it
            _retry_cut_off(self.study, t)
        _fail_stale_trials(self.study)

    def _retry_failed(self) -> None:
        """Enqueue again the failed trials that should run again (see the module docstring), at
        most as many as the study still needs."""
        room = self.target - self._finished_count()
        trials = self.study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get("retry_of") for t in trials}
        for t in trials:  # by number: the seed trials first
            if room <= 0:
                return
            if t.state != TrialState.FAIL or t.number in retried or t.user_attrs.get("surplus") \
                    or t.user_attrs.get("infeasible"):
                continue
            failure = t.user_attrs.get("failure")
            seed = _seed_attrs(t)
            if failure == "environment" or (seed and failure != "configuration"
                                            and not t.user_attrs.get("oom")):
                self.study.enqueue_trial(dict(t.params),
                                         user_attrs={"retry_of": t.number, **seed})
                room -= 1

    def _run_one(self, slot: int = 0) -> None:
        session = self.session
        with self._lock, warnings.catch_warnings():  # one proposal at a time in this process
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask()
            trial_id = self._trial_id(trial.number)
            if self._rdb.get_heartbeat_interval() is not None:
                self._rdb.record_heartbeat(trial_id)
            trial.set_user_attr("host", _HOST)
            trial.set_user_attr("pid", os.getpid())
            trial.set_user_attr("run", self._run_id)
            self._active[trial.number] = trial
            if self._surplus(trial):
                self._active.pop(trial.number, None)
                self._give_back(trial)
                return
            hp = OptunaHyperParameters(trial)
            hypermodel = session.hypermodel
            declare(hypermodel, hp, build=False)  # the values are known before the build
        number = trial.number
        if hp.values:  # fixed values included, so a cut-off trial's record shows them all
            trial.set_user_attr(PARAMS_ATTR, dict(hp.values))
        self.clear_trial_dir(number)
        self.trial_started(number, dict(hp.values))
        params = dict(hp.values)
        earlier = self._ran_out_of_memory_before(dict(trial.params), number)
        if earlier is not None:
            outcome = TrialOutcome(state="infeasible", started=now_iso(), finished=now_iso(),
                                   reason=f"skipped: the same configuration ran out of memory in "
                                          f"trial {earlier}")
            self._tell(trial, outcome, self.make_record(number, outcome, params))
            return

        reporter = None
        if not self.multi:
            def reporter(epoch: int, value: float) -> bool:
                trial.report(value, epoch)
                return trial.should_prune()

        task = TrialTask(number=number, out_dir=trial_dir(self.study_dir, number),
                         epochs=self.config.train.epochs, hparams=params)
        with _Heartbeat(self._rdb, trial_id):
            outcome = self.execute(task, lambda: hypermodel.build(hp), dict(trial.params),
                                   reporter, slot=slot)
        if self._stop.is_set() and outcome.crashed:
            return  # the run is stopping (Ctrl-C): the trial stays RUNNING and is re-run later
        self._tell(trial, outcome, self.make_record(number, outcome, params))

    def _tell(self, trial: optuna.Trial, outcome: TrialOutcome, record: TrialRecord) -> None:
        with self._lock:
            self._tell_locked(trial, outcome, record)
            self._active.pop(trial.number, None)

    def _tell_locked(self, trial: optuna.Trial, outcome: TrialOutcome,
                     record: TrialRecord) -> None:
        trial.set_user_attr(OPTUNA_RECORD_ATTR, record.to_dict())
        if outcome.timings:  # where its seconds went (optuna-dashboard shows user attributes)
            trial.set_user_attr("timings", dict(outcome.timings))
        if outcome.batch_size is not None:  # the out-of-memory retry's batch size
            trial.set_user_attr("batch_size", int(outcome.batch_size))
        if outcome.oom:
            trial.set_user_attr("oom", True)
        if outcome.state == "complete":
            values = outcome.objectives if self.multi else outcome.value
            self.study.tell(trial, values)
        elif outcome.state == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            if outcome.state == "infeasible":
                trial.set_user_attr("infeasible", True)
            trial.set_user_attr("reason", outcome.reason)
            if outcome.failure:
                trial.set_user_attr("failure", outcome.failure)
            self.study.tell(trial, state=TrialState.FAIL)
        try:
            self.trial_finished(record)
        except BaseException:
            self._call_back(trial.number, raise_errors=False)  # the error on its way wins
            raise
        self._call_back(trial.number)

    def _call_back(self, number: int, *, raise_errors: bool = True) -> None:
        """Call the search's callbacks with the study and the finished trial from the storage
        (as ``Study.optimize(callbacks=...)`` does; see :mod:`segsearch.callbacks`)."""
        if not self.session.callbacks:
            return
        from segsearch.callbacks import call_all

        frozen = self._rdb.get_trial(self._trial_id(number))
        call_all(self.session.callbacks, self.study, frozen, self.study_dir,
                 raise_errors=raise_errors)

