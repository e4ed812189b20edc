"""Turn masks of every common kind into class ids: binary 0/255 or 0/1, ids, colours, void pixels.

The kind is decided once for the whole data set (not file by file), from the values all masks hold:

- values within {0, 1}: class ids of a binary mask;
- exactly two values {0, m} with m > 1 (0/255 for 8-bit, 0/65535 for 16-bit): binary, m -> 1;
- values mostly 0 and a maximum, with many (>= 8) rare values between: a binary mask damaged by
  JPEG compression: an error in auto mode (``mask_kind="binary"`` thresholds them);
- consecutive-looking small values (largest < 64, or below ``num_classes`` when it is given):
  class ids 0..C-1;
- with a colour table (``colors``): every pixel's colour (grey level g = (g, g, g)) looked up;
- palette masks (indexed PNG/GIF with a colour palette, as in Pascal VOC) give their indices as ids;
- with a value table (``values``, e.g. {1: 0, 2: 1}): every raw value looked up; a value outside the
  table is an error.

``ignore_value`` (e.g. 255, checked first), colours and values mapped to -1 become -1: ignored in
loss and metrics.
What does not fit (values above the classes, intermediate values as JPEG leaves, grey levels that
are not ids, unknown colours, colour masks without a table) raises one DataError naming files and
the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from segsearch.errors import ConfigError, DataError, first_names

__all__ = ["MaskStats", "MaskRule", "mask_stats", "decide", "to_ids", "signature", "repeated_mask",
           "repeated_warning", "foreground_iou", "GREY"]

GREY = 0x010101  # a grey level g as a colour code: g * GREY == (g << 16) | (g << 8) | g
MAX_AUTO_ID = 63
JPEG_MIN_MIDDLE = 8  # a binary mask saved as JPEG gains many rare values between 0 and its maximum


def _hex(code: int) -> str:
    return f"#{int(code):06x}"


def _not_in_table(where: str, items: list[tuple[int, list[str]]], what: str, key: str,
                  label: Callable[[int], str]) -> DataError:
    """The error for mask values (or colours) missing from data.values (data.colors).

    Args:
        where: the data source, for the message.
        items: (value or colour code, the files holding it), in the order to show them.
        what: "value" or "colour".
        key: the table's key, "data.values" or "data.colors".
        label: how a value or colour code is written (``str``, ``_hex``).
    """
    shown = "; ".join(f"{label(v)} in {first_names(n, 3)}" for v, n in items[:5])
    more = f" and {len(items) - 5} more {what}s" if len(items) > 5 else ""
    return DataError(f"{where}: {len(items)} mask {what}(s) are not in {key}: {shown}{more}; "
                     f"fix: add them to {key} with their class id (or -1 to ignore them)")


@dataclass(frozen=True, eq=False)
class MaskStats:
    """The values one mask holds, with their pixel counts.

    Args:
        name: the mask's name for messages.
        colour: True when the values are colour codes (r << 16 | g << 8 | b), False for grey levels.
        dtype_max: 255 for 8-bit masks, 65535 for 16-bit.
        values: sorted distinct values (or colour codes).
        counts: pixels per value.
    """

    name: str
    colour: bool
    dtype_max: int
    values: np.ndarray
    counts: np.ndarray


def _codes(raw: np.ndarray) -> tuple[np.ndarray, bool]:
    """Grey values, or colour codes when the mask has colour channels that differ."""
    if raw.ndim == 3:
        rgb = raw[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0], False
        rgb = rgb.astype(np.int64)
        if raw.dtype != np.uint8:
            rgb = rgb >> 8 if raw.dtype == np.uint16 else rgb
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2], True
    return raw, False


def mask_stats(raw: np.ndarray, name: str) -> MaskStats:
    """Count the values of one decoded mask.

    Args:
        raw: the mask as read, (H, W) or (H, W, C).
        name: its name, for messages.

    Raises:
        DataError: a floating-point mask with non-integer values.
    """
    values, colour = _codes(raw)
    if values.dtype.kind == "f":
        if (not np.all(np.isfinite(values)) or not np.all(values == np.round(values))
                or values.min() < 0):
            raise DataError(
                f"{name}: the mask holds non-integer or negative values (e.g. "
                f"{values.ravel()[0]!r}); fix: save masks as 8- or 16-bit integer "
                "images of class ids"
            )
        values = values.astype(np.int64)
    elif values.dtype.kind == "i" and values.size and values.min() < 0:
        raise DataError(f"{name}: the mask holds negative values; fix: use 0..C-1 class ids (and "
                        "data.ignore_value for void)")
    dtype_max = 65535 if (raw.dtype.itemsize > 1 or (values.size and values.max() > 255)) else 255
    if values.dtype == np.uint8:
        counts = np.bincount(values.ravel(), minlength=256)
        nz = np.nonzero(counts)[0]
        return MaskStats(name, colour, dtype_max, nz.astype(np.int64), counts[nz].astype(np.int64))
    v, c = np.unique(values, return_counts=True)
    return MaskStats(name, colour, dtype_max, v.astype(np.int64), c.astype(np.int64))


@dataclass(frozen=True)
class MaskRule:
    """How every mask of a data set becomes class ids.

    Args:
        kind: "binary" (values >= threshold -> 1), "ids" (values are ids), "colors" (colour table
            lookup) or "values" (``data.values`` lookup of raw values).
        num_classes: 1 for binary, else the number of classes.
        threshold: for "binary", the smallest foreground value.
        table: for "colors", ((colour code, class id), ...); for "values", ((value, class id), ...).
        ignore_value: the raw value marking ignored pixels (grey masks), or None.
        description: what was detected, in words ("binary 0/255").
    """

    kind: str
    num_classes: int
    threshold: int = 1
    table: tuple[tuple[int, int], ...] = ()
    ignore_value: int | None = None
    description: str = ""

    def map_values(self, values: np.ndarray, colour: bool = False) -> np.ndarray:
        """Class ids (-1 ignored, -2 unknown colour) of raw values or colour codes."""
        values = np.asarray(values, dtype=np.int64)
        if self.kind in ("colors", "values"):
            codes = values if colour or self.kind == "values" else values * GREY
            keys = np.array([k for k, _ in self.table], dtype=np.int64)
            ids = np.array([v for _, v in self.table], dtype=np.int64)
            order = np.argsort(keys)
            keys, ids = keys[order], ids[order]
            pos = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
            out = np.where(keys[pos] == codes, ids[pos], -2)
            if self.kind == "values" and colour:
                out = np.full(values.shape, -2, np.int64)
            if self.ignore_value is not None and not colour:
                out = np.where(values == self.ignore_value, -1, out)
            return out
        if self.kind == "binary":
            out = (values >= self.threshold).astype(np.int64)
        else:
            out = values.copy()
        if self.ignore_value is not None:
            out = np.where(values == self.ignore_value, -1, out)
        return out


def _table(
    colors: Sequence[tuple[tuple[int, int, int], int]], ignore_value: int | None,
) -> tuple[tuple[int, int], ...]:
    table = {(r << 16) | (g << 8) | b: cls for (r, g, b), cls in colors}
    if ignore_value is not None and ignore_value <= 255:
        table.setdefault(ignore_value * GREY, -1)
    return tuple(sorted(table.items()))


def colors_line(codes: Sequence[int], n: int = 24) -> str:
    """``data.colors={"#000000": 0, "#00ff00": 1, ...}`` for colour codes, ids in their order."""
    items = [f'"{_hex(c)}": {i}' for i, c in enumerate(codes)]
    if len(items) > n:
        items = items[: n - 1] + ["..."]
    return "data.colors={" + ", ".join(items) + "}"


def decide(
    stats: Sequence[MaskStats],
    *,
    mask_kind: str = "auto",
    num_classes: int | None = None,
    colors: Sequence[tuple[tuple[int, int, int], int]] | None = None,
    ignore_value: int | None = None,
    where: str = "masks",
    values: Sequence[tuple[int, int]] | None = None,
) -> MaskRule:
    """Decide, for a whole data set, how its masks become class ids.

    Args:
        stats: one MaskStats per mask (``mask_stats``).
        mask_kind: "auto", "binary", "ids", "rgb" or "instances" (see DataConfig).
        num_classes: the configured number of classes, or None to infer it.
        colors: the colour table ((rgb, id), ...), or None.
        ignore_value: the raw value of ignored pixels, or None.
        where: the folder or file, for messages.
        values: the value table ((value, id), ...) of ``data.values``, or None.

    Raises:
        DataError: colour masks without a table, unknown colours, values that do not fit the
            classes, intermediate (JPEG) values, grey levels that are not class ids, values not in
            ``values``.
    """
    colour_masks = [s.name for s in stats if s.colour]
    if values is not None:
        return _decide_values(stats, values, num_classes, ignore_value, where)
    if colors is not None or mask_kind == "rgb":
        if colors is None:  # DataConfig prevents this; kept for direct callers
            raise ConfigError("data.colors: mask_kind 'rgb' needs a colour table")
        table = _table(colors, ignore_value)
        top = max(cls for _, cls in table)
        rule_classes = num_classes if num_classes is not None else (1 if top <= 1 else top + 1)
        limit = 2 if rule_classes == 1 else rule_classes
        if top >= limit:
            raise ConfigError(
                f"data.colors: class id {top} does not fit num_classes {num_classes}; "
                f"fix: set data.num_classes to {top + 1} or renumber the table"
            )
        rule = MaskRule("colors", rule_classes, table=table, ignore_value=ignore_value,
                        description=f"colours mapped through a {len(table)}-entry table")
        unknown: dict[int, list[str]] = {}
        for s in stats:
            ids = rule.map_values(s.values, s.colour)
            for code in (s.values[ids == -2] if s.colour else s.values[ids == -2] * GREY):
                unknown.setdefault(int(code), []).append(s.name)
        if unknown:
            raise _not_in_table(where, list(unknown.items()), "colour", "data.colors", _hex)
        return rule
    if colour_masks:
        found = sorted({int(v) if s.colour else int(v) * GREY
                        for s in stats for v in s.values.tolist()})
        raise DataError(
            f"{where}: {len(colour_masks)} mask(s) are in colour, e.g. "
            f"{first_names(colour_masks, 3)}, with {len(found)} colours; fix: give each colour its "
            f"class id (-1 ignores one), e.g. --set '{colors_line(found)}', or save the masks as "
            "grey class ids"
        )

    totals: dict[int, int] = {}
    for s in stats:
        for v, c in zip(s.values.tolist(), s.counts.tolist()):
            if ignore_value is not None and v == ignore_value:
                continue
            totals[v] = totals.get(v, 0) + c
    if not totals:
        raise DataError(
            f"{where}: every mask pixel equals ignore_value {ignore_value}; fix: check "
            "data.ignore_value"
        )
    values = sorted(totals)
    top = values[-1]

    def files_with(pred) -> list[str]:
        return [s.name for s in stats
                if any(pred(v) for v in s.values.tolist() if v != ignore_value)]

    if mask_kind == "instances":  # one id per object: the objects are the foreground
        nc = num_classes if num_classes is not None else 1
        return MaskRule("binary", nc, threshold=1, ignore_value=ignore_value,
                        description="instance ids, every value above 0 is foreground")
    if mask_kind == "binary":
        threshold = 1 if top <= 1 else (top + 1) // 2
        nc = num_classes if num_classes is not None else 1
        return MaskRule("binary", nc, threshold=threshold, ignore_value=ignore_value,
                        description=f"binary, values >= {threshold} are foreground")

    if mask_kind == "auto":
        if top <= 1:
            return MaskRule("ids", num_classes or 1, ignore_value=ignore_value,
                            description="binary 0/1")
        limit = (2 if num_classes == 1 else num_classes) if num_classes is not None else None
        if len(values) == 2 and values[0] == 0 and (limit is None or top >= limit):
            return MaskRule("binary", num_classes or 1, threshold=(top + 1) // 2,
                            ignore_value=ignore_value, description=f"binary 0/{top}")
        extremes = totals.get(0, 0) + totals.get(top, 0)
        middle_values = len(values) - 2 if values[0] == 0 else len(values) - 1
        if (top >= 128 and middle_values >= JPEG_MIN_MIDDLE
                and extremes >= 0.8 * sum(totals.values()) and (limit is None or top >= limit)):
            damaged = files_with(lambda v: 0 < v < top)
            middle = [v for v in values if 0 < v < top][:4]
            raise DataError(
                f"{where}: {len(damaged)} mask(s) hold intermediate values "
                f"({', '.join(map(str, middle))}, ...) between 0 and {top}, as JPEG compression "
                f"leaves: {first_names(damaged)}; fix: save the masks losslessly (PNG or TIFF), or "
                f"set data.mask_kind: binary (--set data.mask_kind=binary) to count values >= "
                f"{(top + 1) // 2} as foreground"
            )
        if limit is None and top > MAX_AUTO_ID:
            outlier = _void_candidate(values, MAX_AUTO_ID + 1, ignore_value)
            files = first_names(files_with(lambda v: v > MAX_AUTO_ID), 3)
            if outlier is not None:
                ids = [v for v in values if v != outlier]
                # ids up to 150 (ADE20K) may all be classes; 255 (VOC) is a void label
                keep = (f", or keep them as they are with --set data.num_classes={top + 1}"
                        if top < 255 else "")
                raise DataError(
                    f"{where}: the masks hold class ids {_listed(ids)} and the value {outlier} (in "
                    f"{files}); fix: {_void_fix(outlier)}; if it is a class, map the values to ids "
                    f"with --set '{_values_line(values)}'{keep}"
                )
            raise DataError(
                f"{where}: mask values {_listed(values)} look like grey levels, not class ids "
                f"0..C-1 (in {files}); fix: map them to class ids with --set "
                f"'{_values_line(values)}' (-1 ignores a value), or, if they are ids, set "
                f"data.num_classes (--set data.num_classes={top + 1})"
            )
        # fall through: class ids

    nc = num_classes if num_classes is not None else (1 if top <= 1 else top + 1)
    limit = 2 if nc == 1 else nc
    if top >= limit:
        bad = files_with(lambda v: v >= limit)
        what = ("binary (num_classes 1) allows ids 0 and 1" if nc == 1
                else f"num_classes {nc} allows ids 0..{nc - 1}")
        outliers = [v for v in values if v >= limit]
        outlier = _void_candidate(values, limit, ignore_value)
        apart = len(values) > len(outliers) and outliers[0] > values[-len(outliers) - 1] + 1
        if outlier is not None:
            fix = f"{_void_fix(outlier)}; if it is a class, set data.num_classes to {top + 1}"
        elif len(outliers) <= 3 and apart:  # a few far values (254, 255): void labels?
            fix = (f"if {', '.join(map(str, outliers))} mark void pixels, map them to -1 with "
                   f"--set '{_values_line(values, ignore=outliers)}'; if they are classes, set "
                   f"data.num_classes to {top + 1}")
        else:
            fix = f"set data.num_classes to {top + 1}, or data.ignore_value for a void value"
        binary = nc <= 2 and len(values) == 2
        raise DataError(
            f"{where}: {len(bad)} mask(s) hold values up to {top}, but {what}: {first_names(bad)}; "
            f"fix: {fix}" + (", or data.mask_kind: binary for 0/255 masks" if binary else "")
        )
    return MaskRule("ids", nc, ignore_value=ignore_value,
                    description=f"class ids {values[0]}..{top}" if nc > 1 else "binary 0/1")


def _listed(values: Sequence[int], n: int = 8) -> str:
    """'0, 1, 2 ... 255' for messages."""
    values = list(values)
    if len(values) <= n:
        return ", ".join(map(str, values))
    return ", ".join(map(str, values[: n - 1])) + f", ... {values[-1]}"


def _void_candidate(values: Sequence[int], limit: int, ignore_value: int | None) -> int | None:
    """The one value at or above ``limit``, apart from the ids below it (255 among 0..4): void?

    A value right after the ids (3 among 0..2) looks like one more class, so it is not a candidate.
    """
    above = [v for v in values if v >= limit]
    below = [v for v in values if v < limit]
    if ignore_value is None and len(above) == 1 and below and above[0] > below[-1] + 1:
        return above[0]
    return None


def _void_fix(value: int) -> str:
    """The fix for one far mask value that may mark void pixels."""
    return (f"if {value} marks void pixels (unlabelled, ignored in training), --set "
            f"data.ignore_value={value}")


def _values_line(values: Sequence[int], ignore: Sequence[int] = (), n: int = 16) -> str:
    """A copy-pasteable ``data.values={0: 0, 128: 1, 255: 2}`` of the values (``ignore``: -1)."""
    ids: list[str] = []
    k = 0
    for v in values:
        if v in ignore:
            ids.append(f"{v}: -1")
        else:
            ids.append(f"{v}: {k}")
            k += 1
    if len(ids) > n:
        ids = ids[: n - 1] + ["..."]
    return "data.values={" + ", ".join(ids) + "}"


def _decide_values(
    stats: Sequence[MaskStats], values: Sequence[tuple[int, int]], num_classes: int | None,
    ignore_value: int | None, where: str,
) -> MaskRule:
    """The rule of ``data.values``: every mask value must be in the table (or be ignore_value)."""
    table = tuple(sorted((int(v), int(c)) for v, c in values))
    top = max(c for _, c in table)
    nc = num_classes if num_classes is not None else (1 if top <= 1 else top + 1)
    if top >= (2 if nc == 1 else nc):
        raise ConfigError(
            f"data.values: class id {top} does not fit num_classes {nc}; fix: set data.num_classes "
            f"to {top + 1} or renumber the map"
        )
    colour = [s.name for s in stats if s.colour]
    if colour:
        raise DataError(
            f"{where}: {len(colour)} mask(s) are in colour, e.g. {first_names(colour, 3)}, but "
            "data.values maps grey values; fix: give data.colors, a colour -> class "
            "id table, instead"
        )
    known = {v for v, _ in table}
    unknown: dict[int, list[str]] = {}
    for s in stats:
        for v in s.values.tolist():
            if v not in known and v != ignore_value:
                unknown.setdefault(int(v), []).append(s.name)
    if unknown:
        raise _not_in_table(where, sorted(unknown.items()), "value", "data.values", str)
    text = ", ".join(f"{v}->{c}" for v, c in table)
    return MaskRule("values", nc, table=table, ignore_value=ignore_value,
                    description=f"values mapped {text}")


SIGNATURE = 64  # side of the thumbnail that ``signature`` keeps of a mask
#: median foreground IoU of consecutive masks above which they look like one mask repeated:
#: field-of-view circles of one camera overlap by 0.95+, label masks of different images far less
REPEATED = 0.9


def signature(raw: np.ndarray) -> np.ndarray:
    """A small nearest-neighbour thumbnail (SIGNATURE x SIGNATURE) of a mask's raw values."""
    values, _ = _codes(raw)
    h, w = values.shape[:2]
    rows = np.minimum(((np.arange(SIGNATURE) + 0.5) * h / SIGNATURE).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(SIGNATURE) + 0.5) * w / SIGNATURE).astype(np.int64), w - 1)
    return np.asarray(values[rows[:, None], cols[None, :]], dtype=np.int64)


