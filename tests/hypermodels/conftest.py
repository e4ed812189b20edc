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
def resnet50_file(resnet50_reference) -> tuple[Path, np.ndarray]:
    """A ResNet50 (no top) weights file saved by the test itself (no download), and the
    conv1_conv kernel it holds (tests/conftest.py builds it once for the session)."""
    values, modern, _ = resnet50_reference
    return modern, values["conv1_conv"][0]


@pytest.fixture(scope="session")
def resnet50_weights(resnet50_file) -> Path:
    """Path of the local ResNet50 weights file."""
    return resnet50_file[0]


@pytest.fixture(scope="session")
def resnet50_conv1_kernel(resnet50_file) -> np.ndarray:
    """The conv1_conv kernel stored in ``resnet50_weights``."""
    return resnet50_file[1]
