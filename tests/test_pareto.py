"""segsearch.pareto: the Pareto front, the knee, export.pick; cost objectives in the space file; a
tiny real search on quality against size and latency (status shows the front, export picks)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import yaml

from segsearch.cli import main
from segsearch.errors import ConfigError, StudyError
from segsearch.pareto import dominates, knee, pareto_front, pick
from segsearch.records import Objective, TrialRecord
from segsearch.spacefile import load_config

QUALITY_LATENCY = Objective(("val_dice", "latency_ms"), ("maximize", "minimize"))


def _trials(*points: tuple[float, float], state: str = "complete") -> list[TrialRecord]:
    return [TrialRecord(n, state, value=d, objectives=[d, ms]) for n, (d, ms) in enumerate(points)]


# ----------------------------------------------------------------------------------- the front
def test_dominates_needs_one_strict_improvement() -> None:
    directions = ("maximize", "minimize")
    assert dominates((0.9, 10.0), (0.8, 10.0), directions)
    assert not dominates((0.9, 10.0), (0.9, 10.0), directions)
    assert not dominates((0.9, 20.0), (0.8, 10.0), directions)


def test_front_holds_the_non_dominated_complete_trials_best_quality_first() -> None:
    trials = _trials((0.6, 10.0), (0.9, 30.0), (0.85, 12.0), (0.7, 12.0))  # 3 is dominated by 2
    trials += [TrialRecord(4, "pruned", value=0.99, objectives=[0.99, 1.0]),
               TrialRecord(5, "complete", value=0.95, objectives=[0.95, math.nan]),
               TrialRecord(6, "failed")]
    assert [t.number for t in pareto_front(trials, QUALITY_LATENCY)] == [1, 2, 0]


def test_knee_is_closest_to_utopia_after_scaling_each_objective_over_the_front() -> None:
    # scaled (1 - quality share, latency share): #0 (0, 1), #1 (0.17, 0.1), #2 (1, 0)
    front = pareto_front(_trials((0.9, 30.0), (0.85, 12.0), (0.6, 10.0)), QUALITY_LATENCY)
    assert knee(front, QUALITY_LATENCY).number == 1
    # two extremes are equally far: the better quality wins
    front = pareto_front(_trials((0.9, 30.0), (0.6, 10.0)), QUALITY_LATENCY)
    assert knee(front, QUALITY_LATENCY).number == 0


def test_pick_rules() -> None:
    trials = _trials((0.9, 30.0), (0.85, 12.0), (0.6, 10.0), (0.5, 11.0))
    assert pick(trials, QUALITY_LATENCY).trial.number == 0
    chosen = pick(trials, QUALITY_LATENCY, "knee")
    assert chosen.trial.number == 1 and chosen.front == (0, 1, 2)
    assert chosen.values == {"val_dice": 0.85, "latency_ms": 12.0}
    assert pick(trials, QUALITY_LATENCY, {"max_latency_ms": 20}).trial.number == 1
    assert pick(trials, QUALITY_LATENCY, {"max_latency_ms": 11.5}).trial.number == 2
    record = pick(trials, QUALITY_LATENCY, {"max_latency_ms": 20}).to_dict()
    assert record["rule"] == {"max_latency_ms": 20} and "latency_ms <= 20" in record["means"]


def test_a_limit_no_trial_meets_names_the_cheapest_trial() -> None:
    trials = _trials((0.9, 30.0), (0.6, 10.0))
    with pytest.raises(StudyError, match=r"no complete trial has latency_ms <= 5 \(the lowest "
                                         r"latency_ms is trial 1's 10\)"):
        pick(trials, QUALITY_LATENCY, {"max_latency_ms": 5})
    with pytest.raises(StudyError, match="max_params needs params among search.objective"):
        pick(trials, QUALITY_LATENCY, {"max_params": 5})


# ----------------------------------------------------------------------------------- the space file
def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_cost_objectives_are_minimised_and_need_optuna() -> None:
    config = load_config("unet", sets=["search.objective=[val_dice, params, flops, latency_ms]",
                                       "search.algorithm=nsga2", "search.latency_batches=5"])
    assert config.search.directions == ("maximize", "minimize", "minimize", "minimize")
    assert config.search.pruner == "none" and config.search.latency_batches == 5
    picked = load_config("unet", sets=["search.objective=[val_dice, latency_ms]",
                                       "search.algorithm=tpe", "export.pick={max_latency_ms: 20}"])
    assert load_config(picked.to_dict(), study_dir=picked.study_dir) == picked


CONFIG_ERRORS = [
    (["search.objective=[val_dice, latency]"],
     "search.objective: unknown metric 'latency'; did you mean 'latency_ms'?"),
    (["search.objective=latency_ms"], "a search needs a quality metric"),
    (["search.objective=[params, val_dice]", "search.algorithm=nsga2"],
     "put the quality metric first: [val_dice, params]"),
    (["search.objective=[val_dice, params]", "search.direction=[maximize, maximize]"],
     "search.direction: params is a cost and is minimised"),
    (["search.engine=keras-tuner", "search.objective=[val_dice, params]"],
     "keras-tuner adds several objectives up unscaled"),
    (["export.pick=kne"], "export.pick: unknown rule 'kne'; did you mean 'knee'?"),
    (["export.pick=knee"], "export.pick: knee balances several objectives"),
    (["search.objective=[val_dice, params]", "search.algorithm=nsga2",
      "export.pick={max_latency: 20}"], "export.pick.max_latency: unknown key"),
    (["search.objective=[val_dice, latency_ms]", "search.algorithm=nsga2",
      "export.pick={max_latency_ms: -1}"], "export.pick.max_latency_ms: must be a number > 0"),
    (["search.objective=[val_dice, params]", "search.algorithm=nsga2",
      "export.pick={max_latency_ms: 20}"], "max_latency_ms needs latency_ms among"),
    (["search.latency_batches=0"], "search.latency_batches: must be >= 1"),
]


@pytest.mark.parametrize(("sets", "expected"), CONFIG_ERRORS,
                         ids=[e[1][:30] for e in CONFIG_ERRORS])
def test_config_errors_exit_2_with_one_line(tmp_path: Path, sets: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("unet", sets=sets)
    assert expected in str(info.value)
    argv = ["run", "unet", "--study-dir", str(tmp_path / "s")]
    for item in sets:
        argv += ["--set", item]
    code, _, err = _run(argv)
    assert code == 2 and err.startswith("segsearch: error: ") and err.count("\n") == 1, err
    assert expected in err and not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------------- a real search
SEARCH = ["--trials", "3", "--epochs", "1", "--image-size", "32",
          "--set", "space.filters=[2, 4, 8]", "--set", "space.depth=1",
          "--set", "train.final_epochs=0", "--set", "export.saved_model=false",
          "--set", "export.overlays=0", "--set", "data.sample_count=20",
          "--set", "search.objective=[val_dice, params, flops, latency_ms]",
          "--set", "search.algorithm=nsga2", "--set", "search.latency_batches=3",
          # trained in this process: the worker process is test_robust.py's and test_devices.py's
          "--set", "train.isolation=none"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-trial nsga2 search of quality against params, flops and latency, exported as knee."""
    folder = tmp_path_factory.mktemp("pareto") / "s"
    with pytest.MonkeyPatch.context() as patch:  # eager trials (tests/_faults.py): the costs
        patch.setenv("SEGSEARCH_TEST_EAGER", "1")  # and the front are tested, not the training
        code, out, err = _run(["run", "unet", "--study-dir", str(folder), *SEARCH,
                               "--set", "export.pick=knee"])
    assert code == 0, err
    assert "Pareto front (marked *): trials " in out and "export.pick knee: trial #" in out
    return folder


