"""The workshop's class weights: "auto" from the training masks' class frequencies, recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segsearch import losses
from segsearch.errors import ConfigError
from segsearch.spacefile import load_config
from segsearch.workshop import CLASS_WEIGHTS_FILE, Workshop


def _config(tmp_path, class_weights, space=None):
    images = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 1), dtype=np.uint8)
    masks = np.zeros((10, 16, 16), np.uint8)
    masks[:, :4, :] = 1  # every mask a quarter foreground: the frequency, whatever the split
    np.savez(tmp_path / "d.npz", images=images, masks=masks)
    return load_config({"architecture": "unet", "data": {"source": str(tmp_path / "d.npz"),
                                                          "image_size": 16},
                        "train": {"class_weights": class_weights}, "space": space or {}},
                       study_dir=tmp_path / "study", check_space=False)


def test_auto_weights_from_a_known_frequency_are_recorded(tmp_path):
    shop = Workshop(_config(tmp_path, "auto"))
    setting = shop.class_weights(1)
    assert setting["default"] == "auto"
    assert setting["auto"] == losses.auto_class_weights([3, 1])  # 75 % background
    assert not (tmp_path / "study").exists()  # nothing written before the study folder exists
    (tmp_path / "study").mkdir()
    shop.store_split()
    record = json.loads((tmp_path / "study" / CLASS_WEIGHTS_FILE).read_text())
    assert record["frequencies"] == [0.75, 0.25] and record["weights"] == setting["auto"]


def test_weights_are_computed_only_when_used(tmp_path):
    assert Workshop(_config(tmp_path, "none")).class_weights(1)["auto"] is None
    searched = _config(tmp_path, "none", space={"class_weights": ["none", "auto"]})
    assert Workshop(searched).class_weights(1)["auto"] == pytest.approx([0.845299, 1.464102])
    assert Workshop(_config(tmp_path, [1, 2])).class_weights(1)["given"] == [1.0, 2.0]
    with pytest.raises(ConfigError, match="train.class_weights: 3 weights but binary"):
        Workshop(_config(tmp_path, [1, 2, 3])).class_weights(1)
