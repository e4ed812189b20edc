"""Find image/mask pairs on disk and decode them (PNG, JPEG, TIFF, BMP, GIF; MATLAB .mat masks;
.npz / .npy arrays).

Pairing rules, in order:

1. A folder with an images folder and a masks folder (``images/`` + ``masks/``; also
   ``image(s)``/``img(s)`` with ``labels``/``gt``/``groundTruth``/``annotations``/``1st_manual``/
   ``mask``..., or the folders ``images_dir`` / ``masks_dir`` name, nested ones too). When several
   mask folders sit beside the images, the one that pairs most images is used and the others are
   listed. An image pairs with the mask of the same stem, whatever the extensions (``12.png`` +
   ``12.png``, ``case_3.jpg`` + ``case_3.png``), or with the mask whose stem is the image stem plus
   a mask suffix (``mask_suffix``, ``_mask``, ``_label(s)``, ``_gt``, ``_manual1``, ``_annotation``,
   ``_segmentation``); with ``pair`` (a regular expression), by the key its first group finds in
   both file names. Files without a partner are left out (``Discovery`` lists them).
2. One folder per case: ``<case>/images/`` with one image, ``<case>/masks/`` with one binary mask
   per object, merged into one mask (any object = 1).
3. One folder of files where masks carry a mask suffix (``a.png`` + ``a_mask.png``).
4. A folder holding ``images.npy`` + ``masks.npy``; an ``.npz`` file with arrays named images/x
   and masks/y (or labels); or an images ``.npy`` file with ``<stem><mask_suffix>.npy`` (or
   ``masks.npy``) beside it.

Only the top level of each folder is read; hidden files and files of other types are skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from segsearch.errors import DataError, first_names  # first_names: used from here too

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSIONS",
    "Pair",
    "ArraySource",
    "find_pairs",
    "discover",
    "Discovery",
    "load_arrays",
    "read_array",
    "read_mask",
    "read_mat",
    "is_array_source",
    "first_names",
    "natural_key",
    "case_images",
    "lost_backslash",
    "masks_among",
    "search_below",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
MASK_EXTENSIONS = (*IMAGE_EXTENSIONS, ".mat")
IMAGE_DIR_NAMES = ("images", "image", "imgs", "img")
#: mask folder names, in the order of preference when several pair equally well ("mask" last: in
#: retinal data sets such as DRIVE it holds field-of-view masks, not labels)
MASK_DIR_NAMES = (
    "masks", "labels", "label", "gt", "groundtruth", "ground_truth", "annotations", "annotation",
    "1st_manual", "manual1", "manual", "segmentation", "segmentations", "mask",
)
CASE_LAYOUT = "one folder per case"
#: stem endings that mark a mask (``data.mask_suffix`` is tried first)
MASK_SUFFIXES = ("_mask", "_label", "_labels", "_gt", "_manual1", "_annotation", "_segmentation",
                 "_1stHO", "_anno")
#: stem endings that mark an image beside its mask (DeepGlobe's ``100034_sat.jpg`` with
#: ``100034_mask.png``, Cityscapes' ``_leftImg8bit``): tried when the whole stem pairs nothing
IMAGE_SUFFIXES = ("_sat", "_image", "_img", "_rgb", "_leftImg8bit")
#: stem endings of a second annotator's masks beside the first's (CHASE_DB1's ``_2ndHO``, DRIVE's
#: ``_manual2``): neither images nor the labels (the first annotator's are)
SECOND_ANNOTATOR_SUFFIXES = ("_2ndHO", "_manual2")
ARRAY_IMAGE_KEYS = ("images", "image", "x", "X", "imgs")
ARRAY_MASK_KEYS = ("masks", "mask", "y", "Y", "labels", "label")


@dataclass(frozen=True)
class Pair:
    """One image file and its mask file.

    Args:
        name: the image's file name, relative to its folder (the key in split records).
        image: path of the image.
        mask: path of the mask (a ``.mat`` file too), or the ``masks/`` folder of a case.
        parts: for one folder per case, the object masks merged into one mask (any object = 1).
    """

    name: str
    image: Path
    mask: Path
    parts: tuple[Path, ...] = ()


@dataclass(frozen=True, eq=False)
class ArraySource:
    """Images and masks given as arrays (an .npz or .npy pair).

    Args:
        name: the file the arrays came from, used in names ``file[i]`` and messages.
        images: (N, H, W) or (N, H, W, C) array.
        masks: (N, H, W), (N, H, W, 1) or (N, H, W, 3) array.
    """

    name: str
    images: np.ndarray
    masks: np.ndarray

    @property
    def names(self) -> list[str]:
        """One name per item: ``file[i]``."""
        return [f"{self.name}[{i}]" for i in range(len(self.images))]


def natural_key(text: str) -> list[object]:
    """Sort '2.png' before '10.png'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _image_files(folder: Path) -> list[Path]:
    """Image files at the top of ``folder``, hidden files skipped, in natural order."""
    files = [
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def _mask_files(folder: Path) -> list[Path]:
    """Mask files (images and MATLAB ``.mat``) at the top of ``folder``, in natural order."""
    files = [
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in MASK_EXTENSIONS
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def _subfolder(root: Path, configured: str, aliases: Sequence[str]) -> Path | None:
    """The configured subfolder if present, else the first alias that exists (case-insensitive)."""
    if (root / configured).is_dir():
        return root / configured
    present = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for alias in aliases:
        if alias in present:
            return present[alias]
    return None


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (for messages and --set lines), or as it is."""
    try:
        text = path.relative_to(root).as_posix()
    except ValueError:
        text = str(path)
    return text if text != "." else str(path)


def _subfolders(folder: Path) -> str:
    names = sorted((p.name + "/" for p in folder.iterdir()
                    if p.is_dir() and not p.name.startswith(".")), key=natural_key)
    return first_names(names, 8) if names else "none"


def _folders_below(root: Path, levels: int = 2) -> list[str]:
    """Subfolders of ``root`` down to ``levels`` deep, as relative posix paths (not hidden ones)."""
    out: list[str] = []
    layer = [root]
    for _ in range(levels):
        nxt = []
        for folder in layer:
            try:
                subs = sorted(p for p in folder.iterdir()
                              if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            nxt += subs
            out += [p.relative_to(root).as_posix() for p in subs]
        layer = nxt
    return out


def _configured_dir(root: Path, value: str, key: str, role: str = "") -> Path:
    """``root / value`` for a data.images_dir / data.masks_dir that is set; a DataError if absent.

    Args:
        root: the source folder.
        value: the configured folder, relative to ``root``.
        key: "images_dir" or "masks_dir".
        role: "" for data.source, "val_" for data.val_source (the key names in the message).
    """
    path = root / value
    if not path.is_dir():
        import difflib

        below = _folders_below(root, 3)
        ends = {}
        for b in below:
            ends.setdefault(b.rsplit("/", 1)[-1], b)
        last = value.rsplit("/", 1)[-1]
        # a folder of that very name deeper down ('trimaps' is annotations/trimaps) comes first
        close = [ends[last]] if last in ends and ends[last] != value else []
        close = close or difflib.get_close_matches(value, below, n=1, cutoff=0.6)
        if not close:  # compare the last parts: '1st_manul' vs 'training/1st_manual'
            hit = difflib.get_close_matches(last, list(ends), n=1, cutoff=0.75)
            close = [ends[hit[0]]] if hit else []
        hint = f"did you mean {close[0]}? (--set data.{role}{key}={close[0]}); " if close else ""
        raise DataError(
            f"{path}: no such folder (data.{role}{key} {value!r}, relative to data.{role}source "
            f"{root}); fix: {hint}give data.{role}{key} a folder under {root} (its subfolders: "
            f"{_subfolders(root)})"
        )
    return path


def _strip_mask_suffix(stem: str, suffix: str) -> str | None:
    """``stem`` without a known mask suffix (``mask_suffix`` first), or None when it has none."""
    low = stem.lower()
    for s in (suffix, *MASK_SUFFIXES):
        if s and low.endswith(s.lower()) and len(stem) > len(s):
            return stem[: -len(s)]
    return None


def _image_key(stem: str) -> str | None:
    """``stem`` without a known image suffix (IMAGE_SUFFIXES), or None when it has none."""
    low = stem.lower()
    for s in IMAGE_SUFFIXES:
        if low.endswith(s.lower()) and len(stem) > len(s):
            return stem[: -len(s)]
    return None


def _by_stem(files: Sequence[Path], folder: Path, what: str) -> dict[str, Path]:
    """Map stem -> file; two files with one stem (``12.png`` and ``12.tif``) are an error."""
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise DataError(
                f"{folder}: two {what} share the name {p.stem!r} ({out[p.stem].name} and "
                f"{p.name}); fix: keep one of them, so each {what[:-1]} pairs with exactly one file"
            )
        out[p.stem] = p
    return out


def _by_pattern(
    files: Sequence[Path], folder: Path, what: str, rx: re.Pattern[str],
) -> tuple[dict[str, Path], list[str]]:
    """Map pair key (the first group of ``data.pair``) -> file; files it does not match are returned
    apart."""
    out: dict[str, Path] = {}
    unmatched: list[str] = []
    for p in files:
        m = rx.search(p.name)
        key = m.group(1) if m else None
        if key is None:
            unmatched.append(p.name)
            continue
        if key in out:
            raise DataError(
                f"{folder}: data.pair '{rx.pattern}' gives two {what} the key {key!r} "
                f"({out[key].name} and {p.name}); fix: make its first group capture what tells "
                f"the {what} apart"
            )
        out[key] = p
    return out, unmatched


def lost_backslash(pattern: str) -> str | None:
    """``pattern`` with the backslashes put back when ``d+`` / ``w+`` look like ``\\d+`` / ``\\w+``
    that lost theirs (``^(d+)_`` -> ``^(\\d+)_``), else None."""
    rx = r"(?<!\\)(?<![A-Za-z])([dwDWsS])([+*]|\{\d)"
    if not re.search(rx, pattern):
        return None
    return re.sub(rx, r"\\\1\2", pattern)


@dataclass(frozen=True)
class Discovery:
    """What a folder holds: the pairs, and the files that found no partner.

    Args:
        pairs: the image/mask pairs.
        lone_images: image names without a mask (skipped, with a warning).
        lone_masks: mask names without an image (skipped, with a warning).
        image_dir: the folder of the images.
        mask_dir: the folder of the masks (the same folder when masks carry the suffix).
        suffix: the mask suffix in use.
        layout: the layout in words, e.g. "images/ + masks/, paired by file name".
        notes: what a user should know about how the folder was read (other mask folders ...).
        pair: the ``data.pair`` pattern in use, or None.
    """

    pairs: tuple[Pair, ...]
    lone_images: tuple[str, ...]
    lone_masks: tuple[str, ...]
    image_dir: Path
    mask_dir: Path
    suffix: str
    layout: str = ""
    notes: tuple[str, ...] = ()
    pair: str | None = None

    def _hint(self) -> str:
        if self.layout.startswith(CASE_LAYOUT):
            return "give each case folder a masks/ folder holding one mask per object"
        if self.pair is not None:
            lost = lost_backslash(self.pair)
            if lost is not None and not self.pairs:
                return (f"data.pair '{self.pair}' looks like it lost its backslashes (d+ matches "
                        "the letter d, \\d+ a number): the shell or YAML ate them; quote the "
                        f"value: --set 'data.pair={lost}'")
            return (f"data.pair '{self.pair}' must find the same key in an image's name and its "
                    "mask's (its first group)")
        stem = self.lone_images[0].rsplit(".", 1)[0] if self.lone_images else "NAME"
        return (f"name the masks like the images (e.g. {stem}.png or "
                f"{stem}{self.suffix or '_mask'}.png), or give data.pair, a regular expression "
                r"whose first group is the shared key, e.g. '^(\d+)_'")

    def unpaired_warning(self) -> str | None:
        """The warning that lists the files left out for lack of a partner, or None."""
        parts = []
        if self.lone_images:
            parts.append(f"{len(self.lone_images)} image(s) have no mask in {self.mask_dir}: "
                         f"{first_names(self.lone_images)}")
        if self.lone_masks:
            parts.append(f"{len(self.lone_masks)} mask(s) have no image in {self.image_dir}: "
                         f"{first_names(self.lone_masks)}")
        if not parts:
            return None
        may = ""
        if (self.lone_images and not self.lone_masks and self.pairs
                and not self.layout.startswith(CASE_LAYOUT)):
            may = ("every mask found its image, so these images may simply have none, as "
                   "VOC's JPEGImages/ beside SegmentationClass/; ")
        return "; ".join(parts) + f"; they are skipped ({may}to pair them: {self._hint()})"

    def raise_if_empty(self) -> None:
        """Raise a DataError when not a single image found its mask."""
        if self.pairs:
            return
        shown = (f"images {first_names(self.lone_images, 3)}; masks "
                 f"{first_names(self.lone_masks, 3)}"
                 if self.lone_images or self.lone_masks else "nothing")
        raise DataError(
            f"{self.image_dir}: no image pairs with a mask in {self.mask_dir} ({shown}); "
            f"fix: {self._hint()}"
        )

    def raise_unpaired(self) -> None:
        """Raise a DataError listing the unpaired files, if there are any (stricter than
        ``load``)."""
        warning = self.unpaired_warning()
        if warning:
            raise DataError(warning)


def _match(
    images: Sequence[Path], masks: Sequence[Path], image_dir: Path, mask_dir: Path, suffix: str,
    pair: str | None = None, layout: str = "", notes: Sequence[str] = (),
) -> Discovery:
    """Pair images with masks: by ``pair``'s first group, else by stem (equal, or the mask's stem
    without a mask suffix)."""
    pairs: list[Pair] = []
    missing: list[str] = []
    if pair is not None:
        rx = re.compile(pair)
        by_image, lone_images = _by_pattern(images, image_dir, "images", rx)
        by_mask, lone_masks = _by_pattern(masks, mask_dir, "masks", rx)
        for key, image in by_image.items():
            mask = by_mask.pop(key, None)
            if mask is None:
                missing.append(image.name)
            else:
                pairs.append(Pair(image.name, image, mask))
        order = {p.name: i for i, p in enumerate(images)}
        missing = sorted(missing + lone_images, key=lambda n: order[n])
        orphans = sorted([p.name for p in by_mask.values()] + lone_masks, key=natural_key)
        return Discovery(tuple(pairs), tuple(missing), tuple(orphans), image_dir, mask_dir, suffix,
                         layout, tuple(notes), pair)
    by_image = _by_stem(images, image_dir, "images")
    by_mask = _by_stem(masks, mask_dir, "masks")
    stripped: dict[str, Path] = {}
    for stem, p in by_mask.items():
        key = _strip_mask_suffix(stem, suffix)
        if key is not None and key not in by_mask:
            if key in stripped:
                raise DataError(
                    f"{mask_dir}: two masks belong to {key!r} ({stripped[key].name} and {p.name}); "
                    "fix: keep one of them, so each image pairs with exactly one mask"
                )
            stripped[key] = p
    used: set[Path] = set()
    for stem, image in by_image.items():
        mask = by_mask.get(stem) or stripped.get(stem)
        key = _image_key(stem) if mask is None else None
        if key is not None:  # 100034_sat.jpg with 100034_mask.png (or 100034.png)
            mask = stripped.get(key) or by_mask.get(key)
        if mask is None or mask in used:
            missing.append(image.name)
            continue
        used.add(mask)
        pairs.append(Pair(image.name, image, mask))
    orphans = [p.name for p in by_mask.values() if p not in used]
    return Discovery(tuple(pairs), tuple(missing), tuple(orphans), image_dir, mask_dir, suffix,
                     layout, tuple(notes), None)


#: data.pair patterns tried to suggest one for a mask folder that pairs nothing by file name
GUESSED_PAIRS = (r"^(\d+)_", r"^([^_.]+)_", r"^(\d+)")


def _guess_pair(images: Sequence[Path], masks: Sequence[Path], image_dir: Path,
                mask_dir: Path) -> tuple[str, int] | None:
    """(a data.pair pattern, its pairs) pairing at least half the images with ``masks``, or None."""
    for pattern in GUESSED_PAIRS:
        try:
            found = _match(images, masks, image_dir, mask_dir, "", pattern)
        except DataError:  # two files with one key: not this pattern
            continue
        if found.pairs and 2 * len(found.pairs) >= len(images):
            return pattern, len(found.pairs)
    return None


def _repeated_score(found: Discovery, sample: int = 8) -> float | None:
    """The repeated-mask score (``masks.repeated_mask``) of up to ``sample`` of a folder's masks."""
    from segsearch.data.masks import repeated_mask, signature

    pairs = found.pairs
    step = max(1, len(pairs) // sample)
    sigs = []
    for pair in pairs[::step][:sample]:
        try:
            sigs.append(signature(read_mask(pair)))
        except DataError:
            return None  # unreadable: load reports it if this folder is used
    return repeated_mask(sigs)


def is_array_source(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an .npz/.npy file or a folder holding images.npy + masks.npy."""
    p = Path(path)
    if p.suffix.lower() in (".npz", ".npy"):
        return True
    return p.is_dir() and (p / "images.npy").is_file() and (p / "masks.npy").is_file()


def find_pairs(
    folder: str | os.PathLike[str], *, mask_suffix: str = "_mask", images_dir: str = "images",
    masks_dir: str = "masks", pair: str | None = None,
) -> list[Pair]:
    """List the image/mask pairs of a folder, following the pairing rules of this module.

    Images without a mask and masks without an image are left out (``discover`` lists them).

    Args:
        folder: a folder with images/ and masks/ subfolders, one folder of images and
            ``<stem><mask_suffix>`` masks, or one folder per case (``<case>/images/``,
            ``<case>/masks/``).
        mask_suffix: the suffix that marks a mask's stem (default ``_mask``).
        images_dir: the images folder, relative to ``folder`` (may be nested: ``training/images``).
        masks_dir: the masks folder, relative to ``folder``.
        pair: a regular expression whose first group is the key an image and its mask share.

    Raises:
        DataError: no such folder, no images, no image that pairs with a mask.

    Example:
        >>> [p.name for p in find_pairs("data/membrane")][:3]
        ['0.png', '1.png', '2.png']
    """
    found = discover(folder, mask_suffix=mask_suffix, images_dir=images_dir, masks_dir=masks_dir,
                     pair=pair)
    found.raise_if_empty()
    return list(found.pairs)


def _mask_folders(parent: Path, exclude: Path | None) -> list[Path]:
    """Subfolders of ``parent`` whose names say they hold masks, in MASK_DIR_NAMES order."""
    present = {p.name.lower(): p for p in parent.iterdir() if p.is_dir() and p != exclude}
    return [present[n] for n in MASK_DIR_NAMES if n in present]


def _nested(root: Path) -> list[Path]:
    """Subfolders of ``root`` that hold an images folder (``<sub>/images/``), in natural order."""
    out = []
    for sub in sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: natural_key(p.name)):
        if _subfolder(sub, "images", IMAGE_DIR_NAMES) is not None:
            out.append(sub)
    return out


def _is_case_layout(subs: Sequence[Path]) -> bool:
    """True when every ``<sub>/images/`` holds at most one image, and some one: one folder per
    case (``ADEChallengeData2016/images/`` holds folders, not a case's image)."""
    single = False
    for sub in subs:
        image_dir = _subfolder(sub, "images", IMAGE_DIR_NAMES)
        count = len(_image_files(image_dir)) if image_dir is not None else 0
        if count > 1:
            return False
        single = single or count == 1
    return single


def _discover_cases(root: Path, cases: Sequence[Path]) -> Discovery:
    """One folder per case: one image in ``images/``, one binary mask per object in ``masks/``."""
    pairs: list[Pair] = []
    lone: list[str] = []
    for case in cases:
        image_dir = _subfolder(case, "images", IMAGE_DIR_NAMES)
        images = _image_files(image_dir) if image_dir is not None else []
        if len(images) > 1:
            raise DataError(
                f"{image_dir}: {len(images)} images ({first_names([p.name for p in images], 3)}) "
                "in one case folder; fix: keep one image per case folder (its masks/ folder holds "
                "one mask per object)"
            )
        if not images:
            continue
        mask_dir = _subfolder(case, "masks", MASK_DIR_NAMES)
        parts = tuple(_image_files(mask_dir)) if mask_dir is not None else ()
        name = f"{case.name}/{image_dir.name}/{images[0].name}"  # type: ignore[union-attr]
        if not parts:
            lone.append(name)
            continue
        pairs.append(Pair(name, images[0], mask_dir, parts))  # type: ignore[arg-type]
    layout = f"{CASE_LAYOUT} (<case>/images/ + <case>/masks/, object masks merged: any object = 1)"
    return Discovery(tuple(pairs), tuple(lone), (), root, root, "", layout)


def case_images(folder: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(case name, image) of each ``<case>/images/<one image>`` of a one-folder-per-case layout
    (``stage1_test/<id>/images/<id>.png``), in natural order; [] for any other folder.

    Args:
        folder: the folder that holds the case folders.
    """
    root = Path(folder)
    if not root.is_dir() or _image_files(root):
        return []
    subs = _nested(root)
    if not subs or not _is_case_layout(subs):
        return []
    out = []
    for sub in subs:
        files = _image_files(_subfolder(sub, "images", IMAGE_DIR_NAMES))  # type: ignore[arg-type]
        if files:
            out.append((sub.name, files[0]))
    return out


class _NotHere(DataError):
    """None of the usual layouts at a folder's top (what :func:`discover` then searches below)."""


def discover(
    folder: str | os.PathLike[str], *, mask_suffix: str = "_mask", images_dir: str = "images",
    masks_dir: str = "masks", pair: str | None = None, role: str = "",
) -> Discovery:
    """Find a folder's pairs and its unpaired files (``find_pairs`` without the empty-result error).

    The usual layouts are read where they are (see :func:`_discover_here`). When none fits and
    neither folder is configured, the folders below are searched for the images and masks folder
    pair that pairs the most images (:func:`search_below`: a data set as downloaded, such as
    ``VOCdevkit/VOC2012/JPEGImages`` + ``SegmentationClass``); ``Discovery.notes`` says which
    folders were read and the ``--set`` lines that choose others. Without such a pair the usual
    layouts' error is raised.

    Args: see :func:`_discover_here`.
    """
    try:
        return _discover_here(folder, mask_suffix=mask_suffix, images_dir=images_dir,
                              masks_dir=masks_dir, pair=pair, role=role)
    except _NotHere as error:
        configured = (images_dir.strip("/") not in ("", "images")
                      or masks_dir.strip("/") not in ("", "masks"))
        root = Path(folder)
        if configured or pair is not None or not root.is_dir():
            raise
        found = search_below(root, mask_suffix)
        if found is None:
            grouped = _one_folder_groups(root, mask_suffix)
            if grouped is None:
                raise _with_folders_below(error, root, role) from None
            return grouped
    image_rel, mask_rel = _rel(found.images, root), _rel(found.masks, root)
    result = _discover_here(root, mask_suffix=mask_suffix, images_dir=image_rel,
                            masks_dir=mask_rel, role=role)
    also = [f"{_rel(i, root)}/ + {_rel(m, root)}/ ({n})" for i, m, n in found.others]
    note = (f"no images/ + masks/ at the top of {root}: read {image_rel}/ + {mask_rel}/, the "
            f"folders below it that pair the most images ({len(result.pairs)})"
            + (f"; also found: {', '.join(also)}: check that these are the images and labels "
               "you want" if also else "")
            + f"; to read others: --set data.{role}images_dir=FOLDER --set "
              f"data.{role}masks_dir=FOLDER")
    return dataclasses.replace(result, notes=(note, *result.notes))


#: words in a folder's path that say it holds masks (a match anywhere in the lower-cased name)
MASK_WORDS = ("mask", "label", "annot", "gt", "groundtruth", "ground_truth", "ground truth",
              "ground-truth", "manual", "trimap", "segmentation")
#: words that say a mask folder holds another kind of mask than class labels (instances, colour
#: renderings): such a folder is chosen only when it pairs more images than any other
OTHER_MASK_WORDS = ("object", "instance", "color", "colour", "inst")
#: folders searched below data.source at most (a data set as downloaded holds a few dozen)
SEARCH_FOLDERS = 400
#: levels searched below data.source
SEARCH_DEPTH = 4


def _words_say_mask(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in MASK_WORDS)


class Found(NamedTuple):
    """What :func:`search_below` found: the folders it reads and the other pairs it saw."""

    images: Path
    masks: Path
    #: other (images folder, masks folder, images paired by name) pairing at least half as many
    others: tuple[tuple[Path, Path, int], ...] = ()


def _walk(root: Path) -> Iterator[tuple[Path, list[Path]]]:
    """``root`` and the folders below it, SEARCH_DEPTH levels (not hidden ones, at most
    SEARCH_FOLDERS), breadth first in natural order, each with its mask (and image) files."""
    layer, seen = [root], 0
    for _ in range(SEARCH_DEPTH + 1):
        nxt: list[Path] = []
        for folder in layer:
            try:
                files = _mask_files(folder)
                subs = sorted((p for p in folder.iterdir()
                               if p.is_dir() and not p.name.startswith(".")),
                              key=lambda p: natural_key(p.name))
            except OSError:
                continue
            seen += 1
            if seen > SEARCH_FOLDERS:
                return
            yield folder, files
            nxt += subs
        layer = nxt


def search_below(root: Path, mask_suffix: str = "_mask") -> Found | None:
    """The images folder and masks folder below ``root`` that pair the most images, or None.

    Candidates are the folders down to SEARCH_DEPTH levels (not hidden ones, at most
    SEARCH_FOLDERS) that hold image files. A pair counts when its masks folder is named as masks
    are (MASK_WORDS, in its path below the two folders' common parent: ``annotations/training``
    beside ``images/training``) and its images folder is not, or when the masks carry a mask
    suffix (``ISIC_0000000_segmentation.png``); images pair with masks by file name as in
    :func:`_match`. Ties go to a folder of class labels (not OTHER_MASK_WORDS), then to a
    training split (``train`` in the images folder's path), then to the shorter paths. A masks
    folder of (nearly) one mask repeated, such as a field-of-view mask, is never chosen.

    Args:
        root: data.source.
        mask_suffix: data.mask_suffix.
    """
    folders: list[tuple[Path, set[str], set[str]]] = []  # (folder, image stems, stripped stems)
    for folder, files in _walk(root):
        if files:
            stems = {p.stem for p in files}
            stripped = {k for k in (_strip_mask_suffix(t, mask_suffix) for t in stems) if k}
            own = stems - {t for t in stems if _strip_mask_suffix(t, mask_suffix)}
            own |= {k for k in map(_image_key, own) if k}
            if own & stripped:  # images and their masks side by side: no masks folder
                stripped = set()
                stems = stems - {t for t in stems if _strip_mask_suffix(t, mask_suffix)}
            folders.append((folder, stems, stripped))
    best: tuple[tuple[int, ...], Path, Path] | None = None
    seen_pairs: list[tuple[Path, Path, int]] = []
    for images, image_stems, _ in folders:
        if not _image_files(images):
            continue
        for masks, mask_stems, stripped in folders:
            if masks == images:
                continue
            common = Path(os.path.commonpath([images, masks]))
            image_name, mask_name = _rel(images, common), _rel(masks, common)
            keys = image_stems | {k for k in map(_image_key, image_stems) if k}
            by_suffix = len(keys & stripped)
            named = _words_say_mask(mask_name) and not _words_say_mask(image_name)
            count = len(image_stems & mask_stems) + by_suffix if named else by_suffix
            if count == 0:
                continue
            seen_pairs.append((images, masks, count))
            other = any(w in mask_name.lower() for w in OTHER_MASK_WORDS)
            training = "train" in _rel(images, root).lower()
            depth = len(images.relative_to(root).parts) + len(masks.relative_to(root).parts)
            key = (count, 0 if other else 1, int(training), -depth)
            if best is not None and key <= best[0]:
                continue
            try:
                found = _match(_image_files(images), _mask_files(masks), images, masks,
                               mask_suffix)
            except DataError:
                continue
            if found.pairs and _repeated_score(found) is None:
                best = (key, images, masks)
    if best is None:
        return None
    top = best[0][0]
    others = sorted((p for p in seen_pairs if 2 * p[2] >= top and p[:2] != best[1:]),
                    key=lambda p: -p[2])
    return Found(best[1], best[2], tuple(others[:3]))


#: folder names of a training split, and of the other splits (left out beside a training split)
TRAIN_SPLITS = ("train", "training")
OTHER_SPLITS = ("valid", "val", "validation", "test", "testing")


def _with_folders_below(error: DataError, root: Path, role: str) -> DataError:
    """``error`` with the folders below ``root`` that hold image files named, and the ``--set``
    lines that read two of them (when it does not say which folders to set already)."""
    text = str(error)
    if "one level down" in text:
        return error
    held = [f"{_rel(folder, root)}/ ({len(files)})" for folder, files in _walk(root)
            if files and folder != root]
    if not held:
        return error
    return DataError(
        f"{text}; the folders below with image files: {first_names(held, 6)}, but none pairs "
        f"another by file name: read two of them with --set data.{role}images_dir=FOLDER --set "
        f"data.{role}masks_dir=FOLDER, and data.{role.replace('val_', '')}pair when their file "
        r"names differ (e.g. --set 'data.pair=(\d+)')"
    )


def masks_among(files: Sequence[Path], mask_suffix: str = "_mask") -> list[Path]:
    """The files of one folder that are masks of another file there (``X_mask.png`` beside
    ``X.jpg``, ``X_mask_1.png``, a second annotator's ``X_2ndHO.png``): not images to segment.

    Args:
        files: the image files of one folder.
        mask_suffix: data.mask_suffix.
    """
    stems = {p.stem for p in files}
    stems |= {k for k in map(_image_key, stems) if k}  # 100034 of 100034_sat.jpg
    second = tuple(x.lower() for x in SECOND_ANNOTATOR_SUFFIXES)
    extra = set(_extra_masks(files, mask_suffix))
    out = []
    for p in files:
        stem = re.sub(r"_\d+$", "", p.stem) if p in extra else p.stem  # X_mask_1 -> X_mask
        key = _strip_mask_suffix(stem, mask_suffix)
        if p.stem.lower().endswith(second) or (key is not None and key in stems):
            out.append(p)
    return out


def _extra_masks(files: Sequence[Path], mask_suffix: str) -> list[Path]:
    """Files named as further masks of one image, ``<image><suffix>_<n>`` (BUSI's
    ``benign (4)_mask_1.png``, a second lesion): neither images nor read."""
    suffixes = "|".join(re.escape(x) for x in dict.fromkeys((mask_suffix or "_mask", "_mask")))
    rx = re.compile(rf"^.+(?:{suffixes})_\d+$", re.IGNORECASE)
    return [p for p in files if rx.match(p.stem)]


def _side_by_side(folder: Path, mask_suffix: str, pair: str | None = None,
                  ) -> tuple[Discovery, list[Path], list[Path]] | None:
    """A folder of images and their ``NAME<suffix>`` masks side by side: its pairs, the second
    annotator's masks and the further masks of one image (both left out); None when the folder
    does not hold both images and such masks."""
    files = _image_files(folder)
    ending = tuple(x.lower() for x in SECOND_ANNOTATOR_SUFFIXES)
    second = [p for p in files if p.stem.lower().endswith(ending)]
    more = _extra_masks(files, mask_suffix)
    files = [p for p in files if p not in second and p not in more]
    masks = [p for p in files if _strip_mask_suffix(p.stem, mask_suffix) is not None]
    images = [p for p in files if _strip_mask_suffix(p.stem, mask_suffix) is None]
    if not masks or not images:
        return None
    found = _match(images, masks, folder, folder, mask_suffix, pair,
                   "one folder, masks named <image><suffix>")
    return found, second, more


def _left_out_notes(second: Sequence[str], more: Sequence[str]) -> list[str]:
    """The notes on the masks :func:`_side_by_side` leaves out (their names as shown)."""
    notes = []
    if second:
        notes.append(f"{len(second)} second annotator's mask(s) ({first_names(second, 3)}) are "
                     "not used: the first annotator's are the labels")
    if more:
        notes.append(f"{len(more)} further mask(s) of an image ({first_names(more, 3)}) are not "
                     "read: only its first mask is, so what they mark is trained as background; "
                     "merge them into the first mask to keep it")
    return notes


def _one_folder_groups(root: Path, mask_suffix: str) -> Discovery | None:
    """The pairs of ``root``'s subfolders that each hold images and their ``NAME<suffix>`` masks
    side by side (BUSI: ``benign/benign (1).png`` + ``benign (1)_mask.png``, ``malignant/``,
    ``normal/``), read as one data set; of split folders (``train/``, ``valid/``, ``test/``) only
    the training split. None when no subfolder is such a folder."""
    read = []  # (subfolder, its pairs, second annotator's masks, further masks)
    for sub in sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: natural_key(p.name)):
        side = _side_by_side(sub, mask_suffix)
        if side is not None and side[0].pairs:
            read.append((sub, *side))
    if not read:
        return None
    groups = [f"{sub.name}/ ({len(found.pairs)})" for sub, found, _, _ in read]
    names = [sub.name.lower() for sub, _, _, _ in read]
    train = [i for i, n in enumerate(names) if n in TRAIN_SPLITS]
    splits = [i for i, n in enumerate(names) if n in TRAIN_SPLITS + OTHER_SPLITS]
    if train and len(splits) > 1:  # train/ valid/ test/ (a Roboflow export): not one pool
        others = [groups[i] for i in splits if i != train[0]]
        valid = [read[i][0].name for i in splits if names[i] in ("valid", "val", "validation")]
        read, groups = [read[train[0]]], [groups[train[0]]]
        how = (f"; to validate on {valid[0]}/: --set data.val_source={root / valid[0]}"
               if valid else "")
        note = (f"no images/ + masks/ at the top of {root}: read the images and masks side by "
                f"side in {groups[0]}, the training split; not read: {', '.join(others)}{how}")
    else:
        note = (f"no images/ + masks/ at the top of {root}: read the images and masks side by "
                f"side in {', '.join(groups)} as one data set")
    pairs = [dataclasses.replace(p, name=f"{sub.name}/{p.name}")
             for sub, found, _, _ in read for p in found.pairs]
    lone_images = [f"{sub.name}/{n}" for sub, found, _, _ in read for n in found.lone_images]
    lone_masks = [f"{sub.name}/{n}" for sub, found, _, _ in read for n in found.lone_masks]
    second = [f"{sub.name}/{p.name}" for sub, _, left, _ in read for p in left]
    more = [f"{sub.name}/{p.name}" for sub, _, _, extra in read for p in extra]
    layout = f"one folder per group, masks named <image><suffix>: {', '.join(groups)}"
    return Discovery(tuple(pairs), tuple(lone_images), tuple(lone_masks), root, root,
                     mask_suffix, layout, (note, *_left_out_notes(second, more)))


def _discover_here(
    folder: str | os.PathLike[str], *, mask_suffix: str = "_mask", images_dir: str = "images",
    masks_dir: str = "masks", pair: str | None = None, role: str = "",
) -> Discovery:
    """Find a folder's pairs in the usual layouts (``images/`` + ``masks/`` and their aliases,
    one folder per case, one folder of ``NAME`` + ``NAME_mask`` files).

    Args:
        folder: the folder (see ``find_pairs``).
        mask_suffix: the suffix that marks a mask's stem.
        images_dir: the images folder, relative to ``folder`` ("images" also tries the usual
            aliases).
        masks_dir: the masks folder, relative to ``folder`` ("masks" also tries the usual aliases,
            beside the images folder; when several exist, the one that pairs most images is used,
            and ``Discovery.notes`` lists the others).
        pair: a regular expression whose first group is the key an image and its mask share.
        role: "" when ``folder`` is data.source, "val_" when it is data.val_source: messages name
            data.val_source, data.val_images_dir, data.val_masks_dir.

    Raises:
        DataError: no such folder, or no image files where they should be.
    """
    root = Path(folder)
    src = f"data.{role}source"
    if not root.exists():
        raise DataError(f"{root}: no such folder; fix: give {src} an existing folder"
                        + (", or 'sample' for the built-in synthetic data" if not role else ""))
    if not root.is_dir():
        raise DataError(f"{root}: is a file, not a folder ({src}); fix: give the folder holding "
                        "images/ and masks/, or an .npz / .npy file")
    images_set = images_dir.strip("/") not in ("", "images")
    masks_set = masks_dir.strip("/") not in ("", "masks")
    if images_set:
        image_dir: Path | None = _configured_dir(root, images_dir.strip("/"), "images_dir", role)
    else:
        image_dir = _subfolder(root, "images", IMAGE_DIR_NAMES)
    if masks_set:
        candidates = [_configured_dir(root, masks_dir.strip("/"), "masks_dir", role)]
    else:
        parent = image_dir.parent if image_dir is not None else root
        candidates = _mask_folders(parent, image_dir)
        if (parent / masks_dir).is_dir() and parent / masks_dir not in candidates:
            candidates.insert(0, parent / masks_dir)
    if image_dir is not None and candidates:
        images = _image_files(image_dir)
        if not images and not any(_mask_files(m) for m in candidates):
            raise _NotHere(
                f"{root}: {_rel(image_dir, root)}/ and {_rel(candidates[0], root)}/ hold no image "
                f"files (looked for {', '.join(IMAGE_EXTENSIONS)}); fix: put the "
                "images and masks there"
            )
        if not images:
            raise _NotHere(f"{image_dir}: no image files (looked for "
                            f"{', '.join(IMAGE_EXTENSIONS)}); fix: put the images there")
        how = f"data.pair '{pair}'" if pair is not None else "file name"
        found: list[Discovery] = []
        for mask_dir in candidates:
            masks = _mask_files(mask_dir)
            layout = f"{_rel(image_dir, root)}/ + {_rel(mask_dir, root)}/, paired by {how}"
            found.append(_match(images, masks, image_dir, mask_dir, mask_suffix, pair, layout))
        with_files = [d for d, m in zip(found, candidates) if _mask_files(m)]
        if not with_files:
            if len(candidates) == 1:
                raise _NotHere(f"{candidates[0]}: no mask files (looked for "
                                f"{', '.join(MASK_EXTENSIONS)}); fix: put the masks there")
            raise _NotHere(
                f"{image_dir.parent}: the mask folders "
                f"{', '.join(_rel(m, root) + '/' for m in candidates)} hold no mask files (looked "
                f"for {', '.join(MASK_EXTENSIONS)}); fix: put the masks there"
            )
        pairing = [d for d in with_files if d.pairs]
        repeated: dict[Path, float] = {}
        if len(pairing) > 1:  # a folder of one mask repeated (field of view) is never the labels
            for d in pairing:
                score = _repeated_score(d)
                if score is not None:
                    repeated[d.mask_dir] = score
        labels = [d for d in pairing if d.mask_dir not in repeated] or with_files
        best = max(labels, key=lambda d: len(d.pairs))  # first of equals: MASK_DIR_NAMES order
        if repeated:
            from segsearch.data.masks import repeated_warning

            for d in pairing:
                if d.mask_dir in repeated and d is not best:
                    note = repeated_warning(repeated[d.mask_dir], _rel(d.mask_dir, root) + "/")
                    note = (note.split("; if the labels", 1)[0]
                            + f"; not used (it pairs {len(d.pairs)} images)")
                    best = dataclasses.replace(best, notes=(*best.notes, note))
        if len(candidates) > 1:
            listed = ", ".join(f"{_rel(d.mask_dir, root)}/ ({len(d.pairs)} pairs)" for d in found)
            others = [d for d in found if d is not best]
            other = others[0].mask_dir
            how_other = ""
            if not others[0].pairs and pair is None:
                guess = _guess_pair(images, _mask_files(other), image_dir, other)
                how_other = (f" --set 'data.pair={guess[0]}' (it pairs {guess[1]} images)" if guess
                             else r" with a data.pair that pairs its file names (e.g. --set "
                                  r"'data.pair=^(\d+)_')")
            note = (f"{len(candidates)} candidate mask folders: {listed}; used "
                    f"{_rel(best.mask_dir, root)}/; to use another: --set "
                    f"data.{role}masks_dir={_rel(other, root)}{how_other}")
            best = dataclasses.replace(best, notes=(*best.notes, note))
        return best
    if image_dir is None and not candidates:
        subs = _nested(root)
        if subs and _is_case_layout(subs):
            return _discover_cases(root, subs)
        if subs:  # e.g. DRIVE: training/images, training/mask, training/1st_manual, test/...
            lines = []
            for sub in subs[:4]:
                sub_images = _subfolder(sub, "images", IMAGE_DIR_NAMES)
                masks = _mask_folders(sub, sub_images)
                lines.append(f"--set data.{role}images_dir={_rel(sub_images, root)}"
                             + (f" --set data.{role}masks_dir={_rel(masks[0], root)}"
                                if masks else "")
                             + (" (other mask folders: "
                                f"{', '.join(_rel(m, root) + '/' for m in masks[1:])})"
                                if len(masks) > 1 else ""))
            raise _NotHere(
                f"{root}: the images are one level down, in "
                f"{', '.join(_rel(s_, root) + '/' for s_ in subs[:4])}; fix: say which folders to "
                f"read: {'; or '.join(lines)}"
            )
    side = _side_by_side(root, mask_suffix, pair)
    if side is not None:
        found, second, more = side
        notes = _left_out_notes([p.name for p in second], [p.name for p in more])
        return dataclasses.replace(found, notes=tuple(notes))
    files = _image_files(root)
    if image_dir is not None or candidates:
        if image_dir is not None:
            raise _NotHere(
                f"{root}: has a {image_dir.name} folder but no masks folder (looked for "
                f"{', '.join(n + '/' for n in MASK_DIR_NAMES[:8])} ...; its subfolders: "
                f"{_subfolders(image_dir.parent)}); fix: name the masks folder with --set "
                f"data.{role}masks_dir=FOLDER, or put the masks in {image_dir.parent / 'masks'}/"
            )
        raise _NotHere(
            f"{root}: has a {candidates[0].name} folder but no images folder (its subfolders: "
            f"{_subfolders(root)}); fix: name the images folder with --set "
            f"data.{role}images_dir=FOLDER, or put the images in {root / 'images'}/ (same file "
            "names as the masks)"
        )
    raise _NotHere(
        f"{root}: found no images/ and masks/ subfolders"
        + (f" and no '*{mask_suffix}' mask files" if mask_suffix else "")
        + f" (it holds {len(files)} image file(s)); fix: put the images in {root / 'images'}/ and "
          f"the masks, with the same file names, in {root / 'masks'}/"
    )


def _pick(arrays: dict[str, np.ndarray], keys: Sequence[str], path: Path, what: str) -> np.ndarray:
    for key in keys:
        if key in arrays:
            return arrays[key]
    raise DataError(
        f"{path}: no {what} array; it holds {sorted(arrays) or 'nothing'}; "
        f"fix: save the {what} under one of the names {', '.join(keys)}"
    )


def load_arrays(
    path: str | os.PathLike[str], *, mask_suffix: str = "_mask", role: str = "",
) -> ArraySource:
    """Read images and masks from an .npz, an images .npy (+ its masks .npy), or a folder of both.

    Args:
        path: the .npz / .npy file or the folder holding images.npy and masks.npy.
        mask_suffix: for an ``x.npy`` file, the masks are read from ``x<mask_suffix>.npy``
            (else ``masks.npy`` beside it).
        role: "" for data.source, "val_" for data.val_source (the key named in messages).

    Raises:
        DataError: a missing or unreadable file, missing arrays, or shapes that do not match.
    """
    p = Path(path)
    if p.is_dir():
        image_file, mask_file = p / "images.npy", p / "masks.npy"
    elif p.suffix.lower() == ".npy":
        image_file = p
        mask_file = p.with_name(p.stem + mask_suffix + ".npy")
        if not mask_file.exists() and (p.parent / "masks.npy").exists() and p.name != "masks.npy":
            mask_file = p.parent / "masks.npy"
    else:
        image_file, mask_file = p, None
    if not image_file.exists():
        raise DataError(f"{image_file}: no such file; fix: give data.{role}source an existing "
                        ".npz / .npy file or folder")
    try:
        if mask_file is None:
            with np.load(image_file, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            images = _pick(arrays, ARRAY_IMAGE_KEYS, image_file, "images")
            masks = _pick(arrays, ARRAY_MASK_KEYS, image_file, "masks")
        else:
            if not mask_file.exists():
                raise DataError(
                    f"{image_file}: found no masks array beside it (looked for {mask_file.name}); "
                    f"fix: save the masks as {mask_file.name} or masks.npy"
                )
            images = np.load(image_file, allow_pickle=False)
            masks = np.load(mask_file, allow_pickle=False)
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError, EOFError, OSError ...
        raise DataError(
            f"{image_file}: cannot read the arrays ({type(exc).__name__}: {exc}); "
            "fix: save them again with numpy.savez / numpy.save"
        ) from None
    name = image_file.name
    if images.ndim == 3:
        images = images[..., None]
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise DataError(f"{name}: images must be (N, H, W) or (N, H, W, C) with C = 1, 3 or 4, got "
                        f"{images.shape}; fix: reshape them")
    if masks.ndim not in (3, 4) or (masks.ndim == 4 and masks.shape[-1] not in (3, 4)):
        raise DataError(f"{name}: masks must be (N, H, W), (N, H, W, 1) or (N, H, W, 3), got "
                        f"{masks.shape}; fix: reshape them")
    if len(images) != len(masks):
        raise DataError(f"{name}: {len(images)} images but {len(masks)} masks; fix: save one mask "
                        "per image, in the same order")
    if images.shape[1:3] != masks.shape[1:3]:
        raise DataError(
            f"{name}: images are {images.shape[1]}x{images.shape[2]} but masks are "
            f"{masks.shape[1]}x{masks.shape[2]}; fix: save masks of the images' size"
        )
    if len(images) == 0:
        raise DataError(f"{name}: holds no images (N = 0); fix: save at least two images and masks")
    return ArraySource(name, images, masks)


def _normalise_array(arr: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) or (H, W, C) with C in 1..4; planar (C, H, W) TIFFs turned around."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise DataError(
            f"{path}: cannot use an array of shape {arr.shape} as a 2-D image; "
            "fix: save one 2-D grey or RGB image per file (stacks and volumes are not read)"
        )
    if arr.ndim == 3 and arr.shape[-1] == 4:  # RGBA: alpha dropped
        arr = arr[..., :3]
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def _palette_array(img, palette: str) -> np.ndarray:
    """A palette image as indices (colour palettes of indexed masks) or as its colours / grey
    levels."""
    index = np.array(img)
    colours = np.array(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
    used = np.unique(index)
    used = used[used < len(colours)]
    grey = len(used) > 0 and bool(np.all(colours[used] == colours[used][:, :1]))
    if grey:
        return np.array(img.convert("L"))
    if palette == "index":
        return index
    return np.array(img.convert("RGB"))


def _pillow_array(img, path: Path, palette: str) -> np.ndarray:
    """An opened Pillow image as an array of its own depth (see ``read_array``)."""
    img.load()
    mode = img.mode
    if mode == "P":
        return _palette_array(img, palette)
    if mode == "PA":
        return np.array(img.convert("RGB"))
    if mode == "1":
        return np.array(img.convert("L"))
    if mode in ("L", "RGB", "F") or mode.startswith("I;16"):
        return np.array(img)
    if mode == "LA":
        return np.array(img)[..., 0]
    if mode == "I":
        arr = np.array(img)
        if arr.min() < 0 or arr.max() > 65535:
            raise DataError(
                f"{path}: 32-bit integer pixel values outside 0..65535 cannot be scaled; "
                "fix: save the image as 8- or 16-bit"
            )
        return arr.astype(np.uint16)
    return np.array(img.convert("RGB"))  # RGBA, CMYK, YCbCr, LAB, HSV ...


def _read_tiff(path: Path, palette: str, notes: list[str] | None) -> np.ndarray:
    """The first page of a TIFF: tifffile (with imagecodecs for LZW, JPEG ...), else Pillow.

    tifffile decodes LZW, JPEG, ZSTD ... only with the imagecodecs package; Pillow decodes the
    compressions labs and scanners use (LZW, deflate, packbits, JPEG) by itself, so it takes over.
    """
    import tifffile

    first: Exception | None = None
    pages = 1
    try:
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            arr = tif.pages[0].asarray()
    except Exception as exc:  # ValueError "requires the 'imagecodecs' package", TiffFileError ...
        first = exc
    if first is not None:
        from PIL import Image

        try:
            with Image.open(path) as img:
                pages = getattr(img, "n_frames", 1)
                img.seek(0)
                arr = _pillow_array(img, path, palette)
        except DataError:
            raise
        except Exception as second:
            cause = (f"tifffile: {type(first).__name__}: {first}; "
                     f"Pillow: {type(second).__name__}: {second}")
            if "imagecodecs" in str(first):
                raise DataError(
                    f"{path}: cannot decode this TIFF's compression ({cause}); fix: pip install "
                    "imagecodecs (a segsearch dependency; it decodes every TIFF compression)"
                ) from None
            raise DataError(
                f"{path}: cannot read the TIFF file ({cause}); it may be truncated or not a TIFF; "
                "fix: check the file (does it open in an image viewer?), or remove "
                "it and its partner"
            ) from None
    if pages > 1 and notes is not None:
        notes.append("TIFF file(s) of several pages, of which only the first page is read: "
                     f"{path.name} ({pages} pages)")
    return arr


def read_array(
    path: str | os.PathLike[str], *, palette: str = "rgb", notes: list[str] | None = None,
) -> np.ndarray:
    """Decode one image file to an (H, W) or (H, W, C) array of its own dtype (uint8, uint16,
    float).

    The readers are Pillow (PNG, JPEG, BMP, GIF) and tifffile (TIFF, with imagecodecs for LZW,
    JPEG ... compression; Pillow when tifffile cannot decode a file). Alpha channels are dropped,
    16-bit data stays 16-bit, 1-bit images become 0/255, and a TIFF of several pages gives its first
    page (with a note).

    Args:
        path: the file.
        palette: for palette images (GIF, indexed PNG): "rgb" gives the colours, "index" the palette
            indices (the class ids of indexed masks, as in Pascal VOC).
        notes: a list that receives what a user should know (a multi-page TIFF read in part).

    Raises:
        DataError: the file is unreadable or truncated (naming it and the cause).
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = _read_tiff(path, palette, notes)
        else:
            from PIL import Image

            with Image.open(path) as img:
                arr = _pillow_array(img, path, palette)
    except DataError:
        raise
    # OSError (truncated), UnidentifiedImageError, SyntaxError, ValueError ...
    except Exception as exc:
        raise DataError(
            f"{path}: cannot read the file ({type(exc).__name__}: {exc}); it may be truncated or "
            "not an image; fix: check the file (does it open in an image viewer?), or remove "
            "it and its partner"
        ) from None
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not arr.dtype.isnative):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return _normalise_array(arr, path)


def _mat_arrays_v5(path: Path) -> dict[str, np.ndarray]:
    """Every numeric 2-D array of a MATLAB v4-v7.2 file, by dotted path through structs and
    cells."""
    try:
        import scipy.io
    except ImportError as exc:
        raise DataError(f"{path}: reading .mat masks needs scipy ({exc}); "
                        "fix: pip install scipy") from None
    data = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    out: dict[str, np.ndarray] = {}

    def walk(name: str, value: Any) -> None:
        if not isinstance(value, np.ndarray):
            return
        if value.dtype.names:  # a struct (array)
            records = value.ravel(order="F")
            for i, rec in enumerate(records):
                prefix = name if len(records) == 1 else f"{name}({i + 1})"
                for field in value.dtype.names:
                    walk(f"{prefix}.{field}", rec[field])
        elif value.dtype == object:  # a cell array
            cells = value.ravel(order="F")
            for i, cell in enumerate(cells):
                walk(name if len(cells) == 1 else f"{name}{{{i + 1}}}", cell)
        elif value.dtype.kind in "biuf" and value.ndim == 2 and min(value.shape) > 1:
            out[name] = value

    for key, value in data.items():
        if not key.startswith("__"):
            walk(key, value)
    return out


def _mat_arrays_h5(path: Path) -> dict[str, np.ndarray]:
    """Every numeric 2-D array of a MATLAB v7.3 (HDF5) file, transposed back to MATLAB's shape."""
    try:
        import h5py
    except ImportError as exc:
        raise DataError(f"{path}: reading MATLAB v7.3 masks needs h5py ({exc}); fix: "
                        "pip install h5py") from None
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:

        def walk(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group):
                for key in obj:
                    if not key.startswith("#"):
                        walk(f"{name}.{key}" if name else key, obj[key])
                return
            cls = obj.attrs.get("MATLAB_class", b"")
            cls = cls.decode() if isinstance(cls, bytes) else str(cls)
            if h5py.check_dtype(ref=obj.dtype) is not None:  # a cell array of references
                refs = obj[()].ravel()  # HDF5 order is MATLAB's column-major order
                for i, ref in enumerate(refs):
                    if ref:
                        walk(name if len(refs) == 1 else f"{name}{{{i + 1}}}", f[ref])
                return
            if cls == "char" or "MATLAB_empty" in obj.attrs:
                return
            if obj.dtype.kind in "biuf" and obj.ndim == 2 and min(obj.shape) > 1:
                # MATLAB is column-major: HDF5 holds the transpose
                out[name] = np.asarray(obj[()]).T

        walk("", f)
    return out


def read_mat(path: str | os.PathLike[str], key: str | None = None) -> np.ndarray:
    """The mask in a MATLAB ``.mat`` file: the one 2-D integer array, or the one ``key`` names.

    v4 to v7.2 files are read with scipy.io, v7.3 (HDF5) files with h5py (and transposed back to
    the image's orientation). Arrays are found through nested structs and cell arrays; their keys
    are dotted paths (``groundTruth.Segmentation``; ``name{2}`` for the second cell of several,
    ``name(2)`` for the second element of a struct array).

    Args:
        path: the .mat file.
        key: ``data.mat_key``: the array's dotted path, needed when the file holds several 2-D
            integer arrays.

    Raises:
        DataError: an unreadable file, no 2-D integer array, several without ``key``, or ``key`` not
            found (the message lists the keys there are).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
        hdf5 = b"\x89HDF\r\n\x1a\n" in head[:8] or head[512:520] == b"\x89HDF\r\n\x1a\n"
        arrays = _mat_arrays_h5(path) if hdf5 else _mat_arrays_v5(path)
    except DataError:
        raise
    except Exception as exc:  # scipy MatReadError / ValueError, OSError ...
        raise DataError(
            f"{path}: cannot read the MATLAB file ({type(exc).__name__}: {exc}); it may be "
            "truncated or not a MATLAB file; fix: check that it opens in MATLAB / "
            "scipy.io.loadmat, or remove it and its image"
        ) from None

    def listed() -> str:
        return ", ".join(f"{k} ({a.shape[0]}x{a.shape[1]} {a.dtype})"
                         for k, a in arrays.items()) or "none"

    if key is not None:
        arr = arrays.get(key)
        if arr is None:
            lowered = {k.lower(): k for k in arrays}
            arr = arrays.get(lowered.get(key.lower(), ""))
        if arr is None:
            raise DataError(
                f"{path}: data.mat_key {key!r} names no 2-D numeric array; the file holds: "
                f"{listed()}; fix: set data.mat_key to one of these"
            )
    else:
        ints = {k: a for k, a in arrays.items() if a.dtype.kind in "biu"}
        if not ints:  # MATLAB saves double by default: integer-valued floats are labels too
            ints = {k: a for k, a in arrays.items()
                    if a.dtype.kind == "f" and np.all(a == np.round(a))}
        if len(ints) != 1:
            what = "no 2-D integer array" if not ints else f"{len(ints)} 2-D integer arrays"
            raise DataError(
                f"{path}: holds {what}, so the mask is not clear; 2-D arrays there: {listed()}; "
                "fix: name the mask's array with --set data.mat_key=KEY (a dotted path, e.g. "
                "groundTruth.Segmentation)"
            )
        arr = next(iter(ints.values()))
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not arr.dtype.isnative):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr)


def read_mask(
    pair: Pair, *, palette: str = "index", mat_key: str | None = None,
    notes: list[str] | None = None,
) -> np.ndarray:
    """Decode a pair's mask: an image file, a MATLAB ``.mat`` file, or a case's object masks merged.

    Args:
        pair: the pair.
        palette: for palette masks, "index" (class ids) or "rgb" (colours), as ``read_array``.
        mat_key: ``data.mat_key`` for ``.mat`` masks.
        notes: a list that receives what a user should know (see ``read_array``).

    Raises:
        DataError: an unreadable mask, or object masks of different sizes.
    """
    if pair.parts:
        merged: np.ndarray | None = None
        for part in pair.parts:
            obj = read_array(part, palette="index", notes=notes)
            if obj.ndim == 3:
                obj = obj.max(axis=-1)
            if merged is None:
                merged = np.zeros(obj.shape[:2], np.uint8)
            if obj.shape[:2] != merged.shape:
                raise DataError(
                    f"{part}: object mask is {obj.shape[0]}x{obj.shape[1]} but "
                    f"{pair.parts[0].name} is {merged.shape[0]}x{merged.shape[1]} (height x "
                    "width); fix: save every object mask at the image's size"
                )
            merged[obj > 0] = 1
        return merged  # type: ignore[return-value]
    if pair.mask.suffix.lower() == ".mat":
        return read_mat(pair.mask, mat_key)
    return read_array(pair.mask, palette=palette, notes=notes)
