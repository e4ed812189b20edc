"""Shipped space files: one copy (spaces/ links to it); they load; each trial they allow fits."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from segsearch.errors import InfeasibleError
from segsearch.spacefile import load_config, shipped_spaces

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "spaces").glob("*.yaml"))
PACKAGED = REPO / "segsearch" / "spaces"
ARCHITECTURES = ("unet", "resunet", "resnet50_unet", "deeplabv3plus", "resblock_unet")


def test_space_files_ship_once() -> None:
    """spaces/ is a link to the package's segsearch/spaces/, the one copy (git stores the link)."""
    link = REPO / "spaces"
    assert link.is_symlink(), "spaces should be a symbolic link to segsearch/spaces, not a copy"
    assert link.readlink() == Path("segsearch", "spaces")
    assert link.resolve() == PACKAGED.resolve()
    assert SPACES, "segsearch/spaces holds no space file"


def test_one_space_per_architecture_and_one_across_them() -> None:
    names = [p.stem for p in SPACES]
    assert set(ARCHITECTURES) <= set(names)
    assert shipped_spaces() == names
    several = [load_config(p, check_space=False) for p in SPACES]
    assert any(set(c.architectures) == set(ARCHITECTURES) for c in several)


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_space_loads_and_fits_a_cpu_budget(path: Path) -> None:
    config = load_config(path)  # checks the space entries against the hypermodels too
    assert config.study == path.stem and config.data.source == "sample"
    height, width = config.data.image_size
    assert height * width <= 96 * 96, "keep shipped spaces small enough for a 2-core CPU"
    assert config.search.trials <= 8 and config.train.epochs <= 4
    assert config.train.final_epochs is not None and config.train.final_epochs <= 4
    text = path.read_text(encoding="utf-8")
    for hint in ("--trials", "--epochs", "GPU"):
        assert hint in text, f"{path.name} should explain how to raise the budget ({hint})"
    # the file runs with either engine as shipped
    assert load_config(path, engine="keras-tuner").search.algorithm == "hyperband"


def _grid(params: tuple) -> list[dict]:
    """Every combination of the discrete architecture params that decide the input-size fit."""
    keys = [p for p in params if p.name in ("depth", "aspp_rates", "aspp_pooling")]
    choices = []
    for p in keys:
        if p.kind == "int":
            choices.append(range(p.min_value, p.max_value + 1))
        elif p.kind == "choice":
            choices.append(p.values)
        elif p.kind == "boolean":
            choices.append((False, True))
        else:
            choices.append((p.default,))
    return [dict(zip([p.name for p in keys], combo)) for combo in itertools.product(*choices)]


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_no_shipped_trial_is_infeasible(path: Path) -> None:
    """Every depth x ASPP-rate combination a shipped space allows fits its image size."""
    from segsearch.hypermodels.registry import check_input_size

    config = load_config(path)
    for arch in config.architectures:
        single = load_config({**config.to_dict(), "architecture": arch,
                              "space": config.space_for(arch)})
        hypermodel = single.hypermodel()
        for values in _grid(hypermodel.params()):
            # hyperparameters are named as the builder's arguments
            kwargs = {k: values[k] for k in ("depth", "aspp_rates", "aspp_pooling") if k in values}
            try:
                check_input_size(arch, (*config.data.image_size, 1), **kwargs)
            except InfeasibleError as e:  # pragma: no cover - the failure message
                pytest.fail(f"{path.name}: {arch} {values} cannot work: {e}")
