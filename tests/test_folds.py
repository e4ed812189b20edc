"""k-fold cross-validation (data.folds, search.refit_folds) and export.ensemble, end to end.

One tiny Optuna study (16x16, 12 images, 3 folds, 2 trials of 1 epoch, the best 2 re-scored on
every fold, trained in this process) is interrupted in its refit by the fault hook
(``SEGSEARCH_FAULT``, tests/_faults.py) and resumed; the tests below read it: the folds' record,
the winner by the mean over folds, the fold ensemble (and a top-k one exported from the same
study) reloaded in safe mode, scored and run by ``predict``. A keras-tuner study of one trial
checks that its trials' values rebuild on the other folds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from segsearch.data.split import fold_record, make_folds, make_split, read_record, resolve
from segsearch.errors import ConfigError, DataError, StudyError

NAMES = [f"img_{i:02d}.png" for i in range(11)]


# ----------------------------------------------------------------------------- fold assignment
def test_folds_are_disjoint_cover_every_image_and_follow_the_seed() -> None:
    record = make_folds(NAMES, folds=3, seed=7)
    folds = record["folds"]
    assert len(folds) == 3 and sorted(len(f) for f in folds) == [3, 4, 4]
    assert sorted(n for f in folds for n in f) == sorted(NAMES)  # every image, once
    assert make_folds(list(reversed(NAMES)), folds=3, seed=7) == record  # order does not matter
    assert make_folds(NAMES, folds=3, seed=8)["folds"] != folds  # the seed does
    assert record["val"] == folds[0] and set(record["train"]) == set(NAMES) - set(folds[0])
    for k in range(3):
        part = fold_record(record, k)
        assert part["val"] == folds[k] and not set(part["train"]) & set(part["val"])
        assert sorted(part["train"] + part["val"]) == sorted(NAMES)
        train, val = resolve(read_record(part), NAMES, None, where="t")
        assert sorted(NAMES[i] for i in val) == folds[k]
    # make_split draws the folds when asked, with fold_seed over seed
    assert make_split(NAMES, val_fraction=0.2, seed=1, folds=3, fold_seed=7) == record
    assert make_split(NAMES, val_fraction=0.2, seed=7, folds=3) == record
    with pytest.raises(DataError, match="data.folds 5 needs at least 5"):
        make_folds(NAMES[:4], folds=5, seed=0)
    broken = {**record, "folds": [folds[0], folds[0], folds[2]]}
    with pytest.raises(DataError, match="overlap"):
        fold_record(broken, 1)
    with pytest.raises(DataError, match="no folds"):
        fold_record(make_split(NAMES, val_fraction=0.2, seed=0), 1)


def test_folds_settings_are_checked() -> None:
    from segsearch.data import DataConfig

    assert DataConfig(folds=1).folds is None  # one split, as without the key
    assert DataConfig(folds=4, fold_seed=3).to_dict()["folds"] == 4
    with pytest.raises(ConfigError, match="data.folds: expected an integer >= 2"):
        DataConfig(folds=0)
    with pytest.raises(ConfigError, match="data.fold_seed"):
        DataConfig(folds=3, fold_seed=-1)
    with pytest.raises(ConfigError, match="data.val_source"):
        DataConfig(folds=3, val_source="elsewhere")


FOLD_ERRORS = [
    ("export:\n  ensemble: folds\n", "an ensemble of the fold models needs data.folds >= 2"),
    ("search:\n  refit_folds: 2\n", "re-scoring on every fold needs data.folds >= 2"),
    ("export:\n  ensemble: folds_\n", "did you mean 'folds'?"),
    ("export:\n  ensemble: top_k\n  ensemble_size: 1\n", "export.ensemble_size: must be >= 2"),
    ("data:\n  folds: 1.5\n", "data.folds: expected an integer >= 2"),
]


@pytest.mark.parametrize(("text", "expected"), FOLD_ERRORS, ids=[e[1][:30] for e in FOLD_ERRORS])
def test_fold_config_errors_exit_2_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    import contextlib
    import io

    from segsearch.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("architecture: unet\n" + text, encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["run", str(space), "--study-dir", str(tmp_path / "s")])
    message = err.getvalue()
    assert code == 2 and message.startswith("segsearch: error: ") and message.count("\n") == 1
    assert expected in message and "Traceback" not in message
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- the shared study
def _raw(npz: Path, engine: str, trials: int, refit: int, final: int = 0) -> dict:
    return {
        "study": f"folds-{engine}",
        "architecture": "unet",
        "data": {"source": str(npz), "image_size": 16, "augment": 0, "folds": 3, "fold_seed": 5},
        # batches of 8 take a fold's 8 training images in one step: one trace per training
        "train": {"epochs": 1, "batch_size": 8, "isolation": "none", "final_epochs": final},
        "search": {"engine": engine, "trials": trials, "refit_folds": refit},
        "space": {"filters": 4, "depth": {"min": 1, "max": 2, "default": 1}},
        "export": {"overlays": 1, "saved_model": False, "ensemble": "folds"},
    }


@pytest.fixture(scope="module", autouse=True)
def _eager():
    """The trials and refits train eagerly (tests/_faults.py): the folds' bookkeeping is tested
    here, graph-mode training in tests/test_driver.py and test_robust.py."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGSEARCH_TEST_EAGER", "1")
        yield


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    x = rng.random((12, 16, 16, 1)).astype("float32")
    path = tmp_path_factory.mktemp("folds-data") / "tiny.npz"
    np.savez(path, images=x, masks=(x > 0.5).astype("float32"))
    return path


