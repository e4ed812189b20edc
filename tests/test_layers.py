"""Imports point one way: the package's layers, top to bottom, and no cycle between modules.

Every ``import`` in every module of ``segsearch/`` counts, the ones inside functions too (a lazy
import is still a dependency). A module may import its own layer and the layers below it; two
modules must never import each other, directly or through others. ``segsearch/data/`` imports
only ``segsearch.errors`` and itself, so the data pipeline stands alone.

A new module must be placed in :data:`LAYERS` (the test says so); the same table, as a diagram,
is in the development manual.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segsearch"

#: the layers, top to bottom. An entry names a module or a package (with all its modules); the
#: most specific entry decides. "segsearch" alone is the package's ``__init__`` (the lazy facade
#: ``segsearch.run`` / ``segsearch.Study``, which reaches the driver only by name).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("segsearch.__main__",),
    ("segsearch.cli", "segsearch"),
    ("segsearch.driver",),
    ("segsearch.folds",),
    ("segsearch.study",),
    ("segsearch.workshop", "segsearch.predict"),
    ("segsearch.export",),
    ("segsearch.ensemble",),
    ("segsearch.refine",),
    ("segsearch.engines.select",),
    ("segsearch.engines.optuna_engine", "segsearch.engines.keras_tuner_engine"),
    ("segsearch.engines.base",),
    ("segsearch.engines.worker",),
    ("segsearch.engines.trial", "segsearch.engines.hp", "segsearch.engines.optuna_records",
     "segsearch.engines.keras_tuner_records", "segsearch.engines.storage", "segsearch.engines"),
    ("segsearch.spacefile",),
    ("segsearch.autoconf",),
    ("segsearch.hypermodels",),
    ("segsearch.console", "segsearch.sliding"),
    ("segsearch.scores", "segsearch.tta", "segsearch.postprocess", "segsearch.formats"),
    ("segsearch.pareto",),
    ("segsearch.records", "segsearch.metrics", "segsearch.losses", "segsearch.params",
     "segsearch.data", "segsearch.cost", "segsearch.precision", "segsearch.callbacks",
     "segsearch.tensorboard_logs"),
    ("segsearch.architectures",),
    ("segsearch.blocks",),
    ("segsearch._keras_compat",),
    ("segsearch.errors", "segsearch.jsonable", "segsearch.devices", "segsearch.heap"),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()
#: (module, module it names in a string): lazy references, checked for layers, not for cycles
DYNAMIC: set[tuple[str, str]] = set()


def _imports(name: str, source: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every segsearch module that module ``name`` (its ``source``) imports,
    lazy imports included."""
    tree = ast.parse(source)
    package = name.split(".") if is_package else name.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import module` imports that module; `from pkg import name`, pkg itself
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else source))
        # a module named in a string (a lazy registry: importlib.import_module(TABLE[key])) is an
        # import for the layers too (it may not point up); the cycle check leaves these out, as a
        # registry naming its package's own modules is how lazy loading works
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = node.value.split(":")[0]
            if named in MODULES and named != name and "." in named:
                found.append((node.lineno, named))
                DYNAMIC.add((name, named))
    return sorted({(line, target) for line, target in found
                   if target == "segsearch" or target.startswith("segsearch.")})


def _layer(name: str) -> int | None:
    best: tuple[int, int] | None = None  # (entry length, layer index)
    for index, layer in enumerate(LAYERS):
        for entry in layer:
            matches = name == entry or (entry != "segsearch" and name.startswith(entry + "."))
            if matches and (best is None or len(entry) > best[0]):
                best = (len(entry), index)
    return None if best is None else best[1]


def _where(name: str, line: int) -> str:
    return f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}"


GRAPH = {name: _imports(name, path.read_text(encoding="utf-8"),
                        is_package=path.name == "__init__.py")
         for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    missing = sorted(name for name in MODULES if _layer(name) is None)
    assert not missing, f"place these modules in tests/test_layers.py LAYERS: {missing}"


def test_no_import_points_up() -> None:
    upward = []
    for name, imports in GRAPH.items():
        for line, target in imports:
            if target not in MODULES:
                upward.append(f"{_where(name, line)}: {name} -> {target} (no such module)")
                continue
            if _layer(target) < _layer(name):
                upward.append(f"{_where(name, line)}: {name} -> {target} (layer "
                              f"{LAYERS[_layer(name)][0]} imports the higher layer "
                              f"{LAYERS[_layer(target)][0]})")
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    """No two modules reach each other through imports (lazy ones included)."""
    edges = {name: {target for _, target in imports if target != name and target in MODULES
                    and (name, target) not in DYNAMIC}
             for name, imports in GRAPH.items()}
    # a module importing its own package's __init__ (or the reverse) is how Python loads it
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                steps = []
                for a, b in itertools.pairwise(cycle):
                    line = next(line for line, t in GRAPH[a] if t == b)
                    steps.append(f"{_where(a, line)}: {a} -> {b}")
                cycles.append("\n  ".join(steps))
            elif target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles:\n  " + "\n\n  ".join(cycles)


def test_data_imports_only_errors_and_itself() -> None:
    bad = [f"{_where(name, line)}: {name} -> {target}"
           for name, imports in GRAPH.items() if name.startswith("segsearch.data")
           for line, target in imports
           if not (target == "segsearch.errors" or target.startswith("segsearch.data"))]
    assert not bad, "segsearch/data/ imports only segsearch.errors and itself:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, line, expected", [
    ("from segsearch.driver import Study\n", 1, "segsearch.driver"),
    ("import segsearch.cli\n", 1, "segsearch.cli"),
    ("from segsearch import driver\n", 1, "segsearch.driver"),
    ("from . import study\n", 1, "segsearch.study"),
    ("def f():\n    from segsearch.workshop import Workshop\n", 2, "segsearch.workshop"),
])
def test_the_graph_sees_every_kind_of_import(source: str, line: int, expected: str) -> None:
    """The checks above can fail: module-level, package, relative and lazy imports are seen."""
    assert _imports("segsearch.records", source) == [(line, expected)]
    assert _layer(expected) < _layer("segsearch.records")  # so this would be an upward arrow
