"""``auto`` in a space file: values derived from the data's fingerprint and the device.

Three keys take ``auto`` (nnU-Net's idea of a configuration planned from the data set rather than
tuned by hand):

- ``data.image_size: auto`` (or ``--image-size auto``): the median image size, rounded down to a
  multiple of 32 (so depths up to 5 divide it), at most 512 on a GPU and 256 on a CPU; images
  larger than that train on patches at their native resolution (``data.resize: auto``), so thin
  structures keep their pixels. The synthetic sample: 64.
- ``space.depth: auto`` (or ``space.<architecture>.depth: auto``): the depths that leave a
  bottleneck of at least 8 pixels at that size (up to three, the deepest first allowed by the
  architecture), within the architecture's searched range and dividing the size.
- ``train.batch_size: auto``: on a GPU, the largest power of two whose estimated training memory
  (about ``48 * filters`` float32 values per input pixel for the widest network in the space: the
  activations a U-Net keeps for the backward pass) fits half of the GPU's memory share
  (``nvidia-smi``'s total memory, divided by ``search.workers_per_gpu``), between 2 and 32; on a
  CPU, about 2**18 pixels a batch (the step's cost grows with the batch, so fewer, smaller
  steps buy nothing), between 2 and 16. Either way at most 5% of the training images (nnU-Net's
  cap: a batch that holds a large share of a small data set takes few steps an epoch, and a
  short trial learns nothing; on 16 training images a batch of 8 takes 2 steps an epoch, one of
  2 takes 8), and at least 2.

:func:`resolve` is called by :func:`segsearch.spacefile.load_config`: the Config holds concrete
values (and ``Config.auto`` the choices with their reasons, which ``segsearch run`` prints and
the study stores in ``study.json``). Nothing here initialises a GPU: the device is asked through
``nvidia-smi``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segsearch.errors import ConfigError

__all__ = ["AUTO", "Choice", "auto_keys", "device_memory_mib", "resolve"]

AUTO = "auto"
#: the largest auto image side on a GPU and on a CPU
MAX_SIDE_GPU = 512
MAX_SIDE_CPU = 256
#: float32 values kept per input pixel per first-level filter (see the module docstring)
VALUES_PER_PIXEL_PER_FILTER = 48
#: the width assumed for architectures whose encoder is a ResNet50 (64 channels at stride 2)
BACKBONE_FILTERS = 64
#: pixels a CPU batch holds (about)
CPU_BATCH_PIXELS = 2 ** 18


@dataclass(frozen=True)
class Choice:
    """One ``auto`` key resolved: its dotted key, the value chosen and why."""

    key: str
    value: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """{"key", "value", "reason"}, as study.json stores it."""
        return {"key": self.key, "value": self.value, "reason": self.reason}


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def auto_keys(raw: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The key paths of a raw space-file mapping whose value is ``auto``."""
    found: list[tuple[str, ...]] = []
    data = raw.get("data")
    if isinstance(data, Mapping) and _is_auto(data.get("image_size")):
        found.append(("data", "image_size"))
    train = raw.get("train")
    if isinstance(train, Mapping) and _is_auto(train.get("batch_size")):
        found.append(("train", "batch_size"))
    space = raw.get("space")
    if isinstance(space, Mapping):
        for key, value in space.items():
            if key == "depth" and _is_auto(value):
                found.append(("space", "depth"))
            elif isinstance(value, Mapping) and _is_auto(value.get("depth")):
                found.append(("space", str(key), "depth"))
    return found


