"""The documentation's examples run as written: README.md and the manual in docs/.

The Python examples that train run each in its own empty working folder, as the main module of a
script would; every Python example compiles; every `segsearch ...` command line parses with the
real argument parser (and a `run` line's options and `--set` keys load); every YAML example parses;
every link between the pages resolves; every example that starts a search carries the __main__
guard; and README's first commands are the ones CI runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.S | re.M)


def blocks(language: str | None = None) -> list[tuple[Path, str]]:
    """Every fenced block of README.md and docs/*.md, with its file.

    Args:
        language: only the blocks fenced with this language ("" = none given); None: every block.
    """
    return [(path, body) for path in DOCS for lang, body in FENCE.findall(path.read_text("utf-8"))
            if language is None or lang == language]


def doc_block(marker: str) -> tuple[Path, str]:
    """The one ```python block of the documentation that contains ``marker``, with its file."""
    found = [(path, body) for path, body in blocks("python") if marker in body]
    where = ", ".join(sorted({p.relative_to(REPO).as_posix() for p, _ in found})) or "none"
    assert len(found) == 1, f"the docs should hold one python block with {marker!r}, found {where}"
    return found[0]


@pytest.fixture
def eager_functions():
    """Every ``tf.function`` runs eagerly while the test runs (plain ``model.fit`` calls of an
    example then trace nothing): the examples' calls and results are the subject, graph-mode
    training is tested elsewhere."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def run_block(marker: str, folder: Path, monkeypatch) -> dict:
    path, code = doc_block(marker)
    monkeypatch.chdir(folder)
    namespace: dict = {"__name__": "__main__"}  # as `python3 script.py` runs it
    exec(compile(code, f"{path.name} ({marker})", "exec"), namespace)  # noqa: S102
    return namespace


def test_docs_exist_and_index_lists_every_page():
    pages = {p.name for p in DOCS if p.parent.name == "docs"}
    assert {"index.md", "cli.md", "spaces.md", "data.md", "hypermodels.md", "robustness.md",
            "python.md", "benchmarks.md", "development.md"} <= pages
    index = (REPO / "docs" / "index.md").read_text("utf-8")
    for page in sorted(pages - {"index.md"}):
        assert f"]({page})" in index, f"docs/index.md does not link {page}"
    assert "](docs/index.md)" in README.read_text("utf-8")


def test_readme_is_a_front_page():
    lines = README.read_text("utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the detail into docs/"


# ------------------------------------------------------------------------- README's first commands
def _first_commands() -> list[str]:
    """README's first bash block, each line without its comment."""
    path, body = next((p, b) for p, b in blocks("bash") if p == README)
    return [line.split("  #")[0].strip() for line in body.splitlines() if line.strip()]


def _script_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text("utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_readme_first_commands_are_the_ones_ci_runs():
    install, tests = _first_commands()[:2]
    # 1. install and run the main job: .ci/fresh_install.sh runs the same command after a plain
    #    `pip install` (no extras) of this checkout
    assert install == "pip install -e . && segsearch run spaces/resunet.yaml"
    fresh = _script_lines(REPO / ".ci" / "fresh_install.sh")
    job = install.split(" && ")[1]
    assert job in fresh, f".ci/fresh_install.sh does not run README's {job!r}"
    assert any(re.fullmatch(r'python -m pip install -q "\$repo"', line) for line in fresh)
    # 2. install the test extras and run the tests: .ci/run does exactly that
    pip, pytest_command = tests.split(" && ")
    ci = _script_lines(REPO / ".ci" / "run")
    assert pytest_command in ci, f".ci/run does not run README's test command {pytest_command!r}"
    extras = pip.removeprefix("pip install ")
    assert f"python3 -m pip install -q {extras}" in ci, f".ci/run does not install {extras}"
    assert ci.index(f"python3 -m pip install -q {extras}") < ci.index(pytest_command)
    assert "python3 -m ruff check ." in ci[:ci.index(pytest_command)]


# --------------------------------------------------------------------------------- Python examples
def test_every_python_example_compiles():
    found = blocks("python")
    assert len(found) >= 8
    for path, code in found:
        compile(code, path.name, "exec")


def test_hypermodel_in_a_plain_keras_tuner_random_search(tmp_path, monkeypatch, capsys,
                                                         eager_functions):
    ns = run_block("keras_tuner.RandomSearch(", tmp_path, monkeypatch)
    trials = list(ns["tuner"].oracle.trials.values())
    assert len(trials) == 2
    assert all(t.status == "COMPLETED" for t in trials)
    for t in trials:
        metrics = set(t.metrics.metrics)
        assert {"val_dice", "val_iou", "val_mean_iou", "val_pixel_accuracy"} <= metrics
        assert 0.0 <= t.score <= 1.0
    best = ns["best"]
    assert best.values["depth"] in (2, 3) and best.values["filters"] in (4, 8)
    assert "'depth'" in capsys.readouterr().out
    assert (tmp_path / "kt_demo" / "unet_demo").is_dir()


def test_hypermodel_in_a_hand_written_optuna_objective(tmp_path, monkeypatch, capsys,
                                                        eager_functions):
    ns = run_block("OptunaHyperParameters(trial)", tmp_path, monkeypatch)
    study = ns["study"]
    assert len(study.trials) == 2
    assert study.trials[0].params == ns["seed_values"](ns["hypermodel"])  # the seed network first
    assert all(np.isfinite(t.value) for t in study.trials)
    assert "filters" in capsys.readouterr().out


def test_segsearch_run_from_python(tmp_path, monkeypatch, capsys, eager_trials):
    # the example's calls, results and files are the subject; graph-mode trials in worker
    # processes are test_driver.py's and test_devices.py's
    ns = run_block("segsearch.run(", tmp_path, monkeypatch)
    results = ns["results"]
    finished = [t for t in results.trials if t.state in ("complete", "pruned")]
    assert len(finished) == 2
    assert Path(results.best_model_path) == Path("studies/unet-quick/best/model.keras")
    assert (tmp_path / results.best_model_path).is_file()
    assert results.best_params["filters"] == 4
    assert 0.0 <= results.best_value <= 1.0
    out = capsys.readouterr().out
    assert "complete" in out


def test_configuration_from_python(tmp_path, monkeypatch):
    ns = run_block('load_config("resunet", trials=4', tmp_path, monkeypatch)
    config = ns["config"]
    assert config.search.algorithm == "tpe"  # as the comments in the example say
    assert config.study_dir == Path("studies/resunet")
    assert config.to_dict()["search"]["trials"] == 4


@pytest.mark.parametrize("marker", ["keras_tuner.RandomSearch(", "OptunaHyperParameters(trial)",
                                    "segsearch.run(", 'load_config("resunet", trials=4'])
def test_docs_hold_each_example_once(marker):
    assert doc_block(marker)


def test_every_example_that_starts_a_search_carries_the_main_guard():
    runs = r"segsearch\.run\(|study\.run\(|Study\(.*\)\.run\("
    starting = [code for _, code in blocks("python") if re.search(runs, code)]
    assert len(starting) >= 2
    for block in starting:
        guard = block.find('if __name__ == "__main__":')
        assert guard >= 0, block
        first_run = min(i for i in (block.find("segsearch.run("), block.find(".run(")) if i >= 0)
        assert guard < first_run, block


# ----------------------------------------------------------------------------------- command lines
def _command_lines() -> list[tuple[Path, list[str]]]:
    """Every `segsearch ...` command of the bash and plain blocks, as argv (without `segsearch`)."""
    out = []
    for path, body in blocks("bash") + blocks(""):
        text = re.sub(r"\\\n\s*", " ", body)  # join continued lines
        lines = text.splitlines()
        if any(line.startswith("$ ") for line in lines):  # a session: the rest is output
            lines = [line for line in lines if line.startswith("$ ")]
        for line in lines:
            line = line.strip().removeprefix("$ ")
            if not (line.startswith("segsearch ") or "&& segsearch " in line):
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
            segment: list[str] = []
            for token in [*tokens, ";"]:
                if token in ("&&", "||", "|", ";", ">", ">>", "<"):
                    if segment[:1] == ["segsearch"]:
                        out.append((path, segment[1:]))
                    segment = [] if token != ">" else ["(redirect)"]
                else:
                    segment.append(token)
    return out


def _synopsis(argv: list[str]) -> bool:
    """A usage line such as `segsearch run SPACE [--data DIR] ...`, not an example."""
    return any(t.startswith("[") or t in ("SPACE", "STUDY_DIR", "MODEL", "IMAGES") for t in argv)


def test_every_command_line_in_the_docs_parses():
    from segsearch.cli import build_parser

    commands = [(path, argv) for path, argv in _command_lines() if not _synopsis(argv)]
    assert len(commands) >= 25
    seen = set()
    for path, argv in commands:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:  # pragma: no cover - the failure message
            pytest.fail(f"{path.name}: `segsearch {shlex.join(argv)}` does not parse")
        seen.add(args.command)
    assert {"run", "status", "predict", "data"} <= seen


def test_every_run_line_in_the_docs_loads(monkeypatch):
    """The options and --set keys of each `segsearch run` line are ones a run accepts."""
    from segsearch.cli import build_parser, run_sets
    from segsearch.spacefile import load_config

    monkeypatch.chdir(REPO)  # spaces/NAME.yaml as in a clone
    checked = 0
    for path, argv in _command_lines():
        if argv[:1] != ["run"] or _synopsis(argv):
            continue
        args = build_parser().parse_args(argv)
        try:
            load_config(args.space, check_space=False, sets=run_sets(args), data=args.data,
                        trials=args.trials, epochs=args.epochs, image_size=args.image_size,
                        engine=args.engine, study_dir=args.study_dir, storage=args.storage)
        except Exception as e:  # pragma: no cover - the failure message
            pytest.fail(f"{path.name}: `segsearch {shlex.join(argv)}`: {e}")
        checked += 1
    assert checked >= 15


# ---------------------------------------------------------------------------------- YAML and links
def test_every_yaml_example_parses():
    found = blocks("yaml")
    assert len(found) >= 4
    for path, text in found:
        assert isinstance(yaml.safe_load(text), dict), f"{path.name}: {text[:60]!r}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text("utf-8"))
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_every_link_between_the_pages_resolves():
    checked = 0
    for path in DOCS:
        text = FENCE.sub("", path.read_text("utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            assert dest.exists(), f"{path.name}: {target}: no such file"
            if anchor:
                assert anchor in _anchors(dest), f"{path.name}: {target}: no such heading"
            checked += 1
    assert checked >= 30
