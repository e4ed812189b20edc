"""k-fold cross-validation of a study's best configurations: the refit after the search.

With ``data.folds: K`` the split file (``split.json``) deals the pairs into K disjoint folds
(:func:`segsearch.data.split.make_folds`); the search trains and scores every trial on fold 0 (the
other folds' pairs train, fold 0's validate). With ``search.refit_folds: N`` the N best complete
configurations are then trained on folds 1..K-1 as well, each for the epochs its trial trained
(fold 0 is the trial itself), and the winner is the configuration with the best mean of the
objective over the K folds; the figures are the mean and standard deviation over folds.

Each (trial, fold) result is recorded in ``folds.json`` in the study folder (written whole through
a temporary file and a rename after every fold), its model in ``folds/<nnnn>/fold-<k>/``; a refit
that was cut off resumes with the folds not yet recorded. A fold whose training failed from
outside its configuration (a worker that died) is trained again by the next run; one that
diverged is kept as failed, and a configuration with a failed fold cannot win.

The refit trains in the search's worker processes (``train.isolation: process``: one worker per
fold, up to ``search.workers`` folds at once) or, with ``isolation: none``, here, one fold after
another. ``export.ensemble: folds`` needs the winner's fold models: it refits at least the best
configuration, and after the final training of the winner (fold 0, :mod:`segsearch.driver`) its
fold models 1..K-1 are trained further as well, each on its fold and for as many epochs
(:func:`train_members_further`, nnU-Net's fully trained fold models): an ensemble of networks
trained for a trial's few epochs beside one trained for the rest of the budget would pull the
ensemble down. ``train.budget_epochs`` counts it all: trials, refit and the members' final
epochs (:func:`member_count` networks share what the search and refit left).

This module imports neither TensorFlow nor an engine at import time (``segsearch status`` reads
:func:`summary`).
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from segsearch.jsonable import jsonable
from segsearch.records import (
    CHECKPOINT_FILE,
    LAST_CHECKPOINT_FILE,
    Objective,
    TrialRecord,
    atomic_write_text,
    sort_best,
)
from segsearch.workshop import SPLIT_FILE, Workshop

__all__ = ["FOLDS_FILE", "FOLDS_DIR", "fold_count", "refit_count", "read_results", "planned",
           "fold_scores", "winner", "ranking", "summary", "summary_lines", "refit",
           "FoldWorkshop", "prepare_fold_trials", "fold_dir", "ensemble_for", "member_count",
           "refit_epochs", "train_members_further", "FINAL_SUBDIR", "fold_validation"]

#: the (trial, fold) results of the refit, in the study folder.
FOLDS_FILE = "folds.json"
#: the refit's trainings: folds/<nnnn>/fold-<k>/ (history.csv, model.keras).
FOLDS_DIR = "folds"
#: a fold model's further training (``export.ensemble: folds``): folds/<nnnn>/fold-<k>/final/.
FINAL_SUBDIR = "final"

Progress = Callable[[dict[str, Any]], None]


def fold_count(config: Any) -> int:
    """K of ``data.folds`` (1: a single split)."""
    return int(getattr(config.data, "folds", None) or 1)


def refit_count(config: Any) -> int:
    """How many configurations the refit scores on every fold (0: none).

    ``search.refit_folds``, at least 1 when ``export.ensemble`` is "folds" (it needs the winner's
    fold models); 0 without folds.
    """
    if fold_count(config) < 2:
        return 0
    count = int(getattr(config.search, "refit_folds", 0) or 0)
    if getattr(config.export, "ensemble", "none") == "folds":
        count = max(count, 1)
    return count


def fold_dir(study_dir: str | Path, trial: int, fold: int) -> Path:
    """The folder of trial ``trial``'s training on fold ``fold``: ``folds/<nnnn>/fold-<k>``."""
    return Path(study_dir) / FOLDS_DIR / f"{int(trial):04d}" / f"fold-{int(fold)}"


def _key(trial: int, fold: int) -> str:
    return f"{int(trial)}/{int(fold)}"


