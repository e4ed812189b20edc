"""segsearch.spacefile: space files -> validated frozen dataclasses, overrides, error messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from segsearch.errors import ConfigError
from segsearch.spacefile import (
    ALGORITHMS,
    METRIC_NAMES,
    Config,
    ExportConfig,
    SearchConfig,
    TrainConfig,
    load_config,
    parse_duration,
    shipped_spaces,
    space_path,
)


def _write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------- defaults
def test_defaults_are_resolved_when_built() -> None:
    config = load_config({"architecture": "unet"})
    assert config.architectures == ("unet",) and config.architecture == "unet"
    assert config.search == SearchConfig(engine="optuna", algorithm="tpe", trials=20,
                                         objective="val_dice", direction="maximize",
                                         pruner="hyperband", seed=0)
    assert config.train == TrainConfig() and config.export == ExportConfig()
    assert config.data.source == "sample"  # runs anywhere without data
    assert config.study == "study" and config.study_dir == Path("studies/study")
    assert config.studies_root == Path("studies") and config.storage is None


def test_engine_defaults_follow_the_engine() -> None:
    search = SearchConfig(engine="keras-tuner")
    assert (search.algorithm, search.pruner) == ("hyperband", "none")
    assert SearchConfig(objective="val_loss").direction == "minimize"
    several = SearchConfig(algorithm="nsga2", objective=["val_dice", "val_loss"])
    assert several.objectives == ("val_dice", "val_loss")
    assert several.directions == ("maximize", "minimize") and several.pruner == "none"


def test_config_is_frozen_and_validated_in_python() -> None:
    config = load_config({"architecture": "unet"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.study = "other"  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"train\.epochs: must be >= 1, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"export\.overlays: must be an integer"):
        ExportConfig(overlays="many")  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1h30m", 5400.0), ("1.5h", 5400.0),
    (45, 45.0), ("120", 120.0), (None, None),
])
def test_durations(text: object, seconds: float | None) -> None:
    assert parse_duration(text) == seconds
    assert SearchConfig(time_limit=text).time_limit == seconds


@pytest.mark.parametrize("text", ["30x", "h", "-5", 0, True, "1h 2"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ConfigError, match="search.time_limit"):
        SearchConfig(time_limit=text)


# ----------------------------------------------------------------------------------- lookup
def test_bare_name_finds_the_packaged_space_from_anywhere(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no spaces/ folder here
    path = space_path("resunet")
    assert path.name == "resunet.yaml" and path.parent.name == "spaces"
    assert path.parent.parent.name == "segsearch"  # the package copy
    assert space_path("resunet.yaml") == path
    config = load_config("resunet")
    assert config.architecture == "resunet" and config.study == "resunet"
    assert config.study_dir == Path("studies/resunet")


def test_an_existing_path_wins_over_a_shipped_name(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "architecture: unet\nstudy: mine\n", "resunet")
    assert load_config("resunet").study == "mine"


def test_study_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "architecture: unet\n", "my unet.yaml")
    assert load_config(path).study == "my_unet"


# ----------------------------------------------------------------------------------- overrides
def test_cli_overrides_and_sets(tmp_path: Path) -> None:
    config = load_config(
        "unet", trials=3, epochs=2, image_size=32, engine="keras-tuner", data="sample",
        study_dir=tmp_path / "s",
        sets=["data.val_fraction=0.25", "space.filters=[4, 8]", "train.jit_compile=false",
              "search.time_limit=10m", "export.saved_model=no"],
    )
    assert config.search.trials == 3 and config.train.epochs == 2
    assert config.data.image_size == (32, 32) and config.data.val_fraction == 0.25
    assert config.search.engine == "keras-tuner" and config.search.algorithm == "hyperband"
    assert config.space["filters"] == [4, 8] and config.train.jit_compile is False
    assert config.search.time_limit == 600.0 and config.export.formats == ("keras",)
    assert config.study_dir == tmp_path / "s"
    assert load_config("unet", image_size="32x48").data.image_size == (32, 48)


def test_storage_url() -> None:
    config = load_config("unet", storage="sqlite:///x.db")
    assert config.storage == "sqlite:///x.db"


def test_data_shorthand_and_later_set_wins() -> None:
    config = load_config({"architecture": "unet", "data": "sample"},
                         sets=["train.epochs=2", "train.epochs=5"])
    assert config.data.source == "sample" and config.train.epochs == 5


def test_to_dict_round_trips_through_yaml(tmp_path: Path) -> None:
    config = load_config("auto", sets=["search.time_limit=1h"], study_dir=tmp_path / "a")
    stored = yaml.safe_load(yaml.safe_dump(config.to_dict()))
    assert load_config(stored, study_dir=config.study_dir) == config
    again = config.with_overrides(trials=2)
    assert again.search.trials == 2 and again.study_dir == config.study_dir
    assert dataclasses.replace(again.search, trials=config.search.trials) == config.search


def test_multi_architecture_space_per_architecture() -> None:
    config = load_config({"architecture": ["unet", "resunet"],
                          "space": {"unet": {"depth": [2, 3]}}})
    assert config.architecture is None and config.architectures == ("unet", "resunet")
    assert config.space_for("unet") == {"depth": [2, 3]} and config.space_for("resunet") == {}


# ----------------------------------------------------------------------------------- errors
ERRORS = [
    # (file text, --set values, expected message parts)
    ("architecture: unet\nserach: {trials: 2}\n", [],
     ["serach: unknown key 'serach'; did you mean 'search'?"]),
    ("architecture: unet\ntrain: {epoch: 3}\n", [],
     ["train.epoch: unknown key 'epoch'; did you mean 'epochs'?"]),
    ("architecture: unet\ndata: {image_sise: 64}\n", [],
     ["data.image_sise: unknown key 'image_sise'; did you mean 'image_size'?"]),
    ("architecture: unet\ntrain: {epochs: three}\n", [],
     ["train.epochs: must be an integer, got 'three'"]),
    ("architecture: unet\ntrain: {batch_size: true}\n", [],
     ["train.batch_size: must be an integer, got true"]),
    ("architecture: unet\ntrain: {epochs: 2, min_epochs: 3}\n", [],
     ["train.min_epochs: must be <= train.epochs", "min_epochs=3, epochs=2"]),
    ("architecture: unet\ntrain: {final_schedule: cosin}\n", [],
     ["train.final_schedule: unknown schedule 'cosin'; did you mean 'cosine'?",
      "Valid: cosine, constant"]),
    ("architecture: unet\ndata: {val_fraction: 1.5}\n", [],
     ["data.val_fraction: must be between 0 and 1", "got 1.5"]),
    ("architecture: unet\nspace: {depth: {min: 5, max: 3}}\n", [],
     ["space.depth: min must be <= max, got min=5, max=3"]),
    ("architecture: unet\nspace: {filter: 8}\n", [],
     ["unknown hyperparameter", "'filter'", "did you mean 'filters'?"]),
    ("architecture: unet\nsearch: {engine: optuan}\n", [],
     ["search.engine: unknown engine 'optuan'; did you mean 'optuna'?"]),
    ("architecture: unet\nsearch: {engine: keras-tuner, algorithm: tpe}\n", [],
     ["search.algorithm: unknown keras-tuner algorithm 'tpe'", "belongs to engine 'optuna'"]),
    ("architecture: unet\nsearch: {algorithm: hyperbnd}\n", [],
     ["search.algorithm", "did you mean"]),
    ("architecture: unet\nsearch: {engine: keras-tuner, pruner: median}\n", [],
     ["search.pruner: pruners are Optuna's", "keras-tuner"]),
    ("architecture: unet\nsearch: {pruner: medain}\n", [],
     ["search.pruner: unknown pruner 'medain'; did you mean 'median'?"]),
    ("architecture: unet\nsearch: {algorithm: nsga2}\n", [],
     ["search.objective: nsga2 searches two or more objectives"]),
    ("architecture: unet\nsearch: {objective: val_dise}\n", [],
     ["search.objective: unknown metric 'val_dise'; did you mean 'val_dice'?"]),
    ("architecture: [unet, resunet]\nspace: {depth: 3}\n", [],
     ["space.depth: 'depth' is not one of the searched architectures", "e.g. space.unet.depth"]),
    ("architecture: resnet\n", [],
     ["architecture: unknown architecture 'resnet'; did you mean 'resunet'?"]),
    ("study: ../escape\narchitecture: unet\n", [], ["study: must be a plain folder name"]),
    ("study: /abs/path\narchitecture: unet\n", [], ["study: must be a plain folder name"]),
    ("study: a/b\narchitecture: unet\n", [], ["study: must be a plain folder name"]),
    ("study: .hidden\narchitecture: unet\n", [], ["study: must be a plain folder name"]),
    ("architecture: unet\ntrain:\n  epochs: 3\n  epochs: 4\n", [],
     ["line 4: duplicate key 'epochs' (first on line 3)"]),
    ("architecture: unet\ntrain: [1, 2\n", [], ["not valid YAML"]),
    ("- unet\n", [], ["a space file is a mapping of sections"]),
    ("study: x\n", [], ["architecture: missing"]),
    ("architecture: unet\ntrain: {weights: imagenet}\n", [],
     ["train.weights: only resnet50_unet and deeplabv3plus"]),
    ("architecture: unet\n", ["train.epoch=3"],
     ["--set train.epoch=3: train.epoch: unknown key 'epoch'; did you mean 'epochs'?"]),
    ("architecture: unet\n", ["trian.epochs=3"],
     ["--set trian.epochs=3: unknown key 'trian'; did you mean 'train'?"]),
    ("architecture: unet\n", ["train.epochs=abc"],
     ["--set train.epochs=abc: train.epochs: must be an integer, got 'abc'"]),
    ("architecture: unet\n", ["space.filtres=8"],
     ["--set space.filtres=8: space", "did you mean 'filters'?"]),
    ("architecture: unet\n", ["train.epochs"], ["expected KEY=VALUE"]),
]


@pytest.mark.parametrize(("text", "sets", "parts"), ERRORS,
                         ids=[f"{i}-{e[2][0][:30]}" for i, e in enumerate(ERRORS)])
def test_errors_name_file_key_value_and_fix(tmp_path: Path, text: str, sets: list[str],
                                            parts: list[str]) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, sets=sets)
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message
    if not sets:
        assert message.startswith(f"{path}: ")


def test_missing_files_and_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such space file; did you mean 'resunet'\?"):
        load_config("resunt")
    with pytest.raises(ConfigError, match="no such space file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(str(tmp_path) + "/")


def test_storage_and_engine_conflicts() -> None:
    with pytest.raises(ConfigError, match="storage: must be an Optuna storage URL"):
        load_config("unet", storage="study.db")
    with pytest.raises(ConfigError, match="a storage URL is for engine optuna"):
        load_config("unet", storage="sqlite:///x.db", engine="keras-tuner")


def test_cmaes_needs_its_package() -> None:
    import importlib.util

    if importlib.util.find_spec("cmaes") is not None:
        assert SearchConfig(algorithm="cmaes").algorithm == "cmaes"
    else:
        with pytest.raises(ConfigError, match="pip install cmaes"):
            SearchConfig(algorithm="cmaes")


def test_objective_names_match_the_compiled_metrics() -> None:
    from segsearch.metrics import default_metrics

    names = {m.name for m in default_metrics(1)} | {"loss"}
    assert names == set(METRIC_NAMES)
    assert set(ALGORITHMS) == {"optuna", "keras-tuner"}


def test_every_shipped_space_is_listed() -> None:
    assert shipped_spaces() == ["auto", "deeplabv3plus", "resblock_unet", "resnet50_unet",
                                "resunet", "unet"]
    assert isinstance(load_config("unet"), Config)


# ----------------------------------------------------------------------------------- domains
DOMAIN_ERRORS = [
    # (architecture, where the entry comes from, the entry, the words the one line must hold)
    ("unet", "set", "space.dropout=1.5", ["space.dropout: 1.5", "dropout must be in [0, 1)"]),
    ("unet", "set", "space.filters=-4", ["space.filters: -4", "filters must be >= 1"]),
    ("unet", "set", "space.filters=[8, 0]", ["space.filters: 0", "filters must be >= 1"]),
    ("unet", "file", "dropout: {min: 0, max: 1.5}",
     ["space.dropout: max 1.5", "must be in [0, 1)", "keep min and max inside it"]),
    ("unet", "set", "space.learning_rate=0", ["space.learning_rate: 0", "must be > 0"]),
    ("unet", "file", "learning_rate: -1", ["space.learning_rate: -1", "must be > 0"]),
    ("unet", "file", "learning_rate: {min: 0, max: 0.1, sampling: linear}",
     ["space.learning_rate: min 0", "must be > 0"]),
    ("unet", "set", "space.depth=0", ["space.depth: 0", "depth must be >= 1"]),
    ("unet", "set", "space.momentum=1.5", ["space.momentum: 1.5", "must be in [0, 1]"]),
    ("unet", "set", "space.weight_decay=-0.1", ["space.weight_decay: -0.1", "must be >= 0"]),
    ("unet", "set", "space.focal_gamma=[1, -2]", ["space.focal_gamma: -2", "must be >= 0"]),
    ("unet", "set", "space.tversky_alpha=1.2", ["space.tversky_alpha: 1.2", "in [0, 1]"]),
    ("resblock_unet", "set", "space.blocks=0", ["space.blocks: 0", "blocks must be >= 1"]),
    ("resnet50_unet", "set", "space.depth=6", ["space.depth: 6", "depth must be in [2, 5]"]),
    ("deeplabv3plus", "file", "depth: [2, 3]", ["space.depth: 2", "depth must be in [3, 5]"]),
    ("deeplabv3plus", "set", "space.aspp_filters=0", ["space.aspp_filters: 0", ">= 1"]),
]


@pytest.mark.parametrize(("arch", "origin", "entry", "parts"), DOMAIN_ERRORS,
                         ids=[f"{e[0]}-{e[2]}" for e in DOMAIN_ERRORS])
def test_space_values_outside_their_domain_are_refused_with_file_key_value_and_range(
        tmp_path: Path, arch: str, origin: str, entry: str, parts: list[str]) -> None:
    if origin == "file":
        path = _write(tmp_path, f"architecture: {arch}\nspace:\n  {entry}\n")
        prefix, sets = f"{path}: ", []
    else:
        path = _write(tmp_path, f"architecture: {arch}\n")
        prefix, sets = f"--set {entry}: ", [entry]
    with pytest.raises(ConfigError) as info:
        load_config(path, sets=sets)
    message = str(info.value)
    assert message.startswith(prefix) and "\n" not in message, message
    for part in parts:
        assert part in message, message


def test_values_inside_the_domain_but_outside_the_default_range_are_accepted() -> None:
    # the domain is what the builder accepts; the declared range is only the default search
    config = load_config("unet", sets=["space.dropout=0.9", "space.learning_rate=1e6",
                                       "space.filters=[3, 5]", "space.depth=1"])
    params = {p.name: p for p in config.hypermodel().params()}
    assert params["dropout"].default == 0.9 and params["learning_rate"].default == 1e6
    assert params["filters"].values == (3, 5) and params["depth"].default == 1


def test_a_missing_weights_file_is_refused_when_the_space_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path, "architecture: resnet50_unet\n")
    with pytest.raises(ConfigError, match=r"^--set train.weights=.*: train.weights: weights file "
                                          r"not found"):
        load_config(path, sets=[f"train.weights={tmp_path / 'nope.weights.h5'}"])


def test_every_numeric_hyperparameter_declares_its_domain() -> None:
    from segsearch import hypermodels
    from segsearch.architectures import deeplabv3plus, resnet50_unet

    for name in hypermodels.names():
        for p in hypermodels.get(name, (64, 64, 3)).params():
            if p.value_type in (int, float):
                assert p.domain is not None, f"{name}: {p.name} declares no domain"
                # the declared space lies inside it (checked when declared, too)
                assert all(p.domain.contains(v) for _, v in p.space_values()), (name, p.name)
    depth = {n: {p.name: p for p in hypermodels.get(n, (64, 64, 3)).params()}["depth"].domain
             for n in ("resnet50_unet", "deeplabv3plus")}
    # the builders' own limits
    assert (depth["resnet50_unet"].low, depth["resnet50_unet"].high) == (
        resnet50_unet.MIN_DEPTH, resnet50_unet.MAX_DEPTH)
    assert (depth["deeplabv3plus"].low, depth["deeplabv3plus"].high) == (
        deeplabv3plus.MIN_DEPTH, deeplabv3plus.MAX_DEPTH)


def test_cli_refuses_an_out_of_range_value_before_the_study_folder_exists(tmp_path: Path) -> None:
    import contextlib
    import io

    from segsearch.cli import main

    space = _write(tmp_path, "architecture: unet\n")
    for entry in ("space.dropout=1.5", "space.filters=-4", "space.learning_rate=0"):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["run", str(space), "--study-dir", str(tmp_path / "s"), "--set", entry])
        assert code == 2
        assert err.getvalue().startswith(f"segsearch: error: --set {entry}: space.")
        assert err.getvalue().count("\n") == 1 and "Traceback" not in err.getvalue()
        assert not (tmp_path / "s").exists()  # no folder, no storage: fixing the value just works


def test_worker_recycling_settings() -> None:
    assert (TrainConfig().worker_max_trials, TrainConfig().worker_max_growth_mb) == (10, 1024)
    config = load_config("unet", sets=["train.worker_max_trials=null",
                                       "train.worker_max_growth_mb=512"])
    assert config.train.worker_max_trials is None and config.train.worker_max_growth_mb == 512
    with pytest.raises(ConfigError, match="train.worker_max_trials: must be >= 1, got 0"):
        load_config("unet", sets=["train.worker_max_trials=0"], check_space=False)
    with pytest.raises(ConfigError, match="train.worker_max_growth_mb: must be an integer"):
        load_config("unet", sets=["train.worker_max_growth_mb=lots"], check_space=False)