def foreground_iou(a: np.ndarray, b: np.ndarray, background: int) -> float | None:
    """IoU of two masks' foreground (pixels not ``background``), a pixel counting as shared only
    where both hold the same value; None when neither mask has foreground.

    Args:
        a: one mask signature (or mask).
        b: another of the same shape.
        background: the value that is not foreground (the data set's most common value).
    """
    union = (a != background) | (b != background)
    n = int(np.count_nonzero(union))
    if not n:
        return None
    return float(np.count_nonzero(union & (a == b))) / n


def repeated_mask(signatures: Sequence[np.ndarray]) -> float | None:
    """How alike consecutive masks are, when they look like one mask repeated (a field of view).

    The likeness of two masks is their foreground IoU (``foreground_iou``), the background being the
    most common value of the data set.

    Returns:
        The median IoU of consecutive masks when it is at least REPEATED (with 3 or more masks,
        some not empty), else None.
    """
    if len(signatures) < 3:
        return None
    step = max(1, len(signatures) // 200)
    sigs = list(signatures)[::step]
    vals, counts = np.unique(np.concatenate([s.ravel() for s in sigs]), return_counts=True)
    background = vals[int(np.argmax(counts))]
    scores = [v for v in (foreground_iou(a, b, background) for a, b in zip(sigs, sigs[1:])
                          if a.shape == b.shape) if v is not None]
    if not scores:
        return None
    score = float(np.median(scores))
    return score if score >= REPEATED else None


def repeated_warning(score: float, folder: str) -> str:
    """The warning for masks that are (nearly) all the same."""
    return (
        f"the masks in {folder} are (nearly) the same for every image (their foreground "
        f"overlaps {100 * score:.0f}% from one mask to the next): this looks like a field-of-view "
        "or region mask repeated for every image, not labels; if the labels are in another folder, "
        "choose it with --set data.masks_dir=FOLDER"
    )


def to_ids(raw: np.ndarray, rule: MaskRule, name: str) -> np.ndarray:
    """Convert one decoded mask to int16 class ids (H, W), -1 for ignored pixels.

    Args:
        raw: the mask as read.
        rule: the data set's rule (``decide``).
        name: the mask's name, for messages.

    Raises:
        DataError: a colour the rule does not know, or an id that does not fit.
    """
    values, colour = _codes(raw)
    if values.dtype.kind == "f":
        values = values.astype(np.int64)
    if values.dtype == np.uint8 and not colour:
        lut = rule.map_values(np.arange(256))
        out = lut[values]
    else:
        uniq, inverse = np.unique(values, return_inverse=True)
        out = rule.map_values(uniq, colour)[inverse.reshape(values.shape)]
    if np.any(out == -2):
        bad = values[out == -2].ravel()[0]
        if rule.kind == "values":
            raise DataError(f"{name}: mask value {int(bad)} is not in data.values; fix: add it "
                            "with its class id (or -1 to ignore it)")
        raise DataError(f"{name}: colour {_hex(bad if colour else bad * GREY)} is not in "
                        "data.colors; fix: add it with its class id")
    limit = 2 if rule.num_classes == 1 else rule.num_classes
    if out.size and out.max() >= limit:
        raise DataError(f"{name}: mask value {int(out.max())} does not fit {rule.num_classes} "
                        "class(es); fix: set data.num_classes")
    return out.astype(np.int16)
