"""The Keras Tuner engine: hyperband (default), random, bayesian and grid, resumable.

- The tuner's project folder is ``keras_tuner/`` inside the study folder, opened with
  ``overwrite=False`` so the same command resumes: keras-tuner reloads its oracle and puts a trial
  that was cut off back in its retry queue.
- Every trial runs through :func:`segsearch.engines.trial.run_trial` (the same training, history,
  checkpoint and records as the Optuna engine); the objective is ``keras_tuner.Objective(name,
  direction)``. With ``train.isolation: process`` (the default) it trains in the same recycled
  worker process as the Optuna engine's trials (:mod:`segsearch.engines.worker`), built there from
  the trial's HyperParameters; the oracle and tuner stay in the driver. A trial that kills its
  worker is failed with the reason and the search goes on.
- The seed network (every hyperparameter at its default) is the first trial, then the seed with its
  learning rate times sqrt(10) and 10: the oracles' ``populate_space`` proposes them first (grid
  search starts from the defaults anyway).
- Hyperband promotes a trial by running its configuration again for more epochs; the promoted trial
  continues the earlier trial from where it stopped (``trials/<nnnn>/last.keras``, or
  ``model.keras`` when its last epoch was its best: weights *and* optimizer state) from
  ``tuner/initial_epoch``. (keras-tuner's own Hyperband reloads the best epoch's weights only.)
  Checkpoints of trials in unfinished brackets are kept for that.
- An infeasible or failed trial raises ``keras_tuner.errors.FailedTrialError``: recorded, not
  retried within the run; keras-tuner's own cap on consecutive failures is lifted (segsearch's
  applies). When a run starts and the study still needs trials, the failed trials whose failure
  came from outside their configuration (``failure: environment`` in their record: an import
  error, a missing file, a full disk, a killed worker), and the seed trials that failed for any
  reason but their configuration, go back into the oracle's retry queue (at most as many as
  trials are missing, the lowest numbers first): keras-tuner runs them again under their own
  numbers before it creates new trials.
- ``search.trials`` counts completed keras-tuner trials (a Hyperband promotion is a trial): before
  each trial the oracle's ``max_trials`` is set so that only the missing ones are created.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import keras_tuner
from keras_tuner.engine import trial as kt_trial

from segsearch.engines import _keras_tuner_compat as kt_compat
from segsearch.engines.base import BaseEngine, SearchSession
from segsearch.engines.hp import declare, neighbour_values, space_signature
from segsearch.engines.keras_tuner_records import keras_tuner_records
from segsearch.engines.trial import TrialTask, continuation, smoothed_at_end
from segsearch.errors import ConfigError, SegsearchError, StudyError
from segsearch.records import (
    CHECKPOINT_FILE,
    TRIAL_FILE,
    TrialRecord,
    read_trial_records,
    trial_dir,
)

__all__ = ["Engine", "PROJECT_DIR"]

#: the keras-tuner project folder inside the study folder.
PROJECT_DIR = "keras_tuner"
_NO_CAP = 10**9


class _Fatal(keras_tuner.errors.FatalError):
    """Carries a segsearch error through keras-tuner's trial loop (which swallows other errors)."""

    def __init__(self, error: SegsearchError) -> None:
        super().__init__(str(error))
        self.error = error


def _seed_trials_values(space: Any) -> list[dict[str, Any]]:
    """The seed network's values (every hyperparameter at its default) and its learning-rate
    neighbours' (:func:`segsearch.engines.hp.neighbour_values`).

    Args:
        space: the oracle's HyperParameters.
    """
    defaults = keras_tuner.HyperParameters()
    defaults.merge(space.space)
    return [dict(defaults.values), *neighbour_values(space)]


def _next_seed_values(oracle: Any) -> dict[str, Any] | None:
    """The seed network's or a neighbour's values while the oracle has started fewer trials than
    there are of them and one of them has not been tried; None otherwise."""
    firsts = _seed_trials_values(oracle.hyperparameters)
    if len(oracle.start_order) < len(firsts):
        for values in firsts:
            if not kt_compat.already_tried(oracle, values):
                return values
    return None


class _SeedFirst:
    """Oracle mixin (random, bayesian): the first proposals are the seed network (every
    hyperparameter at its default) and its learning-rate neighbours
    (:func:`segsearch.engines.hp.neighbour_values`), through keras-tuner's ``populate_space``."""

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        values = _next_seed_values(self)
        if values is not None:
            return {"status": kt_trial.TrialStatus.RUNNING, "values": values}
        return super().populate_space(trial_id)  # type: ignore[misc]