def _final_key(trial: int, fold: int) -> str:
    """The key of a fold model's further training in folds.json (beside its refit's)."""
    return f"{_key(trial, fold)}/{FINAL_SUBDIR}"


def member_count(config: Any) -> int:
    """Networks the final training trains: K with ``export.ensemble: folds`` (the winner's fold
    models), else 1."""
    folds = fold_count(config)
    if folds >= 2 and getattr(config.export, "ensemble", "none") == "folds":
        return folds
    return 1


def refit_epochs(study_dir: str | Path) -> int:
    """Epochs the refit's (trial, fold) trainings trained (not the members' final training)."""
    return sum(int(r.get("epochs") or 0) for key, r in read_results(study_dir).items()
               if key.count("/") == 1 and isinstance(r, Mapping))


def read_results(study_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The recorded (trial, fold) results, by "trial/fold" ({} when there are none)."""
    try:
        stored = json.loads((Path(study_dir) / FOLDS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    results = stored.get("results") if isinstance(stored, Mapping) else None
    return dict(results) if isinstance(results, Mapping) else {}


_WRITE_LOCK = threading.Lock()


def _record_result(study_dir: Path, folds: int, key: str, result: Mapping[str, Any]) -> None:
    """Add one result to folds.json (read, update, write whole through a rename)."""
    with _WRITE_LOCK:
        results = read_results(study_dir)
        results[key] = dict(result)
        text = json.dumps(jsonable({"folds": folds, "results": results}, keep_nan=True),
                          indent=2)
        atomic_write_text(study_dir / FOLDS_FILE, text + "\n")


def planned(config: Any, records: Sequence[TrialRecord], objective: Objective
            ) -> list[TrialRecord]:
    """The configurations the refit scores on every fold: the best complete trials on fold 0."""
    count = refit_count(config)
    if count <= 0:
        return []
    complete = [r for r in records if r.state == "complete" and r.value is not None]
    return sort_best(complete, objective.direction)[:count]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fold_scores(record: TrialRecord, folds: int, results: Mapping[str, Any]) -> dict[str, Any]:
    """One configuration's figures over the folds: fold 0 is its trial, the others the refit's.

    Returns:
        {"trial", "values" (one per fold, None where missing), "states", "complete" (every fold
        scored), "mean", "std" (population standard deviation, over the folds scored),
        "metrics" ({name: {"mean", "std"}} of the validation metrics over the folds scored)}.
    """
    values: list[float | None] = [record.value]
    states = ["complete"]
    metrics: list[Mapping[str, Any]] = [record.values]
    for fold in range(1, folds):
        result = results.get(_key(record.number, fold)) or {}
        ok = result.get("state") == "complete" and _finite(result.get("value"))
        values.append(float(result["value"]) if ok else None)
        states.append(str(result.get("state") or "missing"))
        if ok:
            metrics.append(result.get("values") or {})
    scored = [v for v in values if v is not None]
    out: dict[str, Any] = {"trial": record.number, "values": values, "states": states,
                           "complete": len(scored) == folds, **_mean_std(scored)}
    names = sorted({k for m in metrics for k, v in m.items()
                    if _finite(v) and k.startswith("val_") and not k.endswith("_ema")})
    out["metrics"] = {n: _mean_std([float(m[n]) for m in metrics if _finite(m.get(n))])
                      for n in names}
    return out


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None}
    mean = sum(values) / len(values)
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))}


def winner(study_dir: str | Path, config: Any, records: Sequence[TrialRecord],
           objective: Objective) -> TrialRecord | None:
    """The configuration with the best mean over folds, once every planned one has all its folds
    recorded (a failed fold rules its configuration out); None: no refit, or not finished."""
    plan = planned(config, records, objective)
    if not plan:
        return None
    folds, results = fold_count(config), read_results(study_dir)
    scored = []
    for record in plan:
        figures = fold_scores(record, folds, results)
        if not all(s in ("complete", "failed", "pruned", "infeasible")
                   for s in figures["states"]):
            return None  # a fold still to train
        if figures["complete"]:
            scored.append((figures["mean"], record))
    best: tuple[float, TrialRecord] | None = None
    for mean, record in scored:
        if best is None or objective.better(mean, best[0]):
            best = (mean, record)
    return None if best is None else best[1]


def ranking(study_dir: str | Path, config: Any, records: Sequence[TrialRecord],
            objective: Objective) -> list[TrialRecord]:
    """Complete trials best first: those scored on every fold by their mean (once the refit is
    done), then the others by their fold-0 value."""
    complete = sort_best([r for r in records if r.state == "complete" and r.value is not None],
                         objective.direction)
    if winner(study_dir, config, records, objective) is None:
        return complete
    results = read_results(study_dir)
    means = {}
    for record in planned(config, records, objective):
        figures = fold_scores(record, fold_count(config), results)
        if figures["complete"]:
            means[record.number] = figures["mean"]
    first = sorted((r for r in complete if r.number in means),
                   key=lambda r: means[r.number], reverse=objective.direction == "maximize")
    return first + [r for r in complete if r.number not in means]


def summary(study_dir: str | Path, config: Any, records: Sequence[TrialRecord],
            objective: Objective) -> dict[str, Any] | None:
    """The cross-validation figures for status, the run's summary and ``best/metrics.yaml``.

    Returns:
        None without folds; else {"folds", "refit" (configurations asked), "objective",
        "done" (the refit finished), "winner" (trial number or None), "configurations" (each
        :func:`fold_scores`, best mean first)}.
    """
    folds = fold_count(config)
    if folds < 2:
        return None
    plan = planned(config, records, objective)
    results = read_results(study_dir)
    table = [fold_scores(r, folds, results) for r in plan]
    maximize = objective.direction == "maximize"
    table.sort(key=lambda f: (f["mean"] is None or not f["complete"],
                              -(f["mean"] or 0.0) if maximize else (f["mean"] or 0.0)))
    chosen = winner(study_dir, config, records, objective)
    return {"folds": folds, "refit": refit_count(config), "objective": objective.name,
            "done": chosen is not None, "winner": None if chosen is None else chosen.number,
            "configurations": table}


def summary_lines(report: Mapping[str, Any] | None) -> list[str]:
    """One line per configuration of a :func:`summary` (none without a refit)."""
    if not report or not report.get("configurations"):
        return []
    folds, name = report["folds"], report["objective"]
    state = "winner" if report.get("done") else "refit not finished: the best fold-0 trial leads"
    lines = [f"Cross-validation over {folds} folds ({name}, mean +- std over folds; {state}):"]
    for row in report["configurations"]:
        mark = "*" if row["trial"] == report.get("winner") else " "
        per_fold = ", ".join("-" if v is None else f"{v:.4f}" for v in row["values"])
        figure = ("-" if row["mean"] is None else
                  f"{row['mean']:.4f} +- {row['std']:.4f}")
        missing = [f"fold {k} {s}" for k, s in enumerate(row["states"]) if s != "complete"]
        note = f"  ({', '.join(missing)})" if missing else ""
        lines.append(f" {mark} trial #{row['trial']}: {figure}  [{per_fold}]{note}")
    return lines


# ---------------------------------------------------------------------------------- training
class FoldWorkshop(Workshop):
    """A :class:`Workshop` whose data is fold ``fold``'s split of the study's recorded folds.

    Args:
        config: the study's Config.
        fold: 0 .. K-1.
        hypermodel: the study's hypermodel (the folds share its input and classes); None: made
            from the configuration and the fold's data.
    """

    def __init__(self, config: Any, fold: int, hypermodel: Any = None) -> None:
        super().__init__(config)
        self.fold = int(fold)
        self._hypermodel = hypermodel

    def load_data(self, *, stored_split: bool = True) -> Any:
        """Fold ``fold``'s train and validation parts (from ``split.json``'s folds)."""
        if self._splits is None:
            from segsearch.data import load
            from segsearch.data.split import fold_record, read_record

            path = self.dir / SPLIT_FILE
            record = fold_record(read_record(path), self.fold, where=str(path))
            self._splits = load(self.config.data, split=record)
        return self._splits

    def store_split(self) -> None:
        """Nothing: the study's split.json is the record of every fold."""