@pytest.fixture(scope="module")
def study(npz, tmp_path_factory):
    """The Optuna study: interrupted at its first fold-2 training, then resumed."""
    from segsearch.driver import Study
    from segsearch.spacefile import load_config

    config = load_config(_raw(npz, "optuna", 2, 2, final=1),
                         study_dir=tmp_path_factory.mktemp("folds") / "s", check_space=False)
    first: list[dict] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGSEARCH_FAULT", "0/2:interrupt,1/2:interrupt")
        with pytest.raises(KeyboardInterrupt):
            Study(config).run(progress=first.append)
    stored = json.loads((config.study_dir / "folds.json").read_text())
    second: list[dict] = []
    results = Study(config).run(progress=second.append)
    return {"config": config, "dir": config.study_dir, "first": first, "second": second,
            "interrupted": stored, "results": results}


def _events(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e.get("event") == kind]


def test_split_file_records_the_folds(study) -> None:
    split = json.loads((study["dir"] / "split.json").read_text())
    assert split["method"] == "folds" and len(split["folds"]) == 3
    assert split["val"] == split["folds"][0]  # the search scores on fold 0
    assert sorted(n for f in split["folds"] for n in f) == sorted(split["train"] + split["val"])
    meta = json.loads((study["dir"] / "study.json").read_text())
    assert meta["fingerprint"]["data"]["folds"] == 3


def test_an_interrupted_refit_resumes_with_the_folds_left(study) -> None:
    # the first run: both configurations on fold 1, then the interrupt at fold 2
    assert sorted(study["interrupted"]["results"]) == ["0/1", "1/1"]
    ended = _events(study["first"], "refit_fold_end")
    assert sorted((e["trial"], e["fold"]) for e in ended) == [(0, 1), (1, 1)]
    # the second: no trial again, only the fold-2 trainings
    assert not _events(study["second"], "trial_start")
    again = [e for e in _events(study["second"], "refit_fold_start") if not e["further"]]
    assert sorted((e["trial"], e["fold"]) for e in again) == [(0, 2), (1, 2)]
    stored = json.loads((study["dir"] / "folds.json").read_text())
    refits = {k: v for k, v in stored["results"].items() if not k.endswith("/final")}
    assert sorted(refits) == ["0/1", "0/2", "1/1", "1/2"]
    for result in refits.values():
        assert result["state"] == "complete" and (study["dir"] / result["model"]).is_file()
        assert result["epochs"] == 1


