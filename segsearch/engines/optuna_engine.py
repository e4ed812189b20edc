"""The Optuna engine: samplers, pruners, a resumable storage, one trial at a time (ask / tell).

- Samplers (``search.algorithm``): tpe (default; multivariate, grouped for conditional spaces),
  random, cmaes (needs the ``cmaes`` package), qmc, nsga2 (several objectives). Each (re)start seeds
  the sampler with ``search.seed`` plus the number of trials already stored, so a resumed study does
  not replay the proposals of its first run.
- Pruners (``search.pruner``): hyperband (default: multi-fidelity between ``train.min_epochs`` and
  ``train.epochs``), median, successive_halving, none. The objective is reported after every epoch.
- Storage: SQLite in the study folder (``study.db``) unless ``storage`` names another URL, opened
  with ``load_if_exists=True`` so the same command resumes.
- The seed network (the hypermodel's defaults) is enqueued as the first trial of a new study.
- A trial left RUNNING by a run that was killed is marked FAIL ("cut off") and its values are
  enqueued again, so it is re-run.
- Infeasible configurations are FAIL with the user attribute ``infeasible`` (and ``reason``); they
  are not counted and not retried. The search stops when ``search.trials`` trials are COMPLETE or
  PRUNED.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from segsearch.engines.base import BaseEngine, SearchSession
from segsearch.engines.hp import OptunaHyperParameters, declare, seed_values, space_signature
from segsearch.engines.results import (
    OPTUNA_RECORD_ATTR,
    PARAMS_ATTR,
    TrialRecord,
    optuna_records,
    trial_dir,
)
from segsearch.engines.trial import TrialTask, run_trial
from segsearch.errors import ConfigError

__all__ = ["Engine", "make_sampler", "make_pruner", "storage_url"]

CUT_OFF_REASON = "cut off: the run stopped during this trial; it is run again"



def storage_url(session: SearchSession) -> str:
    """The storage URL: ``session.storage`` or SQLite in the study folder.

    Args:
        session: the search session.
    """
    if session.storage:
        return session.storage
    return f"sqlite:///{(session.study_dir / 'study.db').resolve()}"


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

    def __init__(self, session: SearchSession, *, pruner: optuna.pruners.BasePruner | None = None):
        super().__init__(session)
        optuna.logging.set_verbosity(logging.WARNING)
        search, train = self.config.search, self.config.train
        self.url = storage_url(session)
        self.multi = len(search.objectives) > 1
        self.pruner = pruner or make_pruner(
            search.pruner, min_epochs=train.min_epochs, epochs=train.epochs, trials=search.trials
        )
        self.study = optuna.create_study(
            study_name=self.config.study,
            storage=self.url,
            pruner=self.pruner,
            directions=list(search.directions),
            load_if_exists=True,
        )
        stored = len(self.study.get_trials(deepcopy=False))
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
        while self._finished_count() < self.target and not self.deadline_passed():
            self._run_one()

    def records(self) -> list[TrialRecord]:
        """Every trial in the storage as a record (a RUNNING one as "running")."""
        return optuna_records(self.study, self.study_dir, self.config.architectures)

    # ------------------------------------------------------------------ internals
    def _finished_count(self) -> int:
        return len(self.study.get_trials(deepcopy=False,
                                         states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def _recover_cut_off(self) -> None:
        """Mark trials a killed run left RUNNING as FAIL ("cut off") and enqueue them again."""
        storage = self.study._storage
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            storage.set_trial_user_attr(t._trial_id, "reason", CUT_OFF_REASON)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            attrs = {"retry_of": t.number}
            if t.user_attrs.get("seed_network"):
                attrs["seed_network"] = True
            self.study.enqueue_trial(dict(t.params), user_attrs=attrs)

    def _run_one(self) -> None:
        session = self.session
        trial = self.study.ask()
        number = trial.number
        hp = OptunaHyperParameters(trial)
        hypermodel = session.hypermodel
        declare(hypermodel, hp, build=False)  # the values are known before the build
        if hp.values:  # fixed values included, so a cut-off trial's record shows them all
            trial.set_user_attr(PARAMS_ATTR, dict(hp.values))
        self.clear_trial_dir(number)
        self.trial_started(number, dict(hp.values))

        reporter = None
        if not self.multi:
            def reporter(epoch: int, value: float) -> bool:
                trial.report(value, epoch)
                return trial.should_prune()

        task = TrialTask(number=number, out_dir=trial_dir(self.study_dir, number),
                         epochs=self.config.train.epochs)
        outcome = run_trial(session.context, lambda: hypermodel.build(hp), task, reporter)
        params = dict(hp.values)
        record = self.make_record(number, outcome, params)
        trial.set_user_attr(OPTUNA_RECORD_ATTR, record.to_dict())
        if outcome.state == "complete":
            values = outcome.objectives if self.multi else outcome.value
            self.study.tell(trial, values)
        elif outcome.state == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            if outcome.state == "infeasible":
                trial.set_user_attr("infeasible", True)
            trial.set_user_attr("reason", outcome.reason)
            self.study.tell(trial, state=TrialState.FAIL)
        self.trial_finished(record)