def prepare_fold_trials(config: Any, progress: Progress | None, fold: int) -> tuple[Any, Any]:
    """What a worker process trains fold ``fold``'s refits with (see
    :func:`segsearch.workshop.prepare_trials`; bound with ``functools.partial``)."""
    shop = FoldWorkshop(config, fold)
    return shop.hypermodel(), shop.training_context(progress)


def fold_validation(config: Any, fold: int) -> Any:
    """Fold ``fold``'s validation part (the images its fold model did not train on); bound with
    ``functools.partial`` it is what :func:`segsearch.export.export_study` takes as
    ``fold_validation`` (it pickles into a worker process)."""
    return FoldWorkshop(config, fold).load_data().val


def hp_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """A keras-tuner HyperParameters config holding a trial's values (either engine's): building
    from it declares the space and takes these values (missing ones: their defaults)."""
    return {"space": [], "values": dict(params)}


def refit(study: Any, records: Sequence[TrialRecord], emit: Progress) -> None:
    """Train the planned configurations on the folds not yet recorded (see the module docstring).

    Args:
        study: the :class:`segsearch.driver.Study` (its config, folder, objective, deadline,
            engine and workers).
        records: every trial.
        emit: the progress callback ("refit_start", "refit_epoch", "refit_fold_end",
            "refit_end").
    """
    config, objective = study.config, study.objective
    plan = planned(config, records, objective)
    folds = fold_count(config)
    if not plan:
        return
    results = read_results(study.dir)
    todo: dict[int, list[TrialRecord]] = {}
    for fold in range(1, folds):
        for record in plan:
            done = results.get(_key(record.number, fold))
            if done is None or _retry(done):
                todo.setdefault(fold, []).append(record)
    say = _locked(emit)
    if todo and not study.deadline_passed():
        say({"event": "refit_start", "folds": folds, "trials": [r.number for r in plan],
             "trainings": sum(len(v) for v in todo.values())})
        _run_folds(study, say, sorted(todo.items()))
    report = summary(study.dir, config, records, objective)
    if report is not None:
        say({"event": "refit_end", **report, "lines": summary_lines(report)})


