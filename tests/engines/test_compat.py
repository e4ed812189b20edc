"""Other libraries' private names: each used only in its compat module, each still where it was.

The compat modules (``segsearch/engines/_optuna_compat.py``, ``_keras_tuner_compat.py``,
``segsearch/_keras_compat.py``) are exercised on real Optuna, keras-tuner and Keras objects, so a
private name that moves in a new release fails here with the compat module's message (library,
release, fix). A scan of the package's source fails when any other module uses a private name of
optuna, keras_tuner, keras or tensorflow.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
import time
from pathlib import Path

import keras_tuner
import optuna
import pytest

from segsearch import _keras_compat
from segsearch.engines import _keras_tuner_compat, _optuna_compat
from segsearch.errors import CompatError

PACKAGE = Path(__file__).resolve().parents[2] / "segsearch"
COMPAT_MODULES = {"engines/_optuna_compat.py", "engines/_keras_tuner_compat.py",
                  "_keras_compat.py"}
LIBRARIES = {"optuna", "keras_tuner", "keras", "tensorflow", "tf_keras"}
#: underscored names that are not another library's private API (receiver.name: why).
ALLOWED = {
    "os._exit": "engines/worker.py: a documented standard-library function",
    "args._storage": "cli.py: segsearch's own field on the argparse namespace",
    "args._study_dir": "cli.py: segsearch's own field on the argparse namespace",
    "part._arrays": "data/dataset.py: segsearch's own Part",
    "multiprocessing.process.current_process()._inheriting":
        "engines/worker.py: the standard library's multiprocessing, not one of LIBRARIES",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# ------------------------------------------------------------------------------------- optuna
def _study_with_trials(tmp_path: Path) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    from segsearch.engines.optuna_engine import make_storage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = make_storage(url)
    study = optuna.create_study(study_name="s", storage=storage)
    return study, storage


def test_optuna_stale_trials_through_the_private_heartbeat_query(tmp_path):
    study, storage = _study_with_trials(tmp_path)
    study_id = storage.get_study_id_from_name("s")
    with pytest.warns(UserWarning, match="Heartbeat"):
        silent = study.ask()
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, 0))
    time.sleep(2.2)  # SQLite keeps heartbeats to the second
    with pytest.warns(UserWarning, match="Heartbeat"):
        beating = study.ask()
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, 1))
    # opened the way `segsearch status` opens it: no heartbeat settings, lent for the query
    plain = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert _optuna_compat.stale_trial_numbers(plain, 1, 1) == {silent.number}
    assert beating.number == 1
    assert [t.state for t in plain.get_trials()] == [optuna.trial.TrialState.RUNNING] * 2
    in_memory = optuna.create_study()  # no heartbeats: nothing is stale
    assert _optuna_compat.stale_trial_numbers(in_memory, 1, 1) == set()


def test_optuna_enqueued_params_read_the_fixed_params_system_attribute(tmp_path):
    study, storage = _study_with_trials(tmp_path)
    study.enqueue_trial({"x": 0.5})
    with pytest.warns(UserWarning, match="Heartbeat"):
        queued, free = study.ask(), study.ask()
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert _optuna_compat.enqueued_params(frozen[queued.number]) == {"x": 0.5}, (
        f"optuna {optuna.__version__} no longer keeps enqueue_trial's values in the system "
        "attribute 'fixed_params': adapt segsearch/engines/_optuna_compat.enqueued_params")
    assert _optuna_compat.enqueued_params(frozen[free.number]) is None


def test_a_moved_optuna_name_fails_loudly(tmp_path, monkeypatch):
    study, _ = _study_with_trials(tmp_path)
    monkeypatch.delattr(optuna.storages.RDBStorage, "_get_stale_trial_ids")
    with pytest.raises(CompatError) as caught:
        _optuna_compat.stale_trial_numbers(study, 1, 1)
    message = str(caught.value)
    assert f"optuna {optuna.__version__} has no optuna.storages.RDBStorage._get_stale_trial_ids" \
        in message
    assert "pip install 'optuna==5.0.0'" in message and "_optuna_compat.py" in message


# -------------------------------------------------------------------------------- keras-tuner
def _oracle(**kwargs) -> keras_tuner.oracles.HyperbandOracle:
    hp = keras_tuner.HyperParameters()
    hp.Choice("width", [2, 4, 8], default=4)
    hp.Float("learning_rate", 1e-3, 1e-1, sampling="log", default=1e-2)
    return keras_tuner.oracles.HyperbandOracle(
        objective=keras_tuner.Objective("val_loss", "min"), max_epochs=9, factor=3, seed=1,
        hyperparameters=hp, **kwargs)


def test_keras_tuner_values_hash_and_duplicate_check(tmp_path):
    oracle = _oracle()
    oracle._set_project_dir(str(tmp_path), "p")  # noqa: SLF001 - what a Tuner does
    values = {"width": 4, "learning_rate": 1e-2}
    assert _keras_tuner_compat.values_hash(oracle, values) == \
        _keras_tuner_compat.values_hash(oracle, dict(reversed(values.items())))
    assert not _keras_tuner_compat.already_tried(oracle, values)
    trial = oracle.create_trial("tuner0")
    tried = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
    assert _keras_tuner_compat.already_tried(oracle, tried)
    state = oracle.get_state()  # the public state the engine reads and writes
    assert _keras_tuner_compat.values_hash(oracle, tried) in state["tried_so_far"]
    for key in ("retry_queue", "tried_so_far", "id_to_hash", "start_order", "end_order",
                "run_times", "brackets"):
        assert key in state, f"keras-tuner {keras_tuner.__version__}: no {key!r} in the state"


def test_keras_tuner_hyperband_brackets_restart_from_min_epochs():
    oracle = _oracle()
    assert oracle.get_state()["brackets"] == [{"bracket_num": 2, "rounds": [[], [], []]}]
    oracle.min_epochs = 3  # max_epochs 9, factor 3: brackets for 9 and 3 epochs only
    _keras_tuner_compat.restart_brackets(oracle)
    state = oracle.get_state()
    assert state["current_bracket"] == 1
    assert state["brackets"] == [{"bracket_num": 1, "rounds": [[], []]}]


def test_keras_tuner_tracebacks_quiet_within_and_restored():
    config = importlib.import_module("keras_tuner.src.config")
    before = config.DEBUG
    with _keras_tuner_compat.quiet_trial_tracebacks():
        assert config.DEBUG is False
    assert config.DEBUG == before


def test_keras_tuner_populate_space_is_the_public_extension_point():
    for oracle in (keras_tuner.oracles.HyperbandOracle, keras_tuner.oracles.RandomSearchOracle,
                   keras_tuner.oracles.BayesianOptimizationOracle):
        assert "populate_space" in vars(oracle), oracle  # overridden by segsearch's oracles


def test_a_moved_keras_tuner_name_fails_loudly(monkeypatch):
    monkeypatch.delattr(keras_tuner.Oracle, "_duplicate")
    with pytest.raises(CompatError, match=r"keras-tuner \S+ has no keras_tuner.Oracle._duplicate.*"
                                          r"pip install 'keras-tuner==1\.4\.8'"):
        _keras_tuner_compat.already_tried(_oracle(), {"width": 4})


# -------------------------------------------------------------------------------------- keras
def test_keras_home_and_the_resnet50_weights_md5():
    import keras

    home = _keras_compat.keras_home()
    assert isinstance(home, str) and home, f"keras {keras.__version__}: keras_home() = {home!r}"
    # the md5 of keras.applications' resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5
    assert _keras_compat.resnet50_notop_md5() == "4d473c1dd8becc155b73f8504c6f6626"


def test_a_moved_keras_name_fails_loudly(monkeypatch):
    module = importlib.import_module("keras.src.applications.resnet")
    monkeypatch.delattr(module, "WEIGHTS_HASHES")
    with pytest.raises(CompatError, match=r"keras \S+ has no keras\.src\.applications\.resnet\."
                                          r"WEIGHTS_HASHES.*pip install 'keras==3\.15\.1'"):
        _keras_compat.resnet50_notop_md5()


@pytest.mark.parametrize("module", [_optuna_compat, _keras_tuner_compat, _keras_compat],
                         ids=["optuna", "keras_tuner", "keras"])
def test_each_compat_module_lists_every_private_name_it_uses(module):
    listed = " ".join(module.PRIVATE_NAMES)
    own = {n for n in vars(module) if _private(n)}
    used = {name for name in _private_identifiers(ast.parse(inspect.getsource(module)))
            if name not in own}
    missing = sorted(n for n in used if n not in listed)
    assert not missing, f"{module.__name__}.PRIVATE_NAMES does not list {missing}"


def _private_identifiers(tree: ast.AST) -> set[str]:
    """Private attribute names and private names in string constants (getattr, import paths)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            out.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.update(p for p in re.findall(r"[A-Za-z_][\w]*", node.value)
                       if _private(p) and re.fullmatch(r"[\w.]+", node.value))
    return out


