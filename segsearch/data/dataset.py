"""load(config) -> Splits: read, check, split and prepare images and masks for a model.

Everything that can be wrong with the data is found here, before any training, and raised as one
DataError naming the file(s) and the fix.

Example:
    >>> splits = load(DataConfig(source="data/membrane", image_size=(256, 256)))
    >>> splits.train.x.shape, splits.val.y.shape, splits.info["num_classes"]
    ((24, 256, 256, 1), (6, 256, 256, 1), 1)
    >>> again = load(config, split=splits.split)    # the same split, e.g. for a resumed study
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsearch.data import masks as masks_mod
from segsearch.data import sample as sample_mod
from segsearch.data import sources
from segsearch.data import split as split_mod
from segsearch.data.config import DataConfig
from segsearch.data.sources import ArraySource, Pair, first_names
from segsearch.errors import ConfigError, DataError

#: Positions kept per foreground class and image for the foreground-centred patches.
FOREGROUND_POINTS = 10_000

__all__ = ["FOREGROUND_POINTS", "background_class",
           "Part", "Splits", "load", "to_float", "fit_channels", "resize_image", "resize_mask",
           "discover", "size_mismatch", "group_notes", "check_class_names", "check_val_source"]


# ----------------------------------------------------------------------------------------------
# Array preparation


def to_float(arr: np.ndarray, name: str) -> np.ndarray:
    """Scale decoded pixels to float32 [0, 1]: 8-bit by 255, 16-bit by 65535, floats kept.

    Args:
        arr: the decoded image.
        name: its name, for messages.

    Raises:
        DataError: negative values, integers beyond 16 bits, or floats outside [0, 1].
    """
    kind = arr.dtype.kind
    if kind == "f":
        if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1):
            raise DataError(
                f"{name}: floating-point pixels outside [0, 1] (range "
                f"{np.nanmin(arr):.3g}..{np.nanmax(arr):.3g}); fix: scale the image to [0, 1] or "
                "save it as 8- or 16-bit integers"
            )
        return arr.astype(np.float32, copy=False)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(65535)
    if kind in "iub":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise DataError(
                f"{name}: integer pixels {lo}..{hi} do not fit 8 or 16 bits; fix: save the "
                "image as 8- or 16-bit"
            )
        scale = 255 if hi <= 255 else 65535
        return arr.astype(np.float32) / np.float32(scale)
    raise DataError(f"{name}: pixels of type {arr.dtype} cannot be used; fix: save the "
                    "image as 8- or 16-bit")


def fit_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """(H, W[, C]) float image -> (H, W, channels): grey repeated to RGB, RGB to luminance."""
    if img.ndim == 2:
        img = img[..., None]
    img = img[..., :3]
    if img.shape[-1] == channels:
        return img
    if channels == 3:
        return np.repeat(img[..., :1], 3, axis=-1)
    lum = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
    return lum[..., None].astype(np.float32)


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float32 (H, W, C) image with bilinear interpolation (anti-aliased when
    shrinking)."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    from PIL import Image

    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c]), mode="F")
                   .resize((w, h), Image.BILINEAR))
        for c in range(img.shape[-1])
    ]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0).astype(np.float32)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a class-id mask (H, W) with nearest-neighbour, so no new ids appear."""
    h, w = size
    H, W = mask.shape[:2]
    if (H, W) == (h, w):
        return mask
    rows = np.minimum(((np.arange(h) + 0.5) * H / h).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
    return mask[rows[:, None], cols[None, :]]


def _tiles(length: int, tile: int) -> list[int]:
    """Start positions of tiles of ``tile`` covering ``length`` (the last one overlapping)."""
    if length <= tile:
        return [0]
    n = -(-length // tile)
    return sorted({int(round(v)) for v in np.linspace(0, length - tile, n)})


def _pad(img: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pad an image (zeros) and mask (-1, ignored) at the bottom/right to at least ``size``."""
    H, W = img.shape[:2]
    ph, pw = max(0, size[0] - H), max(0, size[1] - W)
    if ph == 0 and pw == 0:
        return img, mask
    img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
    mask = np.pad(mask, ((0, ph), (0, pw), (0, 0)), constant_values=-1)
    return img, mask


def background_class(config: DataConfig) -> int | None:
    """The class id patches do not centre on: ``data.background`` where it exists, else class 0.

    Args:
        config: the DataConfig.
    """
    return getattr(config, "background", 0)


def _scaled(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """An image size times ``data.scale`` (at least one pixel a side)."""
    if scale == 1.0:
        return (int(hw[0]), int(hw[1]))
    return (max(1, int(round(hw[0] * scale))), max(1, int(round(hw[1] * scale))))


# ----------------------------------------------------------------------------------------------
# Parts and splits


class Part:
    """One side of a split: images and masks ready for a model, kept in memory or read on demand.

    ``x`` / ``y`` are float32 arrays (N, H, W, C) in [0, 1] and (N, H, W, 1) class ids (-1 ignored)
    at the configured size. In crop mode a sample is one ``image_size`` tile of an image, so
    ``len(part)`` (samples) can exceed ``len(part.names)`` (files), and training batches take random
    windows of the whole images instead (see ``segsearch.data.batches``).

    Args:
        names: the file (or array item) names, one per item.
        size: (height, width) of every sample.
        channels: number of image channels.
        load_item: returns item i's (image (H, W, C), mask (H, W, 1)) float32 arrays, at ``size``
            (resize mode) or at full resolution (crop mode).
        arrays: the items already in memory: one (N, H, W, C) + (N, H, W, 1) pair of arrays, or two
            lists; None reads through ``load_item`` every time.
        crop: patch mode (items are full images, samples are tiles; training draws patches).
        background: the background class id (foreground patches centre on any other class), or
            None when every class is a real one.
    """

    def __init__(
        self,
        names: Sequence[str],
        size: tuple[int, int],
        channels: int,
        load_item: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
        arrays: tuple[Any, Any] | None = None,
        crop: bool = False,
        background: int | None = 0,
    ) -> None:
        self.names = tuple(names)
        self.background = background
        self._foreground: dict[int, tuple[np.ndarray, ...]] = {}
        self.size = (int(size[0]), int(size[1]))
        self.channels = int(channels)
        self.crop = bool(crop)
        self._load_item = load_item
        self._arrays = arrays
        self._lock = threading.Lock()
        self._xy: tuple[np.ndarray, np.ndarray] | None = None
        if arrays is None and load_item is None:
            raise ValueError("Part needs arrays or load_item")
        self.item_sizes: list[tuple[int, int]] = []
        if crop:
            owner, offsets = [], []
            for i in range(len(self.names)):
                H, W = self._item_hw(i)
                self.item_sizes.append((int(H), int(W)))
                for oy in _tiles(H, self.size[0]):
                    for ox in _tiles(W, self.size[1]):
                        owner.append(i)
                        offsets.append((oy, ox))
            self.owner = np.asarray(owner, dtype=np.int64)
            self.offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        else:
            self.owner = np.arange(len(self.names), dtype=np.int64)
            self.offsets = np.zeros((len(self.names), 2), dtype=np.int64)

    def _item_hw(self, i: int) -> tuple[int, int]:
        if self._arrays is not None:
            return tuple(self._arrays[0][i].shape[:2])  # type: ignore[return-value]
        return tuple(self._load_item(i)[0].shape[:2])  # type: ignore[misc, return-value]

    def __len__(self) -> int:
        return len(self.owner)

    def __repr__(self) -> str:
        where = "in memory" if self.cached else "read from disk"
        mode = ", crop tiles" if self.crop else ""
        return (f"Part({len(self)} samples of {self.size[0]}x{self.size[1]}x{self.channels} "
                f"from {len(self.names)} files, {where}{mode})")

    @property
    def cached(self) -> bool:
        """True when the decoded arrays are held in memory."""
        return self._arrays is not None

    @property
    def stacked(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The items as one (N, H, W, C) and one (N, H, W, 1) array when in memory and of one
        size."""
        if self._arrays is not None and isinstance(self._arrays[0], np.ndarray):
            return self._arrays
        return None

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item i's image and mask (at ``size``, or full resolution in crop mode)."""
        if self._arrays is not None:
            return self._arrays[0][i], self._arrays[1][i]
        return self._load_item(i)  # type: ignore[misc]

    def foreground(self, i: int) -> tuple[np.ndarray, ...]:
        """Where item i's foreground is: one (n, 2) int array of (row, col) per foreground class.

        A class is foreground when it is not ``background`` (and not ignored, -1). Each class keeps
        at most ``FOREGROUND_POINTS`` positions, drawn once with a fixed seed (as nnU-Net does), so
        a rare class is as likely to be picked as a common one. Computed on first use, then kept.

        Args:
            i: the item (file) index.
        """
        found = self._foreground.get(i)
        if found is None:
            ids = np.asarray(self.item(i)[1])[..., 0]
            classes = np.unique(ids[ids >= 0]).astype(np.int64)
            if self.background is not None:
                classes = classes[classes != self.background]
            rng = np.random.default_rng([i, 7])
            points = []
            for cls in classes:
                flat = np.flatnonzero(ids == cls)
                if len(flat) > FOREGROUND_POINTS:
                    flat = flat[rng.choice(len(flat), FOREGROUND_POINTS, replace=False)]
                points.append(np.stack(np.unravel_index(flat, ids.shape), axis=1).astype(np.int32))
            found = tuple(points)
            self._foreground[i] = found
        return found

    def _materialise(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._xy is None:
                h, w = self.size
                n = len(self)
                x = np.empty((n, h, w, self.channels), np.float32)
                y = np.empty((n, h, w, 1), np.float32)
                if self.stacked is not None and not self.crop:
                    x, y = self.stacked
                else:
                    last, img, msk = -1, None, None
                    for j, (i, (oy, ox)) in enumerate(zip(self.owner, self.offsets)):
                        if i != last:
                            img, msk = self.item(int(i))
                            last = i
                        x[j] = img[oy:oy + h, ox:ox + w]
                        y[j] = msk[oy:oy + h, ox:ox + w]
                self._xy = (x, y)
            return self._xy

    @property
    def x(self) -> np.ndarray:
        """Images, float32 (N, H, W, C) in [0, 1] (reads every file when the part is not cached)."""
        return self._materialise()[0]

    @property
    def y(self) -> np.ndarray:
        """Masks, float32 (N, H, W, 1) class ids, -1 for ignored pixels."""
        return self._materialise()[1]


@dataclass(frozen=True, eq=False)
class Splits:
    """What ``load`` returns.

    Args:
        train: the training part.
        val: the validation part.
        info: JSON-able facts: source, synthetic, description, counts, num_classes, channels,
            image_size, mask_kind, class_frequencies, split (file names), cached ...
        split: the JSON-able split record; pass it to ``load(config, split=...)`` to reuse the
            split.
    """

    train: Part
    val: Part
    info: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Item:
    """One pair while loading."""

    name: str
    image: Any = None  # raw decoded image until prepared, then float32 (H, W, C)
    mask: Any = None  # raw decoded mask until converted, then int16 (H, W)
    mask_name: str = ""
    stats: Any = None
    signature: Any = None
    bit_depth: int = 8
    native_channels: int = 1


def _raise_grouped(problems: list[tuple[str, str, str]]) -> None:
    """Raise one DataError for the first kind of problem, listing other files with the same one."""
    if not problems:
        return
    kind, _, message = problems[0]
    others = [name for k, name, _ in problems[1:] if k == kind]
    if others:
        message += f" (the same problem in {len(others)} more: {first_names(others)})"
    raise DataError(message)


def _read_pair(
    pair: Pair, palette: str, mat_key: str | None = None, notes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair through ``sources.read_array`` / ``read_mask`` (so tests can count reads)."""
    image = sources.read_array(pair.image, notes=notes)
    return image, sources.read_mask(pair, palette=palette, mat_key=mat_key, notes=notes)


def size_mismatch(image_label: str, image: np.ndarray, mask_label: str, mask: np.ndarray) -> str:
    """The message for an image and its mask of different sizes (``load`` and ``check`` alike)."""
    return (
        f"{image_label} is {image.shape[0]}x{image.shape[1]} but its mask {mask_label} is "
        f"{mask.shape[0]}x{mask.shape[1]} (height x width); fix: save the mask at the image's size"
    )


def _short(path: Path) -> str:
    """'masks/12.png': a mask's folder and name, for messages that list several files."""
    return f"{path.parent.name}/{path.name}"


def _source_label(path: str) -> str:
    return str(path)


def discover(path: str, config: DataConfig, role: str = "") -> sources.Discovery:
    """The pairs of a folder source the way ``config`` reads it (``images_dir``, ``pair`` ...).

    Args:
        path: data.source, or data.val_source.
        config: the DataConfig.
        role: "" for data.source, "val_" for data.val_source (its val_images_dir / val_masks_dir).
    """
    images_dir, masks_dir = (config.val_dirs if role == "val_"
                             else (config.images_dir, config.masks_dir))
    return sources.discover(path, mask_suffix=config.mask_suffix, images_dir=images_dir,
                            masks_dir=masks_dir, pair=config.pair, role=role)


def _files(src: list[Pair] | ArraySource) -> set[str]:
    """The resolved image files of a source (the array file for arrays), to compare sources."""
    if isinstance(src, ArraySource):
        return set()
    return {os.path.realpath(p.image) for p in src}


def check_val_source(config: DataConfig, train: list[Pair] | ArraySource,
                     val: list[Pair] | ArraySource) -> None:
    """Raise a ConfigError when data.val_source reads (some of) the training images.

    Args:
        config: the DataConfig (val_source set).
        train: the training source's pairs (or arrays).
        val: the validation source's pairs (or arrays).
    """
    same_arrays = (isinstance(train, ArraySource) and isinstance(val, ArraySource)
                   and os.path.realpath(config.source) == os.path.realpath(str(config.val_source)))
    shared = _files(train) & _files(val)
    if not shared and not same_arrays:
        return
    n_val = len(val.names) if isinstance(val, ArraySource) else len(val)
    what = ("it holds the same arrays as data.source" if same_arrays else
            f"{len(shared)} of its {n_val} images are training images (e.g. "
            f"{first_names(sorted(Path(p).name for p in shared), 3)})")
    same_folder = os.path.realpath(config.source) == os.path.realpath(str(config.val_source))
    fix = ("if the validation images are in other subfolders of this folder, name them with "
           "--set data.val_images_dir=FOLDER --set data.val_masks_dir=FOLDER (e.g. test/images and "
           "test/1st_manual), relative to data.val_source" if same_folder else
           "point data.val_source at a folder of other images, or leave it out to hold out "
           "data.val_fraction of the training pairs")
    raise ConfigError(
        f"data.val_source: {config.val_source}: {what}, so validation would score the network "
        f"on images it trains on; fix: {fix}"
    )


def _open(path: str, config: DataConfig, warnings: list[str],
          role: str = "") -> list[Pair] | ArraySource:
    if sources.is_array_source(path):
        return sources.load_arrays(path, mask_suffix=config.mask_suffix, role=role)
    found = discover(path, config, role)
    found.raise_if_empty()
    unpaired = found.unpaired_warning()
    warnings.extend(found.notes + ((unpaired,) if unpaired else ()))
    return list(found.pairs)


def mask_folder(src: list[Pair] | ArraySource, root: str) -> str:
    """The masks' folder relative to the source, for messages ("the masks array" for arrays)."""
    if isinstance(src, ArraySource) or not src:
        return "the masks array"
    try:
        return Path(src[0].mask).parent.relative_to(root).as_posix() + "/"
    except ValueError:
        return str(Path(src[0].mask).parent) + "/"


def group_notes(notes: Sequence[str]) -> list[str]:
    """Notes of the form "WHAT: ITEM" grouped by WHAT: "3 WHAT: a, b, c" (each item once)."""
    groups: dict[str, list[str]] = {}
    for note in notes:
        what, _, item = note.partition(": ")
        if item not in groups.setdefault(what, []):
            groups[what].append(item)
    return [f"{len(items)} {what}: {first_names(sorted(items, key=sources.natural_key))}"
            for what, items in groups.items()]


def _names(src: list[Pair] | ArraySource) -> list[str]:
    return src.names if isinstance(src, ArraySource) else [p.name for p in src]


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _read_all(
    entries: list[tuple[str, Any]], palette: str, keep: bool, where: str,
    mat_key: str | None = None, notes: list[str] | None = None,
) -> list[_Item]:
    """Decode every pair once: readability, sizes, mask statistics. Raises grouped DataErrors."""
    problems: list[tuple[str, str, str]] = []

    def one(entry: tuple[str, Any]) -> _Item | None:
        name, ref = entry
        try:
            if isinstance(ref, Pair):
                image, mask = _read_pair(ref, palette, mat_key, notes)
                item = _Item(name, mask_name=_short(ref.mask))
                image_label, mask_label = str(ref.image), _short(ref.mask)
            else:
                arrays, i = ref
                image, mask = np.asarray(arrays.images[i]), np.asarray(arrays.masks[i])
                if image.ndim == 3 and image.shape[-1] == 1:
                    image = image[..., 0]
                if image.ndim == 3 and image.shape[-1] == 4:
                    image = image[..., :3]
                item = _Item(name, mask_name=name)
                image_label = mask_label = name
            if image.shape[:2] != mask.shape[:2]:
                problems.append(("size", name, size_mismatch(image_label, image, mask_label, mask)))
                return None
            item.stats = masks_mod.mask_stats(mask, mask_label)
            item.signature = masks_mod.signature(mask)
            item.bit_depth = (32 if image.dtype.kind == "f"
                              else (16 if image.dtype.itemsize > 1 else 8))
            item.native_channels = 1 if image.ndim == 2 else 3
            image = to_float(image, image_label)
            if keep:
                item.image, item.mask = image, mask
            else:
                item.image = image.shape[:2]
            return item
        except DataError as exc:
            problems.append(("read", name, str(exc)))
            return None

    with ThreadPoolExecutor(_workers()) as pool:
        items = list(pool.map(one, entries))
    order = {name: i for i, (name, _) in enumerate(entries)}
    problems.sort(key=lambda p: (p[0] != "read", order.get(p[1], 0)))
    _raise_grouped(problems)
    return items  # type: ignore[return-value]


def _entries(src: list[Pair] | ArraySource) -> list[tuple[str, Any]]:
    if isinstance(src, ArraySource):
        return [(n, (src, i)) for i, n in enumerate(src.names)]
    return [(p.name, p) for p in src]


def load(
    config: DataConfig, split: Mapping[str, Any] | str | os.PathLike[str] | None = None,
) -> Splits:
    """Read, check, split and prepare the data a config describes.

    Args:
        config: the DataConfig.
        split: a split record from an earlier ``load`` (``Splits.split``, or a JSON file of it) to
            reuse instead of drawing a new one, e.g. when a study resumes.

    Returns:
        Splits(train, val, info, split).

    Raises:
        DataError: anything wrong with the data, as one message naming the file(s) and the fix.
        ConfigError: a config that does not fit the data (e.g. a colour table's ids vs num_classes).

    Example:
        >>> splits = load(DataConfig(source="sample", image_size=64, num_classes=3))
        >>> splits.info["synthetic"], splits.info["description"]
        (True, 'SYNTHETIC sample data (not real images): 64 3-class images ...')
    """
    if not isinstance(config, DataConfig):
        raise TypeError(f"load() expects a DataConfig, got {type(config).__name__}")
    record = split_mod.read_record(split) if split is not None else None
    if config.is_sample:
        return _load_sample(config, record)

    where = _source_label(config.source)
    warnings: list[str] = []
    notes: list[str] = []
    train_src = _open(config.source, config, warnings)
    val_src = (_open(config.val_source, config, warnings, "val_")
               if config.val_source is not None else None)
    if val_src is not None:
        check_val_source(config, train_src, val_src)
    train_names = _names(train_src)
    val_names = _names(val_src) if val_src is not None else None
    if record is not None:
        train_idx, val_idx = split_mod.resolve(record, train_names, val_names, where=where)
        rec = dict(record)
    elif val_src is not None:
        train_idx, val_idx = list(range(len(train_names))), list(range(len(val_names or [])))
        if not train_idx or not val_idx:
            # unreachable: sources raise on empty
            raise DataError(f"{where}: no training pairs; fix: add pairs")
        rec = split_mod.folder_split(train_names, val_names or [],
                                     val_source=str(config.val_source))
    else:
        rec = split_mod.make_split(train_names, val_fraction=config.val_fraction,
                                   seed=config.seed, where=where, folds=config.folds,
                                   fold_seed=config.fold_seed)
        index = {n: i for i, n in enumerate(train_names)}
        train_idx = [index[n] for n in rec["train"]]
        val_idx = [index[n] for n in rec["val"]]

    entries_train = _entries(train_src)
    entries_val = _entries(val_src) if val_src is not None else []
    palette = "rgb" if config.colors is not None else "index"

    # Decide on caching from the first pair's size before reading everything.
    first = _read_all(entries_train[:1], palette, keep=True, where=where, mat_key=config.mat_key)[0]
    h0, w0 = first.image.shape[:2]
    n_total = len(entries_train) + len(entries_val)
    patch_likely = config.patch_mode([_scaled((h0, w0), config.scale)])
    per_item = (h0 * w0 * config.scale ** 2 if patch_likely or not config.image_size
                else config.image_size[0] * config.image_size[1])
    estimate = n_total * per_item * (3 + 1) * 4 * (2 if patch_likely else 1)
    keep = config.cache if config.cache is not None else estimate < 0.5 * _available_memory()

    items_train = _read_all(entries_train, palette, keep=keep, where=where,
                            mat_key=config.mat_key, notes=notes)
    items_val = (_read_all(entries_val, palette, keep=keep, where=str(config.val_source),
                           mat_key=config.mat_key, notes=notes) if entries_val else [])
    all_items = items_train + items_val
    rule = masks_mod.decide(
        [it.stats for it in all_items], mask_kind=config.mask_kind, num_classes=config.num_classes,
        colors=config.colors, ignore_value=config.ignore_value,
        where=where if not items_val else f"{where} and {config.val_source}", values=config.values,
    )
    check_class_names(config, rule.num_classes)
    warnings.extend(group_notes(notes))
    score = masks_mod.repeated_mask([it.signature for it in items_train])
    if score is not None:
        warnings.append(masks_mod.repeated_warning(score, mask_folder(train_src, config.source)))
    channels = config.channels or (3 if any(it.native_channels == 3 for it in all_items) else 1)

    shapes = {(it.image.shape[:2] if keep else it.image) for it in all_items}
    size = config.image_size
    if size is None:
        if len(shapes) > 1:
            by_shape: dict[tuple[int, int], str] = {}
            for it in all_items:
                by_shape.setdefault(tuple(it.image.shape[:2] if keep else it.image), it.name)
            shown = ", ".join(f"{s[0]}x{s[1]} ({n})" for s, n in list(by_shape.items())[:4])
            raise DataError(
                f"{where}: images have {len(shapes)} different sizes (height x width: {shown}) and "
                "data.image_size is not set; fix: set data.image_size, e.g. [256, 256], to resize "
                "(or crop) them all to one size"
            )
        size = next(iter(shapes))
    crop = config.patch_mode([_scaled(s, config.scale) for s in shapes])

    def prepare(image: np.ndarray, raw_mask: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
        img = fit_channels(image, channels)
        ids = masks_mod.to_ids(raw_mask, rule, name)
        if crop:
            scaled = _scaled(img.shape[:2], config.scale)
            img, ids = resize_image(img, scaled), resize_mask(ids, scaled)
            img, ids3 = _pad(img, ids[..., None], size)
            return np.ascontiguousarray(img, np.float32), ids3.astype(np.float32)
        img = resize_image(img, size)
        return img, resize_mask(ids, size)[..., None].astype(np.float32)

    def build_part(idx: list[int], items: list[_Item], refs: list[tuple[str, Any]]) -> Part:
        names = [items[i].name for i in idx]
        if keep:
            prepared = [prepare(items[i].image, items[i].mask, items[i].mask_name) for i in idx]
            xs, ys = [p[0] for p in prepared], [p[1] for p in prepared]
            if len({a.shape for a in xs}) == 1:
                arrays: tuple[Any, Any] = (np.stack(xs), np.stack(ys))
            else:
                arrays = (xs, ys)
            return Part(names, size, channels, arrays=arrays, crop=crop,
                        background=background_class(config))
        chosen = [refs[i] for i in idx]

        def load_item(j: int) -> tuple[np.ndarray, np.ndarray]:
            name, ref = chosen[j]
            if isinstance(ref, Pair):
                image, mask = _read_pair(ref, palette, config.mat_key)
                label = _short(ref.mask)
            else:
                arrays_, i = ref
                image, mask = np.asarray(arrays_.images[i]), np.asarray(arrays_.masks[i])
                label = name
            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            return prepare(to_float(image[..., :3] if image.ndim == 3 else image, name),
                           mask, label)

        return Part(names, size, channels, load_item=load_item, crop=crop,
                    background=background_class(config))

    if val_src is not None:
        train = build_part(train_idx, items_train, entries_train)
        val = build_part(val_idx, items_val, entries_val)
    else:
        train = build_part(train_idx, items_train, entries_train)
        val = build_part(val_idx, items_train, entries_train)
    for it in all_items:  # free the raw arrays
        it.image = it.mask = None

    info = _info(config, rule, train, val, rec, all_items, size, channels, keep, synthetic=False)
    info["resize"] = "patch" if crop else "resize"
    if crop:
        info["description"] += (f"; trained on {size[0]}x{size[1]} patches at full resolution"
                                + (f" x {config.scale:g}" if config.scale != 1.0 else "")
                                + ", validated on whole images (data.resize: patch)")
    info["warnings"] = warnings
    info["description"] += "".join(f"\n  warning: {w}" for w in warnings)
    return Splits(train, val, info, rec)


def check_class_names(config: DataConfig, num_classes: int) -> None:
    """Raise a ConfigError when ``data.class_names`` does not name every class, or
    ``data.background`` is not one of the classes."""
    k = max(2, num_classes)
    background = getattr(config, "background", 0)
    if background is not None and background >= k:
        raise ConfigError(f"data.background: {background} is not a class id of these masks "
                          f"(0..{k - 1}); fix: give the background class id, or null when every "
                          "class is a real one")
    names = config.class_names
    if names is not None and len(names) != max(2, num_classes):
        what = "binary masks have 2 classes (background, foreground)" if num_classes == 1 else \
            f"the masks have {num_classes} classes"
        raise ConfigError(f"data.class_names: {len(names)} names ({', '.join(names)}) but {what}; "
                          "fix: give one name per class id")


def _frequencies(parts: Sequence[Part], num_classes: int) -> tuple[list[float], float]:
    """Share of each class among labelled pixels, and the ignored share, over the cached parts."""
    counts = np.zeros(max(2, num_classes), np.int64)
    ignored = total = 0
    for part in parts:
        if not part.cached:
            continue
        arrays = part.stacked
        ys = [arrays[1]] if arrays is not None else part._arrays[1]  # noqa: SLF001
        for y in ys:
            ids = y.astype(np.int64).ravel()
            ignored += int(np.count_nonzero(ids < 0))
            total += ids.size
            counts += np.bincount(ids[ids >= 0], minlength=len(counts))[: len(counts)]
    labelled = max(1, int(counts.sum()))
    return ([round(float(c) / labelled, 6) for c in counts],
            (round(ignored / total, 6) if total else 0.0))


def _info(
    config: DataConfig, rule: masks_mod.MaskRule, train: Part, val: Part, rec: Mapping[str, Any],
    items: Sequence[_Item], size: tuple[int, int], channels: int, cached: bool, synthetic: bool,
) -> dict[str, Any]:
    freq, ignored = _frequencies([train, val], rule.num_classes)
    source = "sample" if synthetic else str(config.source)
    if synthetic:
        description = sample_mod.describe(len(train.names) + len(val.names), size,
                                          rule.num_classes, channels)
    else:
        description = (
            f"{len(train.names) + len(val.names)} image/mask pairs from {source}"
            + (f" (validation from {config.val_source})" if config.val_source else "")
            + f", masks: {rule.description}"
        )
    info: dict[str, Any] = {
        "source": source,
        "val_source": None if config.val_source is None else str(config.val_source),
        "synthetic": synthetic,
        "description": description,
        "counts": {"train": len(train.names), "val": len(val.names),
                   "total": len(train.names) + len(val.names),
                   "train_samples": len(train), "val_samples": len(val)},
        "num_classes": rule.num_classes,
        "channels": channels,
        "image_size": [int(size[0]), int(size[1])],
        "resize": config.resize,
        "mask_kind": rule.description,
        "class_frequencies": freq,
        "ignored_fraction": ignored,
        "bit_depths": sorted({it.bit_depth for it in items}),
        "cached": cached,
        "split": {"method": rec.get("method", "fraction"), "train": list(rec["train"]),
                  "val": list(rec["val"])},
    }
    background = getattr(config, "background", 0)
    if rule.num_classes == 1 and background is not None:
        info["foreground_fraction"] = freq[1 - background]
    return info


def _load_sample(config: DataConfig, record: Mapping[str, Any] | None) -> Splits:
    """The synthetic sample, split like real data."""
    size = config.image_size or (128, 128)
    num_classes = config.num_classes or 1
    channels = config.channels or 1
    x, y, names = sample_mod.make_sample(config.sample_count, size, num_classes,
                                         channels=channels, seed=config.seed)
    where = "sample (synthetic)"
    if record is not None:
        train_idx, val_idx = split_mod.resolve(record, names, None, where=where)
        rec = dict(record)
    else:
        rec = split_mod.make_split(names, val_fraction=config.val_fraction, seed=config.seed,
                                   where=where, folds=config.folds, fold_seed=config.fold_seed)
        index = {n: i for i, n in enumerate(names)}
        train_idx, val_idx = [index[n] for n in rec["train"]], [index[n] for n in rec["val"]]
    rec["synthetic"] = True
    crop = config.resize in ("patch", "crop")
    background = background_class(config)
    train = Part([names[i] for i in train_idx], size, channels, arrays=(x[train_idx], y[train_idx]),
                 crop=crop, background=background)
    val = Part([names[i] for i in val_idx], size, channels, arrays=(x[val_idx], y[val_idx]),
               crop=crop, background=background)
    rule = masks_mod.MaskRule(
        "ids", num_classes,
        description="synthetic class ids" if num_classes > 1 else "synthetic binary 0/1")
    fake = [_Item(n, bit_depth=32) for n in names]
    info = _info(config, rule, train, val, rec, fake, size, channels, True, synthetic=True)
    info["resize"] = "patch" if crop else "resize"
    return Splits(train, val, info, rec)