def _locked(emit: Progress) -> Progress:
    """``emit`` behind a lock: the folds' threads send events one at a time."""
    lock = threading.Lock()

    def say(event: dict[str, Any]) -> None:
        with lock:
            emit(event)

    return say


def _run_folds(study: Any, say: Progress, jobs: Sequence[tuple[int, Sequence[TrialRecord]]],
               further: int = 0) -> None:
    """:func:`_run_fold` for each (fold, trials): in the search's worker processes up to
    ``search.workers`` folds at once (``train.isolation: process``), else here, one by one."""
    isolated = bool(getattr(study.engine, "isolated", False))
    run_fold = functools.partial(_run_fold, study, say, isolated, further=further)
    parallel = int(getattr(study.config.search, "workers", 1) or 1) if isolated else 1
    if parallel > 1 and len(jobs) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(parallel, len(jobs))) as pool:
            for job in [pool.submit(run_fold, fold, trials, slot)
                        for slot, (fold, trials) in enumerate(jobs)]:
                job.result()
    else:
        for fold, trials in jobs:
            run_fold(fold, trials, 0)


def _fold_model(study_dir: Path, result: Mapping[str, Any]) -> Path | None:
    """The model of a recorded fold training that completed and whose file is there, else None."""
    if result.get("state") != "complete" or not result.get("model"):
        return None
    path = Path(study_dir) / str(result["model"])
    return path if path.is_file() else None


def _retry(result: Mapping[str, Any]) -> bool:
    """Whether a recorded fold is trained again: it failed from outside its configuration."""
    return result.get("state") == "failed" and result.get("failure") != "configuration"