# ------------------------------------------------------------------------------ the source scan
def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _library_import(module: str) -> bool:
    return module.split(".")[0] in LIBRARIES


def scan(source: str, where: str) -> list[str]:
    """Uses of private names of LIBRARIES in one module's source (besides ALLOWED):

    - imports of a private module or name (``optuna.storages._heartbeat``, ``keras.src.*``,
      ``keras_tuner.src.*``, ``tensorflow.python.*``, ``from optuna.x import _y``);
    - ``obj._name`` and ``getattr/hasattr/setattr(obj, "_name")`` on anything but ``self`` /
      ``cls`` (``super()._name`` included: a library base class's private method).
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""]
            names = [] if isinstance(node, ast.Import) else [a.name for a in node.names]
            for module in modules:
                parts = module.split(".")
                if _library_import(module) and (
                        any(_private(p) or p == "src" for p in parts[1:])
                        or parts[:2] == ["tensorflow", "python"]
                        or any(_private(n) for n in names)):
                    found.append(f"{where}:{node.lineno}: imports {module} {names or ''}".strip())
        receiver = attr = None
        if isinstance(node, ast.Attribute) and _private(node.attr):
            receiver, attr = node.value, node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "hasattr", "setattr", "delattr") and \
                len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and \
                isinstance(node.args[1].value, str) and _private(node.args[1].value):
            receiver, attr = node.args[0], node.args[1].value
        if receiver is None or (isinstance(receiver, ast.Name) and receiver.id in ("self", "cls")):
            continue
        text = f"{ast.unparse(receiver)}.{attr}"
        if text in ALLOWED or _root(receiver) == "segsearch":
            continue
        found.append(f"{where}:{node.lineno}: {text}")
    return found


def _package_sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))
            if str(p.relative_to(PACKAGE)) not in COMPAT_MODULES}


def test_no_module_but_the_compat_modules_uses_a_private_name_of_another_library():
    found = [hit for where, source in _package_sources().items() for hit in scan(source, where)]
    assert not found, (
        "private names of optuna / keras_tuner / keras / tensorflow outside the compat modules "
        "(move them into segsearch/engines/_optuna_compat.py, _keras_tuner_compat.py or "
        "segsearch/_keras_compat.py, or use a public API; segsearch's own object: add it to "
        "ALLOWED with the reason):\n" + "\n".join(found))


def _library_privates(cls: type) -> set[str]:
    """Private names the library classes in ``cls``'s MRO define or use on ``self``."""
    names: set[str] = set()
    for base in cls.__mro__:
        if not _library_import(base.__module__):
            continue
        names.update(n for n in vars(base) if _private(n))
        try:
            source = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        names.update(n for n in re.findall(r"\bself\.(_[A-Za-z]\w*)", source) if _private(n))
    return names


