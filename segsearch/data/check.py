"""`segsearch data check DIR`: what a user needs to know about a data set before a search.

The report is a data set fingerprint, in the spirit of nnU-Net's: counts, image sizes, channels, bit
depths, formats, intensities, mask kind and class frequencies, the share of foreground per image;
a suggested input size and encoder depth range; warnings about what looks wrong; the errors
that would stop ``load`` (all of them, not just the first); and ``stop``, the one message ``load``
(and so ``segsearch run``) stops with, found by running ``load`` itself.

Example:
    >>> report = check("data/membrane")
    >>> print(report.format())
    >>> report.warnings, report.errors, report.to_dict()["classes"]["frequencies"]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsearch.data import dataset as dataset_mod
from segsearch.data import masks as masks_mod
from segsearch.data import sources
from segsearch.data import split as split_mod
from segsearch.data.config import DataConfig
from segsearch.data.dataset import size_mismatch, to_float
from segsearch.data.sources import first_names
from segsearch.errors import ConfigError, DataError

__all__ = ["Report", "check", "image_sizes", "suggest_size"]

TINY_FOREGROUND = 0.01
FEW_PAIRS = 10
LOSSY = (".jpg", ".jpeg")
#: the smallest encoder depth suggested: the shipped spaces search depth from 2 up (unet, resunet,
#: resblock_unet, resnet50_unet; deeplabv3plus from 3). data/ may not import the hypermodels that
#: declare these domains, so the floor is kept here; a caller that knows the architecture passes
#: its own minimum to ``suggest_size`` / ``check``.
MIN_DEPTH = 2
#: the default background class (``data.background``; see ``foreground_share``)
BACKGROUND_CLASS = 0


def _instance_ids(stats: Sequence[Any]) -> list[str]:
    """A warning when the masks look like numbered objects, not classes: nearly every mask holds
    exactly the ids 0..N, N differs from mask to mask and reaches 3 or more (GlaS's glands)."""
    tops = []
    for s in stats:
        ids = sorted(int(v) for v in s.values.tolist())
        if s.colour or ids != list(range(len(ids))):
            continue
        tops.append(ids[-1])
    if (len(stats) < 3 or len(tops) < 0.8 * len(stats) or len(set(tops)) < 3
            or max(tops) < 3):
        return []
    return [f"the masks look like numbered objects, not classes: {len(tops)} of {len(stats)} "
            f"hold exactly the ids 0..N, with N from {min(tops)} to {max(tops)}; if each id is "
            "one object, read every object as foreground with --set data.mask_kind=instances"]


def _majority_foreground(freq: list[float], background: int | None, names: list[str],
                         rule: Any, values: list[int], config: DataConfig) -> list[str]:
    """A warning when a class the objective scores as foreground is most of the pixels.

    ISBI membrane masks are 255 (cell interior, 78% of pixels) and 0 (membrane): read as binary,
    the interior becomes class 1, "foreground", and val_dice scores how well the network finds
    the interior, which a constant prediction already gets mostly right.

    Args:
        freq: share of each class among labelled pixels.
        background: the background class id (None: every class is real, nothing to warn).
        names: class names, index = class id.
        rule: the mask rule (its kind and number of classes).
        values: the mask values found (grey masks).
        config: the data configuration.
    """
    if background is None:
        return []
    out = []
    for cls, share in enumerate(freq):
        if cls == background or share <= 0.5:
            continue
        label = f"class {cls}" + (f" ({names[cls]})" if cls < len(names) else
                                  " (foreground)" if rule.num_classes == 1 else "")
        plain = config.values is None and config.colors is None
        if rule.num_classes == 1 and plain and len(values) == 2:
            low, high = values  # binary: low -> class 0, high -> class 1
            minority = low if cls == 1 else high
            fix = (f"if the minority (mask value {minority}) is what you segment, make it the "
                   f"foreground with --set 'data.values={{{low}: 1, {high}: 0}}'")
        else:
            fix = (f"if class {background} is what you segment, set --set data.background={cls}; "
                   "if every class matters, set --set data.background=null")
        out.append(
            f"majority foreground: {label} covers {100 * share:.1f}% of labelled pixels, yet "
            f"val_dice and val_iou score it as foreground (background is class {background}), so a "
            f"constant prediction already scores high; {fix}, or use objective val_mean_iou "
            "(every class counts)"
        )
    return out


def foreground_share(per_class: np.ndarray, background: int | None = BACKGROUND_CLASS) -> float:
    """The share of labelled pixels that are foreground: every class but ``background``.

    The one place ``check`` decides which class is background (``data.background``, class 0 by
    default; None: every class is real); the foreground line, the "masks without foreground"
    warning and the tiny-foreground warnings all follow it.

    Args:
        per_class: labelled pixel counts per class id.
        background: the background class id, or None when every class is a real one.
    """
    labelled = int(per_class.sum())
    if not labelled:
        return 0.0
    if background is None or background >= len(per_class):
        return 1.0
    return float((labelled - int(per_class[background])) / labelled)


def suggest_size(heights: list[int], widths: list[int], min_depth: int = MIN_DEPTH,
                 ) -> tuple[tuple[int, int], tuple[int, int], str]:
    """Suggested (image_size, (min depth, max depth), resize mode) from the images' sizes.

    The size is the median, rounded down to a multiple of 32 (so depths up to 5 divide it), kept
    between 32 and 512; the depths are those that leave a bottleneck of at least 8 pixels, never
    below ``min_depth``; "patch" is suggested when the median image is more than twice the
    suggested size (to keep detail).

    Args:
        heights: the images' heights.
        widths: the images' widths.
        min_depth: the smallest encoder depth the architectures accept (MIN_DEPTH).
    """
    mh, mw = float(np.median(heights)), float(np.median(widths))

    def side(v: float) -> int:
        return int(min(512, max(32, 32 * math.floor(v / 32))))

    size = (side(mh), side(mw))
    small = min(size)
    d_max = max(min_depth, min(5, int(math.floor(math.log2(small / 8)))))
    d_min = max(min_depth, d_max - 2)
    mode = "patch" if min(mh, mw) > 2 * small else "resize"
    return size, (d_min, d_max), mode


def image_sizes(config: DataConfig, limit: int = 200) -> tuple[list[tuple[int, int]], int]:
    """(height, width) of up to ``limit`` of the images (evenly spread), after ``data.scale``,
    read from the files' headers where the format allows (no decoding), and how many there are.

    The synthetic sample has no size of its own: ``([], count)``.

    Args:
        config: the DataConfig (its ``image_size`` is not used).
        limit: read at most this many images.

    Raises:
        DataError: the data cannot be found or a file cannot be read (naming it).
    """
    if config.is_sample:
        return [], int(config.sample_count)
    if sources.is_array_source(config.source):
        arrays = sources.load_arrays(config.source, mask_suffix=config.mask_suffix)
        h, w = arrays.images.shape[1:3]
        count = len(arrays.names)
        shapes = [(int(h), int(w))] * min(count, limit)
    else:
        found = dataset_mod.discover(config.source, config)
        found.raise_if_empty()
        pairs = list(found.pairs)
        count = len(pairs)
        if len(pairs) > limit:
            step = len(pairs) / limit
            pairs = [pairs[int(i * step)] for i in range(limit)]
        shapes = [_header_size(p.image) for p in pairs]
    scale = float(getattr(config, "scale", 1.0) or 1.0)
    return [(max(1, round(h / scale)), max(1, round(w / scale))) for h, w in shapes], count


def _header_size(path: Path) -> tuple[int, int]:
    """An image file's (height, width), from its header when Pillow or tifffile can read it."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
                axes = tif.pages[0].axes
            if "Y" in axes and "X" in axes:
                return int(shape[axes.index("Y")]), int(shape[axes.index("X")])
        elif suffix not in (".npy", ".mat"):
            from PIL import Image

            with Image.open(path) as img:
                return int(img.height), int(img.width)
    except Exception:  # fall back to decoding, which names the file if it cannot be read
        pass
    arr = sources.read_array(path)
    return int(arr.shape[0]), int(arr.shape[1])


@dataclass(frozen=True)
class Report:
    """The result of ``check``: a fingerprint, warnings and errors.

    Args:
        source: the folder or file checked.
        fingerprint: JSON-able facts (counts, sizes, channels, bit depths, classes, suggestion ...).
        warnings: what looks wrong but would load.
        errors: what would stop ``load`` (one message per problem, naming files and the fix).
        stop: the message ``load`` (and ``segsearch run``) stops with, or None when it reads the
            data.
    """

    source: str
    fingerprint: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    stop: str | None = None

    @property
    def ok(self) -> bool:
        """True when ``load`` would accept the data."""
        return not self.errors and self.stop is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: source, fingerprint keys, warnings, errors, stop, ok."""
        out = {"source": self.source, **self.fingerprint, "warnings": list(self.warnings),
               "errors": list(self.errors), "stop": self.stop, "ok": self.ok}
        json.dumps(out)  # fail here, not in the caller, if something is not JSON-able
        return out

    def format(self) -> str:
        """The report as text for a terminal."""
        f = self.fingerprint
        lines = [f"segsearch data check: {self.source}"]
        if f.get("synthetic"):
            lines.append("  NOTE             this is the built-in SYNTHETIC sample, not real data")

        def row(label: str, text: str) -> None:
            lines.append(f"  {label:<16} {text}")

        counts = f.get("counts", {})
        row("pairs", f"{counts.get('pairs', 0)}" + (f" ({f['layout']})" if f.get("layout") else ""))
        for key, label in (("lone_images", "images w/o mask"), ("lone_masks", "masks w/o image"),
                           ("unreadable", "unreadable")):
            if counts.get(key):
                row(label, str(counts[key]))
        img = f.get("images", {})
        if img.get("sizes"):
            sizes = ", ".join(f"{s} x{n}" for s, n in img["sizes"].items())
            row("image sizes", sizes + (" (height x width)" if img["sizes"] else ""))
            if len(img["sizes"]) > 1:
                row("", f"height {img['height']['min']}..{img['height']['max']} (median "
                        f"{img['height']['median']}), width "
                        f"{img['width']['min']}..{img['width']['max']} (median "
                        f"{img['width']['median']})")
        if img.get("channels"):
            row("channels", ", ".join(f"{k} x{v}" for k, v in img["channels"].items()))
        if img.get("bit_depths"):
            row("bit depth", ", ".join(f"{k} x{v}" for k, v in img["bit_depths"].items()))
        fmts = f.get("formats", {})
        if fmts:
            row("formats",
                "images " + ", ".join(f"{k} x{v}" for k, v in fmts.get("images", {}).items())
                + "; masks " + ", ".join(f"{k} x{v}" for k, v in fmts.get("masks", {}).items()))
        if img.get("intensity"):
            it = img["intensity"]
            row("intensity", f"mean {it['mean']:.3f}, std {it['std']:.3f}, range "
                             f"{it['min']:.3f}..{it['max']:.3f} (scaled to [0, 1])")
        m = f.get("masks", {})
        if m.get("kind"):
            row("masks", f"{m['kind']} -> num_classes {m['num_classes']}")
        elif m.get("values"):
            row("mask values",
                ", ".join(map(str, m["values"][:12])) + (" ..." if len(m["values"]) > 12 else ""))
        cls = f.get("classes", {})
        if cls.get("frequencies"):
            names = cls.get("names") or []
            label = [f"{i} {names[i]}" if i < len(names) else str(i)
                     for i in range(len(cls["frequencies"]))]
            shares = "  ".join(f"{label[i]}: {100 * v:.1f}%"
                               for i, v in enumerate(cls["frequencies"]))
            row("classes", f"{shares}   (share of labelled pixels)")
            row("", "in images: " + "  ".join(f"{label[i]}: {v}"
                                              for i, v in enumerate(cls["images_with"])))
            if cls.get("ignored_fraction") or cls.get("ignoring"):
                row("ignored", f"{100 * cls['ignored_fraction']:.2f}% of pixels "
                               f"({cls.get('ignoring') or 'void'})")
        fg = cls.get("foreground_per_image")
        if fg:
            row("foreground", f"per image min {100 * fg['min']:.1f}%, median "
                              f"{100 * fg['median']:.1f}%, max {100 * fg['max']:.1f}%")
        sug = f.get("suggested")
        if sug:
            row("suggested", f"image_size {sug['image_size']}, resize: {sug['resize']}, "
                             f"encoder depth {sug['depth'][0]}..{sug['depth'][1]}")
            size = sug["image_size"]
            if sug["resize"] == "resize" and min(size) > 128:
                # the whole image at its own size is slow to train on a CPU; patches keep
                # every pixel at its own resolution too, and validation still sees whole images
                row("", f"or, faster and at full resolution: --image-size 128 trains on 128x128 "
                        f"patches of the {size[0]}x{size[1]} images and scores whole images "
                        "(data.resize: auto); best for thin structures")
        lines.append(f"warnings ({len(self.warnings)})" + (":" if self.warnings else ""))
        lines += [f"  - {w}" for w in self.warnings]
        errors = list(self.errors)
        stop = self.stop
        if stop is not None and not any(e.startswith(stop) or stop.startswith(e) for e in errors):
            errors.append(stop)
        lines.append(f"errors ({len(errors)})" + (": load would stop at these" if errors else ""))
        lines += [f"  - {e}" for e in errors]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _sizes_table(shapes: list[tuple[int, int]]) -> dict[str, int]:
    counts = Counter(f"{h}x{w}" for h, w in shapes)
    return dict(counts.most_common(6)) | (
        {"other": sum(counts.values()) - sum(dict(counts.most_common(6)).values())}
        if len(counts) > 6 else {})


def check(path: str | os.PathLike[str] | DataConfig, **options: Any) -> Report:
    """Check a data folder (or .npz / .npy, or "sample") and report what a search needs to know.

    The data is read twice: once for the report, once by ``load`` itself, so that ``Report.stop``
    is exactly the message a run would stop with.

    Args:
        path: the data, as ``DataConfig.source`` takes it, or a whole DataConfig (``segsearch data
            check`` passes the one ``run`` would use).
        **options: DataConfig fields that change how the data is read: mask_suffix, mask_kind,
            colors, ignore_value, values, num_classes, images_dir, masks_dir, pair, mat_key,
            class_names (others are accepted and ignored where they do not apply).

    Returns:
        A Report: ``.format()`` text, ``.to_dict()``, ``.warnings``, ``.errors``, ``.ok``.

    Raises:
        DataError: the data cannot be found at all (no folder, no images); everything else is
            reported in ``Report.errors``.
        ConfigError: an unknown or invalid option.

    Example:
        >>> print(check("data/cells", colors={"#000000": 0, "#ff0000": 1}).format())
    """
    if isinstance(path, DataConfig):
        config = dataclasses.replace(path, **options) if options else path
    else:
        options.setdefault("val_fraction", 0.2)
        config = DataConfig(source=os.fspath(path), **options)
    if config.is_sample:
        return _check_sample(config)
    where = str(config.source)
    errors: list[str] = []
    warnings: list[str] = []
    counts: dict[str, int] = {}
    notes: list[str] = []
    mask_dir = "the masks array"
    if sources.is_array_source(config.source):
        arrays = sources.load_arrays(config.source, mask_suffix=config.mask_suffix)
        entries: list[tuple[str, Any]] = [(n, (arrays, i)) for i, n in enumerate(arrays.names)]
        layout = f"arrays {arrays.images.shape} + {arrays.masks.shape}"
        image_exts: Counter[str] = Counter({Path(arrays.name).suffix: len(entries)})
        mask_exts = Counter(image_exts)
    else:
        found = dataset_mod.discover(config.source, config)
        entries = [(p.name, p) for p in found.pairs]
        layout = found.layout
        counts["lone_images"] = len(found.lone_images)
        counts["lone_masks"] = len(found.lone_masks)
        warnings.extend(found.notes)
        unpaired = found.unpaired_warning()
        if unpaired:
            warnings.append(unpaired)
        try:
            found.raise_if_empty()
        except DataError as exc:
            errors.append(str(exc))
        image_exts = Counter(p.image.suffix.lower() for p in found.pairs)
        mask_exts = Counter(p.parts[0].suffix.lower() if p.parts else p.mask.suffix.lower()
                            for p in found.pairs)
        mask_dir = dataset_mod.mask_folder(list(found.pairs), config.source)

    palette = "rgb" if config.colors is not None else "index"

    def one(entry: tuple[str, Any]) -> dict[str, Any]:
        name, ref = entry
        out: dict[str, Any] = {"name": name}
        try:
            if isinstance(ref, sources.Pair):
                image = sources.read_array(ref.image, notes=notes)
                mask = sources.read_mask(ref, palette=palette, mat_key=config.mat_key, notes=notes)
                mask_label = f"{ref.mask.parent.name}/{ref.mask.name}"
                image_label = str(ref.image)
            else:
                arr, i = ref
                image, mask = np.asarray(arr.images[i]), np.asarray(arr.masks[i])
                if image.ndim == 3 and image.shape[-1] == 1:
                    image = image[..., 0]
                mask_label = image_label = name
            if image.shape[:2] != mask.shape[:2]:
                out["error"] = size_mismatch(image_label, image, mask_label, mask)
                return out
            out["shape"] = tuple(int(v) for v in image.shape[:2])
            out["channels"] = 1 if image.ndim == 2 else image.shape[-1]
            out["bits"] = ("float" if image.dtype.kind == "f"
                           else ("16-bit" if image.dtype.itemsize > 1 else "8-bit"))
            out["raw_max"] = float(image.max()) if image.size else 0.0
            scaled = to_float(image[..., :3] if image.ndim == 3 else image, name)
            out["mean"], out["std"] = float(scaled.mean()), float(scaled.std())
            out["min"], out["max"] = float(scaled.min()), float(scaled.max())
            out["stats"] = masks_mod.mask_stats(mask, mask_label)
            out["signature"] = masks_mod.signature(mask)
        except DataError as exc:
            out["error"] = str(exc)
        return out

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        results = list(pool.map(one, entries))
    good = [r for r in results if "error" not in r]
    errors += _grouped([r["error"] for r in results if "error" in r])
    counts["pairs"] = len(entries)
    counts["unreadable"] = sum(1 for r in results if "error" in r and "cannot r" in r["error"])
    warnings.extend(dataset_mod.group_notes(notes))

    fingerprint: dict[str, Any] = {
        "synthetic": False, "layout": layout, "counts": counts,
        "formats": {"images": dict(image_exts), "masks": dict(mask_exts)},
    }
    if not good:
        if not errors:
            errors.append(f"{where}: no readable image/mask pairs; fix: add pairs")
        return _report(where, fingerprint, warnings, errors, config)

    shapes = [r["shape"] for r in good]
    heights, widths = [s[0] for s in shapes], [s[1] for s in shapes]
    channel_counts = Counter("1 (grey)" if r["channels"] == 1 else f"{r['channels']} (colour)"
                             for r in good)
    bit_counts = Counter(r["bits"] for r in good)
    n = len(good)
    weights = np.array([s[0] * s[1] for s in shapes], dtype=np.float64)
    means = np.array([r["mean"] for r in good])
    stds = np.array([r["std"] for r in good])
    mean = float(np.average(means, weights=weights))
    std = float(np.sqrt(np.average(stds ** 2 + (means - mean) ** 2, weights=weights)))
    size, depth, mode = suggest_size(heights, widths)
    fingerprint["images"] = {
        "sizes": _sizes_table(shapes),
        "height": {"min": min(heights), "median": float(np.median(heights)), "max": max(heights)},
        "width": {"min": min(widths), "median": float(np.median(widths)), "max": max(widths)},
        "channels": dict(channel_counts),
        "bit_depths": dict(bit_counts),
        "intensity": {"mean": round(mean, 4), "std": round(std, 4),
                      "min": round(min(r["min"] for r in good), 4),
                      "max": round(max(r["max"] for r in good), 4)},
    }
    fingerprint["suggested"] = {"image_size": list(size), "depth": list(depth), "resize": mode}

    # Masks: the rule load would use, class frequencies, foreground per image.
    stats = [r["stats"] for r in good]
    all_values = sorted({int(v) for s in stats for v in s.values.tolist()})
    lossy_masks = [p for p, c in mask_exts.items() if p in LOSSY]
    rule = None
    jpeg_reported = False
    try:
        rule = masks_mod.decide(stats, mask_kind=config.mask_kind, num_classes=config.num_classes,
                                colors=config.colors, ignore_value=config.ignore_value, where=where,
                                values=config.values)
        dataset_mod.check_class_names(config, rule.num_classes)
    except (DataError, ConfigError) as exc:
        errors.append(str(exc))
        jpeg_reported = "JPEG" in str(exc)
    fingerprint["masks"] = {"values": all_values[:64] if not any(s.colour for s in stats) else [],
                            "kind": rule.description if rule else None,
                            "num_classes": rule.num_classes if rule else None}
    if rule is not None:
        k = max(2, rule.num_classes)
        background = config.background
        background = background if background is not None and background < k else None
        totals = np.zeros(k, np.int64)
        images_with = np.zeros(k, np.int64)
        ignored = 0
        fg_share = []
        for s in stats:
            ids = rule.map_values(s.values, s.colour)
            per = np.zeros(k, np.int64)
            for cls, c in zip(ids.tolist(), s.counts.tolist()):
                if cls >= 0:
                    per[min(cls, k - 1)] += c
                else:
                    ignored += c
            totals += per
            images_with += per > 0
            fg_share.append(foreground_share(per, background))
        labelled = max(1, int(totals.sum()))
        freq = [round(float(t) / labelled, 6) for t in totals]
        ignoring = [f"value {config.ignore_value}"] if config.ignore_value is not None else []
        ignoring += [f"value {v}" for v, c in (config.values or ()) if c < 0]
        ignoring += ["colour #{:02x}{:02x}{:02x}".format(*rgb)
                     for rgb, c in (config.colors or ()) if c < 0]
        fingerprint["classes"] = {
            "names": list(config.class_names) if config.class_names else None,
            "background": background,
            "ignoring": ", ".join(ignoring) or None,
            "frequencies": freq,
            "images_with": images_with.tolist(),
            "ignored_fraction": round(ignored / max(1, labelled + ignored), 6),
            "foreground_per_image": {"min": round(min(fg_share), 4),
                                     "median": round(float(np.median(fg_share)), 4),
                                     "max": round(max(fg_share), 4),
                                     "mean": round(float(np.mean(fg_share)), 4)},
        }
        if freq[0] == 0 and rule.kind == "ids" and k > 2:
            low = min(v for v in all_values if v != config.ignore_value)
            warnings.append(
                f"class 0 never occurs: the masks hold values {low}..{all_values[-1]}; if {low} is "
                "the background, map the values to class ids with --set "
                f"'data.values={{{low}: 0, {low + 1}: 1, ...}}'"
            )
        if rule.kind == "ids" and config.values is None:
            warnings.extend(_instance_ids(stats))
        names = list(config.class_names or ())
        warnings.extend(_majority_foreground(freq, background, names, rule, all_values, config))
        absent = [c for c in range(k) if c != background and freq[c] == 0]
        if len(absent) == 1:
            warnings.append(f"class {absent[0]} never occurs in the masks; check "
                            "num_classes and the masks")
        elif absent:  # one line, not one per class (ADE20K: 151 classes, few in a sample)
            warnings.append(f"{len(absent)} of {k} classes never occur in the masks "
                            f"({first_names([str(c) for c in absent], 8)}); check num_classes "
                            "and the masks")
        for cls in (c for c in range(k) if c != background and freq[c] > 0):
            if freq[cls] < TINY_FOREGROUND:
                warnings.append(
                    f"tiny foreground: class {cls} covers only {100 * freq[cls]:.2f}% of labelled "
                    "pixels; consider a dice, focal or tversky loss, or crops around the objects"
                )
        empty = [r["name"] for r, share in zip(good, fg_share) if share == 0]
        if empty and len(empty) < len(good):
            warnings.append(f"{len(empty)} of {len(good)} masks have no foreground at all: "
                            f"{first_names(empty)}")

    # What looks wrong.
    if not jpeg_reported:
        damaged = [s.name for s in stats
                   if not s.colour and len(s.values) > 2 and s.values[-1] >= 128
                   and (s.counts[s.values == 0].sum() + s.counts[-1]) >= 0.9 * s.counts.sum()
                   and rule is not None and rule.kind == "binary"]
        if damaged:
            warnings.append(
                f"{len(damaged)} mask(s) hold intermediate values between 0 and their maximum, as "
                f"JPEG compression leaves: {first_names(damaged)}; they are thresholded at half "
                "the maximum; prefer PNG masks"
            )
    if lossy_masks:
        warnings.append(
            f"masks are saved as JPEG ({', '.join(lossy_masks)}), a lossy format that blurs class "
            "boundaries; save masks as PNG or TIFF"
        )
    few = _few_pairs(config, n)
    if few:
        warnings.append(few)
    if len(channel_counts) > 1:
        warnings.append("some images are grey and some in colour: grey images are "
                        "repeated to 3 channels")
    ratios = [h / w for h, w in shapes]
    if max(ratios) > 1.1 * min(ratios):
        warnings.append(
            f"image aspect ratios differ ({min(ratios):.2f}..{max(ratios):.2f} height/width): "
            "resizing to one size distorts some images; consider resize: patch"
        )
    dark16 = [r["name"] for r in good if r["bits"] == "16-bit" and r["raw_max"] < 4096]
    if dark16:
        warnings.append(
            f"{len(dark16)} 16-bit image(s) use values below 4096 only (12-bit data?), so after "
            f"scaling by 65535 they span less than 1/16 of [0, 1]: {first_names(dark16)}; "
            "consider rescaling them"
        )
    if min(min(heights), min(widths)) < 32:
        warnings.append("some images are smaller than 32 pixels a side (smallest "
                        f"{min(heights)}x{min(widths)})")
    score = masks_mod.repeated_mask([r["signature"] for r in good])
    if score is not None:
        warnings.append(masks_mod.repeated_warning(score, mask_dir))
    return _report(where, fingerprint, warnings, errors, config)


def _report(where: str, fingerprint: dict[str, Any], warnings: list[str], errors: list[str],
            config: DataConfig) -> Report:
    """The Report, with ``load``'s stop message among the errors (so the count matches the list)."""
    stop = _stop(config)
    if stop is not None and not any(e.startswith(stop) or stop.startswith(e) for e in errors):
        errors = [*errors, stop]
    return Report(where, fingerprint, tuple(warnings), tuple(errors), stop)


def _pairs(n: int) -> str:
    return f"{n} readable pair" + ("" if n == 1 else "s")


def _few_pairs(config: DataConfig, n: int) -> str | None:
    """The warning for a data set too small for steady validation scores, or None.

    With fewer than 2 pairs (and no data.val_source) ``load`` stops, and that is the error instead.
    """
    if config.val_source is not None:
        n_val = _val_pairs(config)
        if n_val is None or n + n_val >= FEW_PAIRS:
            return None
        return (f"only {_pairs(n)} for training and {n_val} for validation (data.val_source): the "
                "validation scores will be noisy; add data if you can")
    if n < 2 or n >= FEW_PAIRS:
        return None
    v = split_mod.val_count(n, config.val_fraction)
    return (f"only {_pairs(n)}: {n - v} to train and {v} to validate (data.val_fraction "
            f"{config.val_fraction:g}), so the validation scores will be noisy; add data if you "
            "can")


def _val_pairs(config: DataConfig) -> int | None:
    """The number of pairs in data.val_source, or None when it cannot be read (load says why)."""
    try:
        if sources.is_array_source(str(config.val_source)):
            arrays = sources.load_arrays(str(config.val_source), mask_suffix=config.mask_suffix)
            return len(arrays.names)
        return len(dataset_mod.discover(str(config.val_source), config, "val_").pairs)
    except DataError:
        return None


def _grouped(messages: list[str]) -> list[str]:
    """Per-file messages that differ only in the file ("PATH: problem") as one message each."""
    groups: dict[str, list[str]] = {}
    for message in messages:
        path, _, problem = message.partition(": ")
        groups.setdefault(problem or message, []).append(message if not problem else path)
    out = []
    for problem, paths in groups.items():
        if len(paths) == 1 or paths[0] == problem:
            out += paths if paths[0] == problem else [f"{paths[0]}: {problem}"]
        else:
            names = [Path(p).name for p in paths[1:]]
            out.append(f"{paths[0]}: {problem} (the same problem in {len(names)} more: "
                       f"{first_names(names)})")
    return out


def _stop(config: DataConfig) -> str | None:
    """The message ``load`` stops with on this data (what ``segsearch run`` prints), or None."""
    from segsearch.data.dataset import load

    try:
        load(dataclasses.replace(config, cache=False))
    except (DataError, ConfigError) as exc:
        return str(exc)
    return None


def _check_sample(config: DataConfig) -> Report:
    """The report of the built-in synthetic sample."""
    from segsearch.data.dataset import load

    splits = load(config)
    info = splits.info
    size = info["image_size"]
    total = info["counts"]["total"]
    k = max(2, info["num_classes"])
    images_with = np.zeros(k, np.int64)
    for part in (splits.train, splits.val):
        for y in part.y:
            images_with += np.bincount(y.astype(np.int64).ravel(), minlength=k)[:k] > 0
    suggested_size, depth, mode = suggest_size([size[0]], [size[1]])
    fingerprint = {
        "synthetic": True,
        "layout": info["description"],
        "counts": {"pairs": total},
        "images": {"sizes": {f"{size[0]}x{size[1]}": total},
                   "channels": {str(info["channels"]): total}},
        "masks": {"kind": info["mask_kind"], "num_classes": info["num_classes"]},
        "classes": {"frequencies": info["class_frequencies"], "images_with": images_with.tolist()},
        "suggested": {"image_size": list(suggested_size), "depth": list(depth), "resize": mode},
    }
    return Report("sample (SYNTHETIC)", fingerprint, ("this is the built-in SYNTHETIC "
                                                      "sample, not real images",), ())