def test_the_winners_fold_models_are_trained_further_like_the_winner(study) -> None:
    from segsearch.folds import read_results

    best, folder = study["results"].best_trial, study["dir"]
    stored = read_results(folder)
    further = {k: v for k, v in stored.items() if k.endswith("/final")}
    assert sorted(further) == [f"{best}/1/final", f"{best}/2/final"]
    started = _events(study["second"], "final_folds_start")
    assert [(e["trial"], e["folds"], e["epochs"]) for e in started] == [(best, [1, 2], 1)]
    assert not _events(study["first"], "final_folds_start")  # the refit was cut off
    hyper = yaml.safe_load((folder / "best" / "hyperparameters.yaml").read_text())
    members = {m["fold"]: Path(m["model"]) for m in hyper["ensemble"]["members"]}
    for fold in (1, 2):
        result, refit = further[f"{best}/{fold}/final"], stored[f"{best}/{fold}"]
        assert result["planned_epochs"] == 1 and result["epochs"] == 1
        assert result["from_epoch"] == refit["best_epoch"] and result["state"] == "complete"
        assert result["refit_value"] == refit["value"]
        if result["model"]:  # an epoch beat the refit's best: that model is the member
            assert (folder / result["model"]).is_file() and "/final/" in result["model"]
            assert members[fold] == Path(result["model"])
        else:  # none did: the refit's model stays the member, with its value
            assert result["value"] == refit["value"] and members[fold] == Path(refit["model"])


def test_the_budget_counts_the_refit_and_shares_the_rest_among_the_fold_models(study) -> None:
    import dataclasses

    from segsearch.driver import Study
    from segsearch.folds import refit_epochs

    config = study["config"]
    budget = dataclasses.replace(config, train=dataclasses.replace(
        config.train, final_epochs=None, budget_epochs=40))
    records = Study(budget).trials()
    used = sum(r.epochs for r in records)
    assert refit_epochs(study["dir"]) == 4  # 2 configurations x 2 folds x 1 epoch, not the finals
    assert Study(budget).final_epochs(records) == (40 - used - 4) // 3
    single = dataclasses.replace(budget, export=dataclasses.replace(budget.export,
                                                                    ensemble="none"))
    assert Study(single).final_epochs(records) == 40 - used - 4


def test_the_winner_is_the_best_mean_over_folds(study) -> None:
    from segsearch.folds import fold_scores, read_results

    results = study["results"]
    cv = results.cross_validation
    assert cv["folds"] == 3 and cv["done"] and len(cv["configurations"]) == 2
    trials = {r.number: r for r in results.trials}
    stored = read_results(study["dir"])
    means = {}
    for number in (0, 1):
        figures = fold_scores(trials[number], 3, stored)
        values = [trials[number].value, stored[f"{number}/1"]["value"],
                  stored[f"{number}/2"]["value"]]
        assert figures["values"] == values
        assert figures["mean"] == pytest.approx(np.mean(values))
        assert figures["std"] == pytest.approx(np.std(values))
        means[number] = figures["mean"]
    assert results.best_trial == cv["winner"] == max(means, key=means.get)
    assert "val_dice" in cv["configurations"][0]["metrics"]
    metrics = yaml.safe_load((study["dir"] / "best" / "metrics.yaml").read_text())
    assert metrics["cross_validation"]["winner"] == results.best_trial
    end = _events(study["second"], "refit_end")[-1]
    assert any(line.startswith(" * trial #") for line in end["lines"])


