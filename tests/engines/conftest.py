"""Fixtures for the engine tests: a tiny stand-in hypermodel and tiny data, so a trial takes ~1 s.

The stand-in keeps the hypermodel contract (``declare(hp)`` declares every hyperparameter through
the keras-tuner calls, ``build(hp)`` returns a compiled model reporting ``val_dice``, an
:class:`InfeasibleError` before building) with one conv layer, so the driver and both engines can be
exercised end to end in seconds; ``tests/test_driver.py`` runs the real hypermodels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras_tuner
import numpy as np
import pytest


class TinyHyperModel(keras_tuner.HyperModel):
    """A one-conv-layer segmentation hypermodel with every keras-tuner hyperparameter type.

    Args:
        input_shape: (H, W, C).
        infeasible_builds: build numbers (1-based) that raise InfeasibleError.
        nan_builds: build numbers whose loss is NaN.
        diverge_builds: build numbers that train with SGD at a learning rate of 1e6 (their weights
            blow up while the loss stays finite).
    """

    def __init__(self, input_shape: tuple[int, ...], *, infeasible_builds: tuple[int, ...] = (),
                 nan_builds: tuple[int, ...] = (), diverge_builds: tuple[int, ...] = ()) -> None:
        super().__init__(name="tiny")
        self.input_shape = tuple(input_shape)
        self.infeasible_builds = infeasible_builds
        self.nan_builds = nan_builds
        self.diverge_builds = diverge_builds
        self.builds = 0

    def declare(self, hp: Any) -> dict[str, Any]:
        values = {
            "width": hp.Choice("width", [2, 4, 8], default=4),
            "learning_rate": hp.Float("learning_rate", 1e-3, 3e-2, sampling="log", default=1e-2),
            "optimizer": hp.Choice("optimizer", ["adam", "sgd"], default="adam"),
        }
        with hp.conditional_scope("optimizer", ["sgd"]):
            values["momentum"] = hp.Float("momentum", 0.0, 0.9, default=0.5)
        values["bias"] = hp.Boolean("bias", default=True)
        values["activation"] = hp.Fixed("activation", "relu")
        return values

    def build(self, hp: Any) -> Any:
        import keras

        from segsearch import metrics
        from segsearch.errors import InfeasibleError

        values = self.declare(hp)
        self.builds += 1
        if self.builds in self.infeasible_builds:
            raise InfeasibleError(f"width {values['width']} cannot work at this size (stand-in)")
        inputs = keras.Input(self.input_shape)
        h = keras.layers.Conv2D(values["width"], 3, padding="same", activation=values["activation"],
                                use_bias=values["bias"], name="conv")(inputs)
        outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(h)
        model = keras.Model(inputs, outputs, name="tiny")
        if self.builds in self.diverge_builds:
            optimizer = keras.optimizers.SGD(1e6, momentum=0.9)
        elif values["optimizer"] == "sgd":
            optimizer = keras.optimizers.SGD(values["learning_rate"], momentum=values["momentum"])
        else:
            optimizer = keras.optimizers.Adam(values["learning_rate"])
        loss: Any = "binary_crossentropy"
        if self.builds in self.nan_builds:
            def loss(y_true: Any, y_pred: Any) -> Any:
                return keras.ops.mean(y_pred) * float("nan")
        # eager: a one-conv model on 16x16 trains in milliseconds, while tracing its train and
        # test functions took ~3 s a trial (most of the engine tests' time); the real
        # hypermodels train in graph mode in tests/test_driver.py, test_cli.py, test_robust.py
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics.default_metrics(1),
                      jit_compile=False, run_eagerly=True)
        return model


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 images of 16x16 with a learnable binary mask (bright pixels), as an .npz data source."""
    rng = np.random.default_rng(0)
    x = rng.random((12, 16, 16, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, images=x, masks=y)
    return path


@pytest.fixture
def make_config(tiny_npz: Path, tmp_path: Path):
    """make_config(engine, trials=2, epochs=1, **sections) -> Config of a tiny study in tmp_path."""
    from segsearch.spacefile import load_config

    def make(engine: str = "optuna", *, trials: int = 2, epochs: int = 1, study: str = "tiny",
             search: dict | None = None, train: dict | None = None, export: dict | None = None,
             space: dict | None = None, study_dir: Path | None = None):
        raw = {
            "study": study,
            "architecture": "unet",
            "data": {"source": str(tiny_npz), "image_size": 16, "val_fraction": 0.34,
                     "augment": 0},
            # the stand-in hypermodel (monkeypatched here) does not reach a worker process
            "train": {"epochs": epochs, "batch_size": 4, "isolation": "none", **(train or {})},
            "search": {"engine": engine, "trials": trials, **(search or {})},
            "export": {"enabled": False, **(export or {})},
            "space": space or {},
        }
        return load_config(raw, study_dir=study_dir or tmp_path / "studies" / study,
                           check_space=False)

    return make


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch):
    """Make Study use a TinyHyperModel; returns a function setting its infeasible/NaN builds."""
    from segsearch import workshop

    settings: dict[str, Any] = {}

    def hypermodel(self: Any) -> Any:
        if self._hypermodel is None:
            splits = self.load_data()
            self._hypermodel = TinyHyperModel((*splits.train.size, splits.train.channels),
                                              **settings)
        return self._hypermodel

    monkeypatch.setattr(workshop.Workshop, "hypermodel", hypermodel)
    return settings.update


class Interrupt:
    """A progress callback that raises KeyboardInterrupt at a given trial's given epoch event."""

    def __init__(self, trial: int, epoch: int = 1) -> None:
        self.trial, self.epoch = trial, epoch
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if (event["event"], event.get("trial"), event.get("epoch")) == ("epoch", self.trial,
                                                                       self.epoch):
            raise KeyboardInterrupt


@pytest.fixture
def interrupt():
    """Interrupt(trial, epoch): a progress callback that stops the run there (Ctrl-C)."""
    return Interrupt