def train_members_further(study: Any, best: TrialRecord, epochs: int, emit: Progress) -> None:
    """``export.ensemble: folds``: train the winner's fold models 1..K-1 ``epochs`` more, each on
    its fold, as the final training trains fold 0's (see the module docstring).

    Each continues from its refit's checkpoint (the best epoch); its weights replace the refit's
    only when their moving average beats the refit's best (the final training's rule). The
    results go to folds.json (key "trial/fold/final"), the models to
    ``folds/<nnnn>/fold-<k>/final/``; a run that was cut off trains the folds not yet recorded
    (or recorded for another number of epochs). Trains in worker processes like the refit.

    Args:
        study: the :class:`segsearch.driver.Study`.
        best: the winner.
        epochs: epochs each fold model trains further (0: none).
        emit: the progress callback ("final_folds_start", then "refit_fold_start",
            "refit_epoch" and "refit_fold_end" with ``further: True``).
    """
    if member_count(study.config) < 2 or epochs <= 0:
        return
    results = read_results(study.dir)
    todo = []
    for fold in range(1, fold_count(study.config)):
        if _fold_model(study.dir, results.get(_key(best.number, fold)) or {}) is None:
            continue  # no fold model to train (ensemble_for says it is missing)
        done = results.get(_final_key(best.number, fold))
        if done is not None and done.get("planned_epochs") == epochs and not _retry(done) and \
                (not done.get("model") or (study.dir / str(done["model"])).is_file()):
            continue
        todo.append(fold)
    if not todo or study.deadline_passed():
        return
    say = _locked(emit)
    say({"event": "final_folds_start", "trial": best.number, "folds": todo, "epochs": epochs})
    _run_folds(study, say, [(fold, [best]) for fold in todo], further=epochs)


def _further_task(study: Any, record: TrialRecord, fold: int, epochs: int) -> Any:
    """The TrialTask that trains trial ``record``'s fold model ``epochs`` more, and its start."""
    from segsearch.engines.trial import TrialTask

    result = read_results(study.dir).get(_key(record.number, fold)) or {}
    start = int(result.get("best_epoch") or result.get("epochs") or 0)
    out = fold_dir(study.dir, record.number, fold) / FINAL_SUBDIR
    return TrialTask(number=record.number, out_dir=out, epochs=start + epochs,
                     initial_epoch=start, resume_from=study.dir / str(result["model"]),
                     baseline=result.get("value"), phase="refit", fold=fold,
                     smoothed_start=result.get("value"), hparams=dict(record.params),
                     schedule=study.config.train.final_schedule), result


def _run_fold(study: Any, say: Progress, isolated: bool, fold: int,
              trials: Sequence[TrialRecord], slot: int, further: int = 0) -> None:
    """Train ``trials`` on fold ``fold``, in a worker process of their own or here; with
    ``further``, train their fold models that many epochs more (:func:`train_members_further`)."""
    from segsearch.engines.trial import TrialTask, run_trial

    config = study.config
    worker = shop = context = None
    if isolated:
        from segsearch.engines.worker import TrialWorker

        gpus = [g.strip() for g in str(getattr(config.search, "gpus", None) or "").split(",")
                if g.strip()]
        worker = TrialWorker(config, gpu=gpus[slot % len(gpus)] if gpus else None,
                             on_event=say,
                             prepare=functools.partial(prepare_fold_trials, fold=fold))
    try:
        for record in trials:
            if study.deadline_passed():
                return
            refit_result: Mapping[str, Any] = {}
            if further:
                task, refit_result = _further_task(study, record, fold, further)
            else:
                epochs = max(1, int(record.initial_epoch or 0) + int(record.epochs or 0))
                task = TrialTask(number=record.number, out_dir=fold_dir(study.dir, record.number,
                                                                        fold),
                                 epochs=epochs, phase="refit", fold=fold)
            out = task.out_dir
            if out.exists():
                shutil.rmtree(out)  # a training that was cut off
            say({"event": "refit_fold_start", "trial": record.number, "fold": fold,
                 "epochs": task.epochs - task.initial_epoch, "further": bool(further)})
            values = hp_config(record.params)
            if worker is not None:
                outcome = worker.run(task, None, deadline=study.deadline, hp_config=values)
            else:
                if context is None:
                    # the same input and classes as fold 0
                    shop = FoldWorkshop(config, fold, hypermodel=study.hypermodel())
                    context = shop.training_context(say, deadline=study.deadline)
                outcome = run_trial(context, functools.partial(_build, study.hypermodel(),
                                                               values), task)
            (out / LAST_CHECKPOINT_FILE).unlink(missing_ok=True)  # no training continues it
            result = {
                "trial": record.number, "fold": fold, "state": outcome.state,
                "value": outcome.value, "values": dict(outcome.values), "epochs": outcome.epochs,
                "best_epoch": outcome.best_epoch, "reason": outcome.reason,
                "failure": outcome.failure, "duration_s": outcome.duration_s,
                "model": (str(Path(FOLDS_DIR) / out.relative_to(study.dir / FOLDS_DIR)
                              / CHECKPOINT_FILE) if outcome.checkpoint is not None else None),
            }
            key = _key(record.number, fold)
            if further:  # no epoch beat the refit's best: its model stays the member
                key = _final_key(record.number, fold)
                result.update(planned_epochs=further, from_epoch=task.initial_epoch,
                              refit_value=refit_result.get("value"))
                if outcome.checkpoint is None:
                    result.update(value=refit_result.get("value"),
                                  best_epoch=refit_result.get("best_epoch"))
            _record_result(Path(study.dir), fold_count(config), key, result)
            say({"event": "refit_fold_end", **result, "further": bool(further)})
    finally:
        if worker is not None:
            worker.close()


