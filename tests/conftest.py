"""Shared test set-up: quiet TensorFlow, fault injection (tests/_faults.py), a fixed seed, and the
real ISBI slices when present."""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# test-only fault injection (SEGSEARCH_FAULT, tests/_faults.py) through segsearch's general hook for
# extra trial callbacks; in the environment, so worker processes and subprocesses inherit it
_FAULTS = Path(__file__).resolve().parent / "_faults.py"
os.environ["SEGSEARCH_TRIAL_CALLBACKS"] = f"{_FAULTS}:callbacks"

REPO = Path(__file__).resolve().parents[1]
ISBI = REPO.parent / "shared" / "data" / "isbi2012-membrane"

#: the longest test files (on 2 cores, 3 processes), longest first: the default run (pyproject:
#: `--dist loadfile --no-loadscope-reorder`) hands them out first so that the short files fill
#: the processes' ends; xdist's own order (most tests first) left the one-test benchmark files of
#: ~45 s each for the end, one process running them while the others waited. Order measured
#: file by file (`-n 0 --durations`), every file over ~15 s; the first eleven by CPU seconds
#: (their subprocesses included): 225, 145, 94, 86, 83, 81, 72, 66, 58, 55, 47.
LONGEST_FIRST = (
    "test_robust.py", "test_readme.py", "test_driver.py", "test_devices.py",
    "architectures/test_architectures_builders.py", "test_folds.py", "test_export.py",
    "hypermodels/test_every_architecture.py", "test_cli.py", "engines/test_failures.py",
    "engines/test_optuna_engine.py", "test_formats.py", "test_bench_gpu.py", "test_pareto.py",
    "test_tracking.py", "engines/test_keras_tuner_engine.py", "blocks/test_blocks_encoders.py",
    "architectures/test_architectures_encoders.py", "test_bench_pipeline.py",
    "engines/test_final_training.py", "data/test_data_device.py", "test_refine.py",
    "hypermodels/test_resnet50_unet.py", "engines/test_trial.py", "test_predict.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the files of LONGEST_FIRST first, in its order; the rest keep theirs."""
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]  # relative to the repository root
        return rank.get(path.removeprefix("tests/"), len(rank))

    items.sort(key=key)  # stable: a file's tests keep their order


def pytest_collection_finish(session: pytest.Session) -> None:
    """Leave the heap that collection built (TensorFlow, Keras, Optuna, the test modules: about
    400,000 objects that live as long as the process) out of every later garbage collection.

    A full collection walks every tracked object: 0.4 s each with that heap alone, and one runs
    before every trial (``release_memory``) and whenever Python's own thresholds ask for one, a
    quarter of a training test's CPU time. Garbage is collected first, so only live objects are
    frozen; what tests create later is collected as before (``gc.freeze``).
    """
    import gc

    gc.collect()
    gc.freeze()


@pytest.fixture
def eager_trials(monkeypatch):
    """Every trial the test starts trains eagerly, in worker processes too
    (``SEGSEARCH_TEST_EAGER``, tests/_faults.py): for tests whose subject is not graph mode."""
    monkeypatch.setenv("SEGSEARCH_TEST_EAGER", "1")


@pytest.fixture(autouse=True)
def _seed():
    """Seed Python, NumPy and Keras before every test (and clear Keras' global state after)."""
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    yield
    import sys

    if "keras" in sys.modules:
        import keras

        # without free_memory's gc.collect(), which costs about 0.6 s a test once the heap is big
        # (a third of the run); the trials' own release_memory() still collects
        keras.backend.clear_session(free_memory=False)


@pytest.fixture
def isbi_dir() -> Path:
    """The 30 real ISBI 2012 EM slices beside the checkout; the test is skipped when they are
    absent."""
    if not (ISBI / "images").is_dir():
        pytest.skip(f"ISBI slices not found at {ISBI}")
    return ISBI


@pytest.fixture(scope="session")
def postgres_url():
    """SQLAlchemy URL of a throwaway PostgreSQL database on 127.0.0.1 for the whole test session.

    Started on first use, stopped and deleted at the end (tests/_postgres.py); skipped, saying to
    run `bash .ci/postgres.sh`, when PostgreSQL or psycopg2 is missing. Give each test its own study
    name.
    """
    from _postgres import postgres_url_fixture

    yield from postgres_url_fixture()


@pytest.fixture(scope="session")
def resnet50_reference(tmp_path_factory):
    """A ResNet50 (no top, weights=None, 32x32, seed 1) built once for the session, saved as a
    Keras 3 .weights.h5 and as a legacy .h5 (the layout of the keras.applications ImageNet files):
    (per-layer weight values by layer name, modern path, legacy path)."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(1)
    reference = keras.applications.ResNet50(include_top=False, weights=None,
                                            input_shape=(32, 32, 3))
    folder = tmp_path_factory.mktemp("resnet50")
    modern = folder / "resnet50_notop.weights.h5"
    reference.save_weights(modern)
    legacy = folder / "resnet50_notop.h5"
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    values = {layer.name: [v.numpy() for v in layer.weights]
              for layer in reference.layers if layer.weights}
    return values, modern, legacy


@pytest.fixture
def keras_home(monkeypatch, tmp_path):
    """An empty Keras home, and downloads that fail the way they do offline."""
    from keras.src.backend import config
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    return tmp_path