def placeholder(raw: dict[str, Any], keys: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    """``raw`` with every ``auto`` value replaced by a value that validates (to check the rest).

    ``raw`` is a private copy (load_config's), changed in place and returned.
    """
    for path in keys:
        if path == ("data", "image_size"):
            raw["data"]["image_size"] = 64
        elif path == ("train", "batch_size"):
            raw["train"]["batch_size"] = 8
        else:  # a space depth: the hypermodel's own range while the rest is checked
            section = raw["space"] if len(path) == 2 else raw["space"][path[1]]
            section.pop("depth")
    return raw


def device_memory_mib(gpus: str | None = None) -> list[int]:
    """Total memory (MiB) of each GPU a search would use, from ``nvidia-smi``; [] without one.

    Args:
        gpus: ``search.gpus`` ("0,1"); None: the GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible
            (all of them when it is unset; none when it is empty or -1).
    """
    from segsearch.devices import visible_gpus

    if gpus is None:
        found = visible_gpus()
    else:
        wanted = [g.strip() for g in str(gpus).split(",") if g.strip()]
        found = [g for g in visible_gpus({}) if g.index in wanted]
    return [g.memory_mib for g in found if g.memory_mib]


def _side(median: float, cap: int) -> int:
    return int(min(cap, max(32, 32 * math.floor(median / 32))))


def _pow2_floor(value: float) -> int:
    return 1 if value < 2 else 2 ** int(math.floor(math.log2(value)))


def _image_size(sizes: list[tuple[int, int]], gpu: bool) -> tuple[Choice, tuple[int, int]]:
    if not sizes:
        return Choice("data.image_size", [64, 64], "the synthetic sample (any size; 64 keeps it "
                                                   "quick)"), (64, 64)
    heights = sorted(h for h, _ in sizes)
    widths = sorted(w for _, w in sizes)
    mh, mw = heights[len(heights) // 2], widths[len(widths) // 2]
    cap = MAX_SIDE_GPU if gpu else MAX_SIDE_CPU
    size = (_side(mh, cap), _side(mw, cap))
    if mh > size[0] or mw > size[1]:
        how = (f"patches of {size[0]}x{size[1]} at native resolution (at most {cap} on "
               f"{'a GPU' if gpu else 'a CPU'})")
    else:
        how = "whole images"
    return Choice("data.image_size", list(size),
                  f"the median image is {mh}x{mw}: {how}"), size


def _depth_param(architecture: str, size: tuple[int, int], channels: int, weights: Any) -> Any:
    from segsearch.hypermodels.registry import spec

    for param in spec(architecture).params((size[0], size[1], channels), weights):
        if param.name == "depth":
            return param
    raise ConfigError(f"space.depth: auto: {architecture} has no depth hyperparameter; "
                      "remove the entry")


def _depths(architecture: str, size: tuple[int, int], channels: int, weights: Any,
            key: str) -> Choice:
    param = _depth_param(architecture, size, channels, weights)
    small = min(size)
    deepest = max(1, int(math.floor(math.log2(max(small, 1) / 8))))
    low = int(param.min_value) if param.min_value is not None else 1
    high = int(param.max_value) if param.max_value is not None else deepest
    domain = getattr(param, "domain", None)

    def allowed(d: int) -> bool:
        if domain is not None and hasattr(domain, "contains") and not domain.contains(d):
            return False
        return size[0] % 2 ** d == 0 and size[1] % 2 ** d == 0

    top = min(deepest, high)
    values = [d for d in range(max(low, top - 2), top + 1) if allowed(d)]
    if not values:
        fits = [d for d in range(low, high + 1) if allowed(d)]
        if not fits:
            raise ConfigError(f"{key}: auto: no depth of {architecture} ({low}..{high}) divides "
                              f"the image size {size[0]}x{size[1]}; give data.image_size a "
                              "multiple of 32, or a depth")
        values = fits[:1]
        why = f"the shallowest {architecture} depth that divides {size[0]}x{size[1]}"
    else:
        why = (f"a bottleneck of at least 8 pixels at {size[0]}x{size[1]}, within "
               f"{architecture}'s range {low}..{high}")
    return Choice(key, values if len(values) > 1 else values[0], why)


def _widest(entry: Any, param_values: Sequence[Any]) -> int | None:
    """The largest ``filters`` a space entry (or the hypermodel's choices) allows."""
    if isinstance(entry, Mapping):
        entry = entry.get("values", entry.get("max", entry.get("default")))
    if isinstance(entry, (list, tuple)):
        nums = [v for v in entry if isinstance(v, int) and not isinstance(v, bool)]
        return max(nums) if nums else None
    if isinstance(entry, int) and not isinstance(entry, bool):
        return entry
    nums = [v for v in param_values if isinstance(v, int) and not isinstance(v, bool)]
    return max(nums) if nums else None


def _filters(architecture: str, space: Mapping[str, Any], size: tuple[int, int],
             channels: int, weights: Any) -> int:
    from segsearch.hypermodels.registry import spec

    arch = spec(architecture)
    if arch.takes_weights:
        return BACKBONE_FILTERS
    for param in arch.params((size[0], size[1], channels), weights):
        if param.name == "filters":
            return _widest(space.get("filters"), param.values) or BACKBONE_FILTERS
    return BACKBONE_FILTERS


#: the largest share of the training images one batch holds (nnU-Net's 5%)
BATCH_SHARE = 0.05


def _batch_size(size: tuple[int, int], filters: int, memory: list[int], share: int,
                count: int) -> Choice:
    """``count``: the training images (the images less those validation takes)."""
    pixels = size[0] * size[1]
    most = max(2, math.floor(count * BATCH_SHARE))
    if memory:
        per_image = pixels * filters * VALUES_PER_PIXEL_PER_FILTER * 4 / 2 ** 20
        budget = min(memory) / max(1, share) * 0.5
        value = min(32, max(2, _pow2_floor(budget / per_image)), most)
        why = (f"{min(memory):,} MiB on the GPU{'s' if len(memory) > 1 else ''}"
               f"{f' shared by {share} workers' if share > 1 else ''}, about "
               f"{per_image:,.0f} MiB a {size[0]}x{size[1]} image for {filters} filters")
    else:
        value = min(16, max(2, _pow2_floor(CPU_BATCH_PIXELS / pixels)), most)
        why = f"no GPU: about {CPU_BATCH_PIXELS:,} pixels a batch on the CPU"
    if value == most and most < 16:
        why += (f"; at most {BATCH_SHARE:.0%} of the {count} training images (at least 2), so "
                f"an epoch takes {max(1, math.ceil(count / value))} steps")
    return Choice("train.batch_size", int(value), why)


def _training_images(data: Any, count: int) -> int:
    """How many of ``count`` images train: (K-1)/K with data.folds, all with a val_source,
    else 1 - val_fraction."""
    folds = int(data.folds or 0)
    if folds >= 2:
        return max(1, count * (folds - 1) // folds)
    if data.val_source:
        return count
    return max(1, round(count * (1 - data.val_fraction)))


def resolve(raw: dict[str, Any], checked: Any, keys: Sequence[tuple[str, ...]],
            ) -> tuple[dict[str, Any], tuple[Choice, ...]]:
    """Put concrete values in place of ``auto`` in ``raw`` (a private copy, changed in place).

    Args:
        raw: the space file's mapping after overrides, with ``auto`` values at ``keys``.
        checked: the Config built from ``placeholder(raw)``: its data, search and train sections
            are validated.
        keys: :func:`auto_keys` of ``raw``.

    Returns:
        ``raw`` and the choices, in the order data.image_size, space depths, train.batch_size.

    Raises:
        ConfigError, DataError: no depth fits, or the data cannot be read.
    """
    data = checked.data
    memory = device_memory_mib(checked.search.gpus)
    share = int(getattr(checked.search, "workers_per_gpu", 1) or 1)
    choices: list[Choice] = []
    sizes: list[tuple[int, int]] = []
    count = 0
    if ("data", "image_size") in keys or ("train", "batch_size") in keys:
        from segsearch.data.check import image_sizes

        sizes, count = image_sizes(data)
    if ("data", "image_size") in keys:
        choice, size = _image_size(sizes, bool(memory))
        choices.append(choice)
        raw["data"]["image_size"] = list(size)
    else:
        size = tuple(data.image_size) if data.image_size is not None else (256, 256)
    channels = int(getattr(data, "channels", None) or 3)
    weights = checked.train.weights
    archs = list(checked.architectures)
    for path in keys:
        if path[0] != "space":
            continue
        arch = path[1] if len(path) == 3 else archs[0]
        key = ".".join(path)
        choice = _depths(arch, size, channels, weights, key)
        choices.append(choice)
        (raw["space"] if len(path) == 2 else raw["space"][path[1]])["depth"] = choice.value
    if ("train", "batch_size") in keys:
        space = raw.get("space") or {}
        widths = [_filters(a, space if len(archs) == 1 else space.get(a, {}), size, channels,
                           weights) for a in archs]
        choice = _batch_size(size, max(widths), memory, share, _training_images(data, count))
        choices.append(choice)
        raw["train"]["batch_size"] = choice.value
    return raw, tuple(choices)

