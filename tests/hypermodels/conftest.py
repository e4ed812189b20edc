"""Fixtures of the hypermodel tests: tiny data and a local ResNet50 weights file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def tiny_batch(input_shape, num_classes: int, n: int = 2, seed: int = 0):
    """x in [0, 1] and y class ids with a few ignored (-1) pixels."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, *input_shape)).astype("float32")
    y = rng.integers(0, max(num_classes, 2), size=(n, *input_shape[:-1], 1)).astype("float32")
    y[rng.random(y.shape) < 0.1] = -1.0
    return x, y


@pytest.fixture(scope="session")
def resnet50_file(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A ResNet50 (no top) weights file saved by the test itself (no download), and the
    conv1_conv kernel it holds."""
    import keras

    keras.utils.set_random_seed(1)
    backbone = keras.applications.ResNet50(include_top=False, weights=None,
                                           input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("weights") / "resnet50_notop.weights.h5"
    backbone.save_weights(str(path))
    return path, np.array(backbone.get_layer("conv1_conv").kernel)


@pytest.fixture(scope="session")
def resnet50_weights(resnet50_file) -> Path:
    """Path of the local ResNet50 weights file."""
    return resnet50_file[0]


@pytest.fixture(scope="session")
def resnet50_conv1_kernel(resnet50_file) -> np.ndarray:
    """The conv1_conv kernel stored in ``resnet50_weights``."""
    return resnet50_file[1]