class _HyperbandOracle(keras_tuner.oracles.HyperbandOracle):
    """Hyperband whose smallest fidelity is ``train.min_epochs`` and whose first trials are the seed
    network and its neighbours (each takes a new bracket's first-round slot, with its epochs)."""

    def __init__(self, *args: Any, min_epochs: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if min_epochs != self.min_epochs:
            self.min_epochs = min_epochs
            kt_compat.restart_brackets(self)

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        seed = _next_seed_values(self)
        response = super().populate_space(trial_id)
        values = response.get("values")
        if seed is not None and values and "tuner/trial_id" not in values:  # a first-round trial
            tuner = {k: v for k, v in values.items() if k.startswith("tuner/")}
            response = {**response, "values": {**seed, **tuner}}
        return response


class _RandomOracle(_SeedFirst, keras_tuner.oracles.RandomSearchOracle):
    pass


class _BayesianOracle(_SeedFirst, keras_tuner.oracles.BayesianOptimizationOracle):
    pass


class _GridOracle(keras_tuner.oracles.GridSearchOracle):
    pass  # grid search starts from the defaults by itself


class _Tuner(keras_tuner.Tuner):
    """A keras-tuner Tuner whose trials run through segsearch's run_trial."""

    def __init__(self, engine: Engine, **kwargs: Any) -> None:
        self.engine = engine
        super().__init__(**kwargs)

    def pre_create_trial(self) -> None:
        """Let the oracle create one more trial while some are missing (none once time is up)."""
        oracle = self.oracle
        more = self.engine.wants_more_trials()
        oracle.max_trials = max(1, len(oracle.trials) + (1 if more else 0))

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        return self.engine.run_kt_trial(trial)

    def on_trial_end(self, trial: Any) -> None:
        super().on_trial_end(trial)
        self.engine.after_kt_trial(trial)

    def save_model(self, trial_id: str, model: Any, step: int = 0) -> None:
        """Checkpoints are written by segsearch's run_trial (trials/<nnnn>/model.keras)."""


class Engine(BaseEngine):
    """Runs a segsearch study with Keras Tuner.

    Args:
        session: the search session.
    """

    name = "keras-tuner"
    supports_isolation = True

    def __init__(self, session: SearchSession) -> None:
        super().__init__(session)
        self._pending: TrialRecord | None = None
        self.tuner = self._make_tuner()

    # ------------------------------------------------------------------ engine API
    @classmethod
    def fingerprint(cls, config: Any, hypermodel: Any) -> dict[str, Any]:
        """The algorithm, its epochs, the space and the objective, which the project fixes.

        Args:
            config: the study's Config.
            hypermodel: the study's hypermodel.
        """
        search, train = config.search, config.train
        out: dict[str, Any] = {
            "algorithm": search.algorithm,
            "space": space_signature(declare(hypermodel)),
            "objective": list(search.objectives),
            "direction": list(search.directions),
        }
        if search.algorithm == "hyperband":
            out["epochs"] = [train.min_epochs, train.epochs]
        return out

    def run(self) -> None:
        """Run trials until ``search.trials`` keras-tuner trials are complete."""
        if self.wants_more_trials():
            self._retry_failed()
        if not self.wants_more_trials() and not self.tuner.oracle.get_state()["retry_queue"]:
            return
        # verbose=0 keeps keras-tuner's own display quiet, and no tracebacks of failed trials:
        # segsearch reports the reason (progress, trial.json)
        try:
            with kt_compat.quiet_trial_tracebacks():
                self.tuner.search(verbose=0)
        except _Fatal as e:
            raise e.error from None

    def wants_more_trials(self) -> bool:
        """Whether fewer than ``search.trials`` trials are complete and time is left."""
        done = sum(1 for t in self.tuner.oracle.trials.values()
                   if t.status == kt_trial.TrialStatus.COMPLETED)
        return done < self.target and not self.deadline_passed()

    def records(self) -> list[TrialRecord]:
        """Every keras-tuner trial as a record."""
        return keras_tuner_records(self.study_dir, self.config.architectures)

    def rebuild(self, records: list[TrialRecord]) -> int:
        """Rebuild the (new, empty) keras-tuner project from the trial folders' records.

        Trial ``n`` of the oracle is ``trials/<n>`` again (a number without a record becomes a
        failed placeholder), with its hyperparameter values, state and score, so the oracle does
        not propose a finished configuration again and new trials take new numbers. Hyperband's
        brackets start anew: a rebuilt trial is not promoted.

        Args:
            records: the records of ``trials/<nnnn>/trial.json``.

        Returns:
            The number of trials added.
        """
        oracle = self.tuner.oracle
        if oracle.trials:
            raise StudyError(f"--rebuild-storage: {self.study_dir / PROJECT_DIR} already "
                                 "holds trials; nothing was changed")
        by_number = {r.number: r for r in records}
        top = max(by_number, default=-1)
        names = {hp.name for hp in oracle.hyperparameters.space}
        state = oracle.get_state()  # the oracle's public state: orders, run times, values tried
        tried = set(state["tried_so_far"])
        for number in range(top + 1):
            record = by_number.get(number)
            hp = oracle.hyperparameters.copy()
            hp.values = {} if record is None else {
                k: v for k, v in record.params.items() if k in names}
            complete = record is not None and record.state == "complete" and \
                record.value is not None
            trial = kt_trial.Trial(hyperparameters=hp, trial_id=str(number),
                                   status=kt_trial.TrialStatus.COMPLETED if complete
                                   else kt_trial.TrialStatus.FAILED)
            if complete:
                step = int(record.best_epoch or 1) - 1
                trial.metrics.register(self.objective.name, direction=oracle.objective.direction)
                trial.metrics.update(self.objective.name, float(record.value), step=step)
                trial.score, trial.best_step = float(record.value), step
            else:
                trial.message = ("rebuilt: " + (record.reason or record.state) if record else
                                 "rebuilt storage: trials/ holds no record of this trial")
            oracle.trials[trial.trial_id] = trial
            state["start_order"].append(trial.trial_id)
            state["end_order"].append(trial.trial_id)
            state["run_times"][trial.trial_id] = 1
            if hp.values:  # the hash keras-tuner's duplicate check uses
                key = kt_compat.values_hash(oracle, hp.values)
                tried.add(key)
                state["id_to_hash"][trial.trial_id] = key
            trial.save(str(Path(self.tuner.get_trial_dir(trial.trial_id)) / "trial.json"))
        state["tried_so_far"] = sorted(tried)
        oracle.set_state(state)
        self.tuner.save()  # the oracle too
        return top + 1

    def protected_checkpoints(self) -> set[int]:
        """Trials of Hyperband brackets still open (their checkpoints may be promoted)."""
        oracle = self.tuner.oracle
        keep: set[int] = set()
        for bracket in oracle.get_state().get("brackets") or []:  # Hyperband's
            for round_info in bracket.get("rounds", []):
                for info in round_info:
                    keep.add(int(info["id"]))
        return keep

    # ------------------------------------------------------------------ trials
    def run_kt_trial(self, trial: Any) -> dict[str, float]:
        """Run one keras-tuner trial through run_trial; raise FailedTrialError when it fails.

        Args:
            trial: the keras-tuner Trial.
        """
        session = self.session
        number = int(trial.trial_id)
        hp = trial.hyperparameters
        values = dict(hp.values)
        params = self._params(values)
        epochs = int(values.get("tuner/epochs", self.config.train.epochs))
        initial_epoch = int(values.get("tuner/initial_epoch", 0))
        resume_from = smoothed = None
        if "tuner/trial_id" in values:
            earlier = trial_dir(self.study_dir, int(values["tuner/trial_id"]))
            resume_from = continuation(earlier)
            if resume_from is None:
                initial_epoch = 0  # the checkpoint is gone: train this configuration from scratch
            elif resume_from.name != CHECKPOINT_FILE:  # the last epoch's state: its average too
                smoothed = smoothed_at_end(earlier, self.objective.name)
        self.clear_trial_dir(number)
        self.trial_started(number, params)
        task = TrialTask(number=number, out_dir=trial_dir(self.study_dir, number), epochs=epochs,
                         initial_epoch=initial_epoch, resume_from=resume_from,
                         smoothed_start=smoothed, hparams=params)
        try:
            # in the worker process (train.isolation: process; the oracle and tuner stay here), with
            # the same failure recording and out-of-memory retry as the Optuna engine
            outcome = self.execute(task, lambda: session.hypermodel.build(hp), params,
                                   hp_config=hp.get_config())
        except SegsearchError as e:
            raise _Fatal(e) from e
        self._pending = self.make_record(number, outcome, params, initial_epoch=initial_epoch)
        # saved before keras-tuner ends the trial, so a kill in between cannot lose the record
        self._pending.save(trial_dir(self.study_dir, number) / TRIAL_FILE)
        if outcome.state != "complete":
            raise keras_tuner.errors.FailedTrialError(
                f"{outcome.state}: {outcome.reason or 'no reason recorded'}"
            )
        metrics = {k: float(v) for k, v in outcome.values.items() if v is not None}
        metrics[self.objective.name] = float(outcome.value)
        return metrics

    def after_kt_trial(self, trial: Any) -> None:
        """Write the record of the trial keras-tuner just ended (and check the failure caps).

        Args:
            trial: the keras-tuner Trial.
        """
        record, self._pending = self._pending, None
        if record is None or record.number != int(trial.trial_id):
            return
        if record.state in ("complete",) and str(trial.status) != "COMPLETED":
            record.state = "failed"  # type: ignore[assignment]
            record.reason = (trial.message or "keras-tuner rejected the result").strip()[-300:]
        self.trial_finished(record)

    # ------------------------------------------------------------------ internals
    def _retry_failed(self) -> None:
        """Put the failed trials that should run again into the oracle's retry queue (see the
        module docstring)."""
        oracle = self.tuner.oracle
        done = sum(1 for t in oracle.trials.values()
                   if t.status == kt_trial.TrialStatus.COMPLETED)
        room = self.target - done
        state = oracle.get_state()
        queued = set(state["retry_queue"]) | {t.trial_id for t in oracle.ongoing_trials.values()}
        records = {r.number: r for r in read_trial_records(self.study_dir)}
        firsts = [self._params(v) for v in _seed_trials_values(oracle.hyperparameters)]
        chosen = []
        for trial_id in sorted(oracle.trials, key=int):
            trial = oracle.trials[trial_id]
            if trial.status != kt_trial.TrialStatus.FAILED or trial_id in queued:
                continue
            record = records.get(int(trial_id))
            if record is None or record.state != "failed":
                continue
            values = dict(trial.hyperparameters.values)
            seed = "tuner/trial_id" not in values and self._params(values) in firsts
            if record.failure == "environment" or (seed and record.failure != "configuration"):
                chosen.append(trial_id)
        # keras-tuner pops the queue from its end: the lowest number runs first
        if chosen and room > 0:
            state["retry_queue"] = [*state["retry_queue"], *reversed(chosen[:room])]
            oracle.set_state(state)

    def _params(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if not k.startswith("tuner/")}

    def _make_tuner(self) -> _Tuner:
        search, train = self.config.search, self.config.train
        direction = "max" if search.directions[0] == "maximize" else "min"
        objective = keras_tuner.Objective(search.objectives[0], direction=direction)
        common = dict(objective=objective, seed=search.seed, max_retries_per_trial=0,
                      max_consecutive_failed_trials=_NO_CAP)
        algorithm = search.algorithm
        if algorithm == "hyperband":
            oracle = _HyperbandOracle(max_epochs=train.epochs, factor=3,
                                      hyperband_iterations=_NO_CAP, min_epochs=train.min_epochs,
                                      **common)
        elif algorithm == "random":
            oracle = _RandomOracle(max_trials=search.trials, **common)
        elif algorithm == "bayesian":
            oracle = _BayesianOracle(max_trials=search.trials, **common)
        elif algorithm == "grid":
            oracle = _GridOracle(max_trials=search.trials, **common)
        else:
            raise ConfigError(f"search.algorithm: unknown keras-tuner algorithm {algorithm!r}; "
                              "valid: hyperband, random, bayesian, grid")
        # the space declared once, before the tuner (keras-tuner builds the model again and again
        # to discover conditional hyperparameters of a hypermodel it is given; a reloaded project
        # brings its own space): the tuner gets no hypermodel, its trials run through run_trial
        hp = oracle.get_space()
        declare(self.session.hypermodel, hp)
        oracle.update_space(hp)
        with contextlib.redirect_stdout(io.StringIO()):  # "Reloading Tuner from ..."
            return _Tuner(
                self,
                oracle=oracle,
                directory=str(self.study_dir),
                project_name=PROJECT_DIR,
                overwrite=False,
            )
