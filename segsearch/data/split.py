"""The train/validation split: seeded by fraction or given by a folder, recorded so it can be
reused.

The record is a plain JSON-able dict of file names, saved by the study; a resumed study passes it
back (``load(config, split=record)``) and gets exactly the same split, or a DataError if the files
changed since.

Example:
    >>> record = make_split(["a.png", "b.png", "c.png", "d.png", "e.png"], val_fraction=0.2, seed=0)
    >>> record["val"]
    ['d.png']
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsearch.data.sources import first_names
from segsearch.errors import DataError

__all__ = ["SPLIT_VERSION", "make_split", "folder_split", "resolve", "read_record", "val_count"]

SPLIT_VERSION = 1


def val_count(n: int, fraction: float) -> int:
    """How many of ``n`` pairs go to validation: round(n * fraction), at least 1, leaving 1 to
    train."""
    return int(min(max(1, round(n * fraction)), n - 1))


def make_split(
    names: Sequence[str], *, val_fraction: float, seed: int, where: str = "data",
) -> dict[str, Any]:
    """A seeded random split of ``names`` into train and validation, as a record.

    Args:
        names: the pair names (image file names), in any order: they are sorted first, so the split
            depends only on the set of names, the fraction and the seed.
        val_fraction: the share for validation.
        seed: the split's seed.
        where: the folder, for messages.

    Raises:
        DataError: fewer than 2 pairs, so no split leaves both sides non-empty.
    """
    ordered = sorted(names)
    if len(ordered) < 2:
        raise DataError(
            f"{where}: found {len(ordered)} image/mask pair(s), but a train/validation split needs "
            f"at least 2 (val_fraction {val_fraction}); fix: add more pairs, or give "
            "data.val_source, a separate validation folder"
        )
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n_val = val_count(len(ordered), val_fraction)
    chosen = set(perm[:n_val].tolist())
    val = [n for i, n in enumerate(ordered) if i in chosen]
    train = [n for i, n in enumerate(ordered) if i not in chosen]
    return {"version": SPLIT_VERSION, "method": "fraction", "seed": int(seed),
            "val_fraction": float(val_fraction), "train": train, "val": val}


def folder_split(train: Sequence[str], val: Sequence[str], *, val_source: str) -> dict[str, Any]:
    """The record of a split given by a separate validation folder."""
    return {"version": SPLIT_VERSION, "method": "folder", "val_source": str(val_source),
            "train": list(train), "val": list(val)}


def read_record(record: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """Validate a split record (a dict, or the path of a JSON file holding one).

    Raises:
        DataError: unreadable file or a record without train/val lists of names.
    """
    where = "split record"
    if isinstance(record, (str, os.PathLike)):
        where = str(record)
        try:
            record = json.loads(Path(record).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{where}: cannot read the split record ({exc}); fix: restore the file "
                            "or start a new study") from None
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: expected a mapping with 'train' and 'val' lists, got "
                        f"{type(record).__name__}")
    for key in ("train", "val"):
        value = record.get(key)
        if (not isinstance(value, Sequence) or isinstance(value, str)
                or not all(isinstance(v, str) for v in value)):
            raise DataError(f"{where}: '{key}' must be a list of file names; fix: restore the "
                            "record or start a new study")
    if record.get("version", SPLIT_VERSION) != SPLIT_VERSION:
        raise DataError(f"{where}: version {record.get('version')!r} is not {SPLIT_VERSION}; fix: "
                        "start a new study")
    overlap = set(record["train"]) & set(record["val"])
    if overlap and record.get("method") != "folder":
        raise DataError(f"{where}: names in both train and val: {first_names(sorted(overlap))}; "
                        "fix: restore the record")
    return dict(record)


def resolve(
    record: Mapping[str, Any], train_pool: Sequence[str], val_pool: Sequence[str] | None, *,
    where: str,
) -> tuple[list[int], list[int]]:
    """Indices of a recorded split's train and val names in the pairs found now.

    Args:
        record: a validated record (``read_record``).
        train_pool: names found in the source.
        val_pool: names found in the validation folder, or None when the split is by fraction.
        where: the source, for messages.

    Returns:
        (train indices into train_pool, val indices into val_pool, or into train_pool without one).

    Raises:
        DataError: the record names files that are gone, or files were added since it was made.
    """
    method = record.get("method", "fraction")
    if method == "folder" and val_pool is None:
        raise DataError(
            f"{where}: the recorded split used a validation folder ({record.get('val_source')}) "
            "but data.val_source is not set now; fix: set data.val_source as when "
            "the study started"
        )
    if method != "folder" and val_pool is not None:
        raise DataError(
            f"{where}: the recorded split was by fraction but data.val_source is set now; fix: "
            "remove data.val_source as when the study started"
        )
    pools = {"train": list(train_pool),
             "val": list(val_pool if val_pool is not None else train_pool)}
    out: dict[str, list[int]] = {}
    for part in ("train", "val"):
        index = {n: i for i, n in enumerate(pools[part])}
        missing = [n for n in record[part] if n not in index]
        if missing:
            raise DataError(
                f"{where}: {len(missing)} file(s) of the recorded {part} split are no longer "
                f"there: {first_names(missing)}; fix: restore them, or start a new study for "
                "the changed data"
            )
        out[part] = [index[n] for n in record[part]]
    if val_pool is None:
        extra = sorted(set(pools["train"]) - set(record["train"]) - set(record["val"]))
    else:
        extra = (sorted(set(pools["train"]) - set(record["train"]))
                 + sorted(set(pools["val"]) - set(record["val"])))
    if extra:
        raise DataError(
            f"{where}: {len(extra)} file(s) were added since the split was recorded: "
            f"{first_names(extra)}; fix: remove them to resume this study, or start a new "
            "study to use them"
        )
    return out["train"], out["val"]
