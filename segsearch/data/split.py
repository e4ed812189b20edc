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

__all__ = ["SPLIT_VERSION", "make_split", "folder_split", "resolve", "read_record", "val_count",
           "make_folds", "fold_record", "fold_count"]

SPLIT_VERSION = 1


def val_count(n: int, fraction: float) -> int:
    """How many of ``n`` pairs go to validation: round(n * fraction), at least 1, leaving 1 to
    train."""
    return int(min(max(1, round(n * fraction)), n - 1))


def make_split(
    names: Sequence[str], *, val_fraction: float, seed: int, where: str = "data",
    folds: int | None = None, fold_seed: int | None = None,
) -> dict[str, Any]:
    """A seeded random split of ``names`` into train and validation, as a record.

    Args:
        names: the pair names (image file names), in any order: they are sorted first, so the split
            depends only on the set of names, the fraction and the seed.
        val_fraction: the share for validation.
        seed: the split's seed.
        where: the folder, for messages.
        folds: K >= 2: the K folds of :func:`make_folds` instead (``val_fraction`` unused).
        fold_seed: their seed (None: ``seed``).

    Raises:
        DataError: fewer than 2 pairs, so no split leaves both sides non-empty.
    """
    if folds is not None and folds >= 2:
        return make_folds(names, folds=folds, seed=seed if fold_seed is None else fold_seed,
                          where=where)
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


def make_folds(
    names: Sequence[str], *, folds: int, seed: int, where: str = "data",
) -> dict[str, Any]:
    """A seeded assignment of ``names`` to ``folds`` disjoint folds, as a split record.

    The names are sorted, permuted by ``seed`` and dealt round-robin, so the folds' sizes differ
    by at most one and depend only on the set of names, ``folds`` and ``seed``. The record's
    "train" / "val" are fold 0's (the split the search scores on); "folds" lists each fold's
    names (:func:`fold_record` gives fold k's split).

    Args:
        names: the pair names.
        folds: K >= 2.
        seed: the assignment's seed (``data.fold_seed``).
        where: the folder, for messages.

    Raises:
        DataError: fewer pairs than folds.

    Example:
        >>> record = make_folds([f"{i}.png" for i in range(6)], folds=3, seed=0)
        >>> [len(f) for f in record["folds"]]
        [2, 2, 2]
    """
    ordered = sorted(names)
    if len(ordered) < max(2, folds):
        raise DataError(
            f"{where}: found {len(ordered)} image/mask pair(s), but data.folds {folds} needs at "
            f"least {max(2, folds)} (one validation pair per fold); fix: lower data.folds or add "
            "pairs"
        )
    perm = np.random.default_rng(seed).permutation(len(ordered))
    dealt: list[list[str]] = [[] for _ in range(folds)]
    for position, index in enumerate(perm.tolist()):
        dealt[position % folds].append(ordered[index])
    members = [sorted(fold) for fold in dealt]
    record = {"version": SPLIT_VERSION, "method": "folds", "seed": int(seed),
              "folds": members, "fold": 0}
    return {**record, **_fold_parts(members, 0)}


def _fold_parts(members: Sequence[Sequence[str]], fold: int) -> dict[str, list[str]]:
    val = set(members[fold])
    everything = sorted(n for part in members for n in part)
    return {"train": [n for n in everything if n not in val], "val": sorted(val)}


def fold_count(record: Mapping[str, Any]) -> int:
    """How many folds a split record holds (1: a single split)."""
    folds = record.get("folds")
    return len(folds) if isinstance(folds, list) else 1


def fold_record(record: Mapping[str, Any], fold: int, *, where: str = "split record"
                ) -> dict[str, Any]:
    """Fold ``fold``'s split (its names the validation part, the other folds' the training part).

    Args:
        record: a record of :func:`make_folds` (as stored).
        fold: 0 .. K-1.
        where: the record's file, for messages.

    Raises:
        DataError: the record holds no folds, not this fold, or folds that overlap or disagree
            with its train / val lists.
    """
    members = record.get("folds")
    if not isinstance(members, list) or len(members) < 2 or not all(
            isinstance(f, list) and all(isinstance(n, str) for n in f) for f in members):
        raise DataError(f"{where}: the split records no folds (data.folds); fix: start a new study "
                        "with data.folds set")
    if not 0 <= int(fold) < len(members):
        raise DataError(f"{where}: fold {fold} is not one of the {len(members)} recorded folds")
    names = [n for part in members for n in part]
    if len(set(names)) != len(names):
        raise DataError(f"{where}: the recorded folds overlap; fix: restore the record or start a "
                        "new study")
    if sorted(names) != sorted(list(record.get("train", [])) + list(record.get("val", []))):
        raise DataError(f"{where}: the recorded folds do not hold the recorded train/val names; "
                        "fix: restore the record or start a new study")
    return {**dict(record), "fold": int(fold), **_fold_parts(members, int(fold))}


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