def _complete(folder: Path) -> list[TrialRecord]:
    from segsearch.records import read_trial_records

    return [r for r in read_trial_records(folder) if r.state == "complete"]


def test_trials_report_their_costs_with_the_metric(study: Path) -> None:
    complete = _complete(study)
    assert len(complete) == 3
    for record in complete:
        dice, params, flops, latency = record.objectives
        assert dice == record.value and record.values["params"] == params
        assert params > 0 and flops > params and latency > 0
    by_filters = {r.params["filters"]: r.values["params"] for r in complete}
    assert len(by_filters) == len(set(by_filters.values()))  # wider networks, more parameters


def test_status_shows_the_front_and_the_pick(study: Path) -> None:
    front = pareto_front(_complete(study), Objective(
        ("val_dice", "params", "flops", "latency_ms"), ("maximize", "minimize", "minimize",
                                                        "minimize")))
    code, out, _ = _run(["status", str(study)])
    assert code == 0
    assert f"Pareto front: {len(front)} of 3 complete trials (marked * above)" in out
    marked = [line.split()[0] for line in out.splitlines() if " complete * " in line]
    assert sorted(marked) == sorted(str(t.number) for t in front)
    assert "export.pick knee: trial #" in out
    code, out, _ = _run(["status", str(study), "--json"])
    report = json.loads(out)
    assert report["pareto_front"] == [t.number for t in front]
    assert report["pick"]["rule"] == "knee" and report["pick"]["trial"] in report["pareto_front"]


def test_export_follows_each_pick_rule(study: Path) -> None:
    from segsearch.driver import Study

    stored = Study.open(study).config
    objective = Objective(stored.search.objectives, stored.search.directions)
    complete = _complete(study)
    front = pareto_front(complete, objective)
    fastest = min(complete, key=lambda r: r.values["latency_ms"])
    limit = fastest.values["latency_ms"] * 1.0001
    within = max((r for r in complete if r.values["latency_ms"] <= limit), key=lambda r: r.value)
    expected = {"best_quality": max(complete, key=lambda r: r.value).number,
                "knee": knee(front, objective).number,
                f"{{max_latency_ms: {limit!r}}}": within.number}
    for rule, number in expected.items():
        config = stored.with_overrides(sets=[f"export.pick={rule}"])
        Study(config).export()
        metrics = yaml.safe_load((study / "best" / "metrics.yaml").read_text())
        assert metrics["pick"]["trial"] == number, rule
        assert metrics["pick"]["front"] == [t.number for t in front]
        assert set(metrics["pick"]["objectives"]) == set(objective.names)
        assert yaml.safe_load((study / "best" / "hyperparameters.yaml").read_text())["trial"] \
            == number


def test_a_limit_no_trial_meets_stops_with_one_line(study: Path) -> None:
    stored = (study / "config.yaml").read_text()
    code, _, err = _run(["run", "unet", "--study-dir", str(study), "--quiet", *SEARCH,
                         "--set", "export.pick={max_latency_ms: 0.000001}"])
    assert code == 2 and err.count("\n") == 1, err
    assert "no complete trial has latency_ms <= 1e-06 (the lowest latency_ms is trial" in err
    # the failed run leaves the study as it was: status and export still use the stored pick
    assert (study / "config.yaml").read_text() == stored