def _build(hypermodel: Any, values: Mapping[str, Any]) -> Any:
    import keras_tuner

    return hypermodel.build(keras_tuner.HyperParameters.from_config(dict(values)))


# ---------------------------------------------------------------------------------- ensembles
def ensemble_for(study_dir: str | Path, config: Any, best: TrialRecord, model_path: str | Path,
                 records: Sequence[TrialRecord], objective: Objective) -> Any:
    """The :class:`segsearch.ensemble.Ensemble` ``export.ensemble`` asks for, or None.

    "folds": the winner's model (``model_path``, fold 0) and its fold models; "top_k": the winner's
    model and the trial checkpoints of the next best configurations (:func:`ranking`), up to
    ``export.ensemble_size`` members. Members whose model is gone are left out (and said so); with
    fewer than two members there is no ensemble.
    """
    from segsearch.ensemble import Ensemble, Member

    kind = getattr(config.export, "ensemble", "none")
    if kind == "none":
        return None
    study_dir = Path(study_dir)
    first = Member(trial=best.number, fold=0 if kind == "folds" else None, path=Path(model_path),
                   params=dict(best.params), architecture=best.architecture,
                   own_value=best.value)
    members, missing = [first], []
    if kind == "folds":
        results = read_results(study_dir)
        for fold in range(1, fold_count(config)):
            result = results.get(_key(best.number, fold)) or {}
            further = results.get(_final_key(best.number, fold)) or {}
            if _fold_model(study_dir, further) is not None:
                result = further  # trained further, and it beat the refit's best
            path = _fold_model(study_dir, result)
            if path is not None:
                members.append(Member(trial=best.number, fold=fold, path=path,
                                      params=dict(best.params), architecture=best.architecture,
                                      own_value=result.get("value")))
            else:
                missing.append(f"fold {fold} ({result.get('state') or 'not trained'})")
        note = ("members 1.. were trained on these validation images (fold 0's): the ensemble's "
                "and their figures here are optimistic; own_value is each fold model on its own "
                "held-out fold")
    else:
        size = int(getattr(config.export, "ensemble_size", 3))
        for record in ranking(study_dir, config, records, objective):
            if len(members) >= size:
                break
            if record.number == best.number:
                continue
            path = study_dir / str(record.checkpoint or "")
            if record.checkpoint and path.is_file():
                members.append(Member(trial=record.number, fold=None, path=path,
                                      params=dict(record.params),
                                      architecture=record.architecture, own_value=record.value))
            else:
                missing.append(f"trial #{record.number} (its checkpoint is gone)")
        note = None
    if len(members) < 2:  # nothing to average: the model alone is exported
        return None
    return Ensemble(kind=kind, members=members, missing=missing, note=note)
