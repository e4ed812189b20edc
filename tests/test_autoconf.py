"""``auto`` values (segsearch/autoconf.py): image size, depth and batch size from the data and
the device, resolved by load_config, printed at the start and stored with the study."""

from __future__ import annotations

import functools
import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from segsearch import autoconf, devices
from segsearch.console import TextProgress
from segsearch.data.check import image_sizes
from segsearch.data.config import DataConfig
from segsearch.errors import ConfigError
from segsearch.spacefile import load_config


def _folder(root: Path, sizes: list[tuple[int, int]], ext: str = ".png") -> Path:
    from PIL import Image

    for i, (h, w) in enumerate(sizes):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        img = np.zeros((h, w), np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[: h // 2] = 255
        if ext in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(root / "images" / f"s{i}{ext}", img)
        else:
            Image.fromarray(img).save(root / "images" / f"s{i}{ext}")
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return root


@pytest.fixture()
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autoconf, "device_memory_mib", lambda gpus=None: [])


def test_image_sizes_reads_headers_and_counts(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", [(300, 200), (310, 220), (40, 50)], ".tif")
    sizes, count = image_sizes(DataConfig(source=str(root)))
    assert sorted(sizes) == [(40, 50), (300, 200), (310, 220)] and count == 3
    sizes, count = image_sizes(DataConfig(source=str(root)), limit=2)
    assert len(sizes) == 2 and count == 3
    assert image_sizes(DataConfig(source="sample", sample_count=12)) == ([], 12)


def test_auto_image_size_depth_and_batch_on_a_cpu(tmp_path: Path, no_gpu: None) -> None:
    root = _folder(tmp_path / "d", [(600, 400)] * 3 + [(100, 100)] * 2)
    config = load_config("unet", data=str(root), image_size="auto",
                         sets=["space.depth=auto", "train.batch_size=auto"])
    # median 600x400 -> capped at 256 on a CPU: patches at native resolution
    assert config.data.image_size == (256, 256)
    assert config.space["depth"] == [3, 4, 5]  # 256 / 2**5 = 8 pixels at the bottleneck
    # 2**18 pixels / 256**2 = 4, but 5% of the 4 training images (5 less validation's) -> 2
    assert config.train.batch_size == 2
    keys = [c.key for c in config.auto]
    assert keys == ["data.image_size", "space.depth", "train.batch_size"]
    assert "600x400" in config.auto[0].reason and "patches" in config.auto[0].reason
    assert "5% of the 4 training images" in config.auto[2].reason
    # the stored configuration holds the values, not "auto"
    stored = config.to_dict()
    assert stored["data"]["image_size"] == [256, 256] and stored["train"]["batch_size"] == 2
    # and survives other overrides
    again = config.with_overrides(sets=["search.trials=3"])
    assert [c.key for c in again.auto] == keys


def test_auto_batch_size_from_gpu_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autoconf, "device_memory_mib", lambda gpus=None: [16000, 24000])
    config = load_config("unet", sets=["data.image_size=256", "space.filters=[16, 64]",
                                       "train.batch_size=auto", "data.sample_count=400"])
    # 256*256 px * 64 filters * 48 values * 4 bytes = 768 MiB an image; half of 16000 MiB -> 8
    assert config.train.batch_size == 8
    assert "16,000 MiB" in config.auto[0].reason and "768 MiB" in config.auto[0].reason
    assert autoconf._batch_size((256, 256), 64, [16000], 2, 400).value == 4  # two per GPU
    assert autoconf._batch_size((64, 64), 8, [141000], 1, 1000).value == 32  # capped
    assert autoconf._batch_size((64, 64), 8, [141000], 1, 400).value == 20  # 5% of 400


def test_auto_batch_size_keeps_a_small_data_set_stepping(no_gpu: None) -> None:
    # the ISBI slices on 3 folds: 16 of 24 train; a batch of 8 would take 2 steps an epoch
    assert autoconf._batch_size((128, 128), 16, [], 1, 16).value == 2
    assert autoconf._batch_size((128, 128), 16, [], 1, 400).value == 16  # 2**18 pixels a batch
    assert autoconf._batch_size((128, 128), 16, [], 1, 200).value == 10  # 5% of 200
    folds = load_config("unet", sets=["train.batch_size=auto", "data.sample_count=200",
                                      "data.folds=4", "data.image_size=128"])
    assert folds.train.batch_size == 7  # 5% of the 150 that train on each fold


def test_auto_depth_for_several_architectures_and_no_fit(no_gpu: None) -> None:
    config = load_config({"architecture": ["unet", "deeplabv3plus"],
                          "data": {"source": "sample", "image_size": 128},
                          "space": {"unet": {"depth": "auto"}, "deeplabv3plus": {"depth": "auto"}}})
    assert config.space["unet"]["depth"] == [2, 3, 4]
    assert config.space["deeplabv3plus"]["depth"] == [3, 4]  # its range is 3..4
    with pytest.raises(ConfigError, match=r"space\.depth: auto: no depth of unet .*50x50"):
        load_config("unet", sets=["data.image_size=50", "space.depth=auto"])


def test_sample_auto_size_and_bad_values(no_gpu: None) -> None:
    config = load_config("resunet", image_size="auto")
    assert config.data.image_size == (64, 64) and "synthetic" in config.auto[0].reason
    with pytest.raises(ConfigError, match="--image-size: must be N, HxW .* or auto"):
        load_config("resunet", image_size="big")
    with pytest.raises(ConfigError, match="train.batch_size"):  # the rest is still checked
        load_config("resunet", sets=["train.batch_size=-1", "data.image_size=auto"])
    with pytest.raises(ConfigError, match="resolved by load_config"):
        DataConfig(image_size="auto")


def test_device_memory_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, 81559'\necho '1, 40960'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    devices._nvidia_smi.cache_clear()
    monkeypatch.setattr(devices, "_nvidia_smi", functools.lru_cache(maxsize=1)(
        devices._nvidia_smi.__wrapped__))
    assert autoconf.device_memory_mib() == [81559, 40960]
    assert autoconf.device_memory_mib("1") == [40960]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert autoconf.device_memory_mib() == [81559]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert autoconf.device_memory_mib() == []


def test_the_choices_are_printed_at_the_start() -> None:
    stream = io.StringIO()
    TextProgress(stream=stream)({"event": "study_start", "auto": [
        {"key": "data.image_size", "value": [256, 256], "reason": "the median image is 512x512"}]})
    assert "Auto: data.image_size = [256, 256] (the median image is 512x512)" in stream.getvalue()