def _subclass_hits(cls: type) -> list[str]:
    """``self._name`` uses and ``def _name`` overrides, in segsearch's classes of ``cls``'s MRO,
    of private names its library base classes define or use."""
    library = _library_privates(cls)
    hits = []
    for own in cls.__mro__:
        if not own.__module__.startswith("segsearch."):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(own)))
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id == "self":
                name = node.attr
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = node.name
            if name in library:
                hits.append(f"{own.__module__}.{own.__qualname__}: {name} (private in "
                            f"{cls.__name__}'s library base classes)")
    return hits


def _library_subclasses() -> list[type]:
    """segsearch's classes (module level) that derive from a class of LIBRARIES."""
    out = []
    for where, source in _package_sources().items():
        tree = ast.parse(source)
        classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
        if not classes or where.endswith("__main__.py"):
            continue
        module = importlib.import_module("segsearch." + where.removesuffix(".py")
                                         .replace("/", ".").removesuffix(".__init__"))
        for name in classes:
            cls = getattr(module, name, None)
            if isinstance(cls, type) and any(_library_import(b.__module__)
                                             for b in cls.__mro__[1:]):
                out.append(cls)
    return out


def test_no_subclass_of_a_library_class_touches_its_private_names():
    subclasses = _library_subclasses()
    names = {c.__qualname__ for c in subclasses}
    assert {"_HyperbandOracle", "_Tuner"} <= names  # the scan sees the engines' subclasses
    found = [hit for cls in subclasses for hit in _subclass_hits(cls)]
    assert not found, ("segsearch's subclasses of library classes touch private names (move "
                       "them into the compat module of that library):\n" + "\n".join(found))


def test_the_scan_finds_each_kind_of_private_use():
    source = textwrap.dedent('''
        import keras.src.backend
        from optuna.storages._heartbeat import get_heartbeat_thread
        from keras_tuner.src import config
        from optuna.storages import _CachedStorage
        import tensorflow.python.ops

        def f(study, trial, oracle):
            study._storage.get_trial(trial._trial_id)
            getattr(oracle, "_brackets", [])
            super()._random_values()
            self._fine = args._storage
    ''')
    found = scan(source, "x.py")
    assert len(found) == 9, found
    assert not any("_fine" in hit or "args._storage" in hit for hit in found)