def test_status_shows_the_folds(study, capsys) -> None:
    from segsearch.cli import main

    assert main(["status", str(study["dir"])]) == 0
    out = capsys.readouterr().out
    assert "Cross-validation over 3 folds" in out and "+-" in out
    assert main(["status", str(study["dir"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cross_validation"]["winner"] == study["results"].best_trial


def test_a_changed_fold_count_is_refused_on_resume(study) -> None:
    import dataclasses

    from segsearch.driver import Study

    config = study["config"]
    changed = dataclasses.replace(config, data=dataclasses.replace(config.data, folds=4))
    with pytest.raises(StudyError, match=r"data\.folds: stored 3, now 4.*--fresh"):
        Study(changed).run()


def _check_ensemble(folder: Path, members: int, study_dir: Path) -> dict:
    """The exported ensemble reloads in safe mode, averages its members, and is scored."""
    import keras

    from segsearch.engines.trial import release_memory

    model = keras.models.load_model(folder / "model.keras", safe_mode=True)
    names = [layer.name for layer in model.layers]
    assert names[-1] == "average" and sum(n.startswith("member_") for n in names) == members
    metrics = yaml.safe_load((folder / "metrics.yaml").read_text())
    hyper = yaml.safe_load((folder / "hyperparameters.yaml").read_text())
    listed = hyper["ensemble"]["members"]
    assert len(listed) == members == len(metrics["ensemble"]["members"])
    assert all((study_dir / m["model"]).is_file() and m["params"] for m in listed)
    assert metrics["ensemble"]["value"] == metrics["objective"]["value"]
    assert all(m["value"] is not None for m in metrics["ensemble"]["members"])
    # the average of the members' probabilities
    x = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    subs = [layer for layer in model.layers if layer.name.startswith("member_")]
    mean = np.mean([np.asarray(s(x)) for s in subs], axis=0)
    np.testing.assert_allclose(np.asarray(model(x)), mean, rtol=1e-5, atol=1e-6)
    release_memory()
    return metrics


def test_the_fold_ensemble_loads_in_safe_mode_and_predict_runs_it(study, tmp_path) -> None:
    from PIL import Image

    from segsearch.predict import predict

    best = study["dir"] / "best"
    metrics = _check_ensemble(best, 3, study["dir"])
    assert [m["fold"] for m in metrics["ensemble"]["members"]] == [0, 1, 2]
    assert "optimistic" in metrics["ensemble"]["note"]
    # TTA and post-processing chosen on the out-of-fold predictions: all 12 images, once each
    chosen = metrics["test_time_augmentation"]["chosen_on"]
    assert chosen.startswith("out-of-fold") and "3 fold models" in chosen
    assert "(12 images)" in chosen
    assert metrics["refined"]["on"] == chosen
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray((np.random.default_rng(1).random((16, 16)) * 255).astype(np.uint8)).save(
        images / "a.png")
    written = predict(best, images, tmp_path / "out")
    assert [p.name for p in written] == ["a.png"]
    assert np.asarray(Image.open(written[0])).shape == (16, 16)


def test_a_top_k_ensemble_exports_from_the_same_study(study) -> None:
    import dataclasses

    from segsearch.driver import Study

    config = study["config"]
    top = dataclasses.replace(config, export=dataclasses.replace(config.export, ensemble="top_k",
                                                                 ensemble_size=2))
    folder = Study(top).export()
    metrics = _check_ensemble(folder, 2, study["dir"])
    members = metrics["ensemble"]["members"]
    assert [m["trial"] for m in members][0] == study["results"].best_trial
    assert sorted(m["trial"] for m in members) == [0, 1] and "fold" not in members[0]
    assert "chosen_on" not in metrics["test_time_augmentation"]  # on the validation images


# ----------------------------------------------------------------------------- keras-tuner
def test_keras_tuner_trials_are_refit_on_every_fold(npz, tmp_path) -> None:
    from segsearch.driver import Study
    from segsearch.spacefile import load_config

    raw = _raw(npz, "keras-tuner", 1, 1)
    raw["export"] = {"enabled": False}
    config = load_config(raw, study_dir=tmp_path / "kt", check_space=False)
    results = Study(config).run()
    cv = results.cross_validation
    assert cv["done"] and cv["winner"] == results.best_trial
    row = cv["configurations"][0]
    assert row["states"] == ["complete"] * 3 and all(v is not None for v in row["values"])


def test_an_ensemble_worse_than_a_member_says_so() -> None:
    from segsearch.ensemble import Ensemble, Member

    members = [Member(trial=n, fold=None, path=Path(f"m{n}"), params={}) for n in (3, 5)]
    ensemble = Ensemble(kind="top_k", members=members, _models=["m3", "m5"])
    values = {"m3": 0.60, "m5": 0.40}
    report = ensemble.report(lambda m: {"val_dice": values[m]}, "val_dice", 0.55)
    assert report["warning"].startswith("the ensemble's val_dice 0.5500 is worse than its member "
                                        "trial #3 alone (0.6000)")
    assert "warning" not in ensemble.report(lambda m: {"val_dice": values[m]}, "val_dice", 0.65)
    # a loss: lower is better
    low = ensemble.report(lambda m: {"val_loss": values[m]}, "val_loss", 0.5, "minimize")
    assert "trial #5 alone (0.4000)" in low["warning"]
