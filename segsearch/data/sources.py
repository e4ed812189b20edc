"""Find image/mask pairs on disk and decode them (PNG, JPEG, TIFF, BMP, GIF; .npz / .npy arrays).

Pairing rules, in order:

1. A folder with an images subfolder and a masks subfolder (``images/`` + ``masks/``; also
   ``image(s)``/``img(s)`` with ``mask(s)``/``label(s)``/``annotations``/``gt``): an image pairs with
   the mask of the same stem, whatever the extensions (``12.png`` + ``12.png``, ``case_3.jpg`` +
   ``case_3.png``), or with the mask whose stem is the image stem plus ``mask_suffix``
   (``case_3_mask.png``; default suffix ``_mask``).
2. One folder of files where masks carry ``mask_suffix`` (``a.png`` + ``a_mask.png``).
3. A folder holding ``images.npy`` + ``masks.npy``; an ``.npz`` file with arrays named images/x
   and masks/y (or labels); or an images ``.npy`` file with ``<stem><mask_suffix>.npy`` (or
   ``masks.npy``) beside it.

Only the top level of each folder is read; hidden files and files of other types are skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segsearch.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "Pair",
    "ArraySource",
    "find_pairs",
    "discover",
    "Discovery",
    "load_arrays",
    "read_array",
    "is_array_source",
    "first_names",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
IMAGE_DIR_NAMES = ("images", "image", "imgs", "img")
MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "annotations", "gt")
ARRAY_IMAGE_KEYS = ("images", "image", "x", "X", "imgs")
ARRAY_MASK_KEYS = ("masks", "mask", "y", "Y", "labels", "label")


@dataclass(frozen=True)
class Pair:
    """One image file and its mask file.

    Args:
        name: the image's file name, relative to its folder (the key in split records).
        image: path of the image.
        mask: path of the mask.
    """

    name: str
    image: Path
    mask: Path


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


def first_names(names: Sequence[str], n: int = 5) -> str:
    """'a, b, c and 7 more' for messages."""
    names = list(names)
    shown = ", ".join(str(v) for v in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _natural_key(text: str) -> list[object]:
    """Sort '2.png' before '10.png'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _image_files(folder: Path) -> list[Path]:
    """Image files at the top of ``folder``, hidden files skipped, in natural order."""
    files = [
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _subfolder(root: Path, configured: str, aliases: Sequence[str]) -> Path | None:
    """The configured subfolder if present, else the first alias that exists (case-insensitive)."""
    if (root / configured).is_dir():
        return root / configured
    present = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for alias in aliases:
        if alias in present:
            return present[alias]
    return None


def _by_stem(files: Sequence[Path], folder: Path, what: str) -> dict[str, Path]:
    """Map stem -> file; two files with one stem (``12.png`` and ``12.tif``) are an error."""
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise DataError(
                f"{folder}: two {what} share the name {p.stem!r} ({out[p.stem].name} and {p.name}); "
                f"fix: keep one of them, so each {what[:-1]} pairs with exactly one file"
            )
        out[p.stem] = p
    return out


@dataclass(frozen=True)
class Discovery:
    """What a folder holds: the pairs, and the files that found no partner.

    Args:
        pairs: the image/mask pairs.
        lone_images: image names without a mask.
        lone_masks: mask names without an image.
        image_dir: the folder of the images.
        mask_dir: the folder of the masks (the same folder when masks carry the suffix).
        suffix: the mask suffix in use.
    """

    pairs: tuple[Pair, ...]
    lone_images: tuple[str, ...]
    lone_masks: tuple[str, ...]
    image_dir: Path
    mask_dir: Path
    suffix: str

    def raise_unpaired(self) -> None:
        """Raise a DataError naming the first few unpaired files, if there are any."""
        if self.lone_images:
            stem = self.lone_images[0].rsplit(".", 1)[0]
            hint = f"{stem}.png or {stem}{self.suffix}.png" if self.suffix else f"{stem}.png"
            raise DataError(
                f"{self.image_dir}: {len(self.lone_images)} image(s) have no mask in {self.mask_dir}: "
                f"{first_names(self.lone_images)}; fix: add masks with the same name (e.g. {hint}) or remove those images"
            )
        if self.lone_masks:
            raise DataError(
                f"{self.mask_dir}: {len(self.lone_masks)} mask(s) have no image in {self.image_dir}: "
                f"{first_names(self.lone_masks)}; fix: add the images (same name"
                + (f", or the mask's name without {self.suffix!r}" if self.suffix else "")
                + ") or remove those masks"
            )


def _match(images: Sequence[Path], masks: Sequence[Path], image_dir: Path, mask_dir: Path, suffix: str) -> Discovery:
    """Pair images with masks by stem (equal, or mask stem = image stem + suffix)."""
    by_image = _by_stem(images, image_dir, "images")
    by_mask = _by_stem(masks, mask_dir, "masks")
    pairs: list[Pair] = []
    used: set[str] = set()
    missing: list[str] = []
    for stem, image in by_image.items():
        key = stem
        mask = by_mask.get(stem)
        if mask is None and suffix:
            key = stem + suffix
            mask = by_mask.get(key)
        if mask is None:
            missing.append(image.name)
            continue
        used.add(key)
        pairs.append(Pair(image.name, image, mask))
    orphans = [p.name for stem, p in by_mask.items() if stem not in used]
    return Discovery(tuple(pairs), tuple(missing), tuple(orphans), image_dir, mask_dir, suffix)


def is_array_source(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an .npz/.npy file or a folder holding images.npy + masks.npy."""
    p = Path(path)
    if p.suffix.lower() in (".npz", ".npy"):
        return True
    return p.is_dir() and (p / "images.npy").is_file() and (p / "masks.npy").is_file()


def find_pairs(
    folder: str | os.PathLike[str], *, mask_suffix: str = "_mask", images_dir: str = "images", masks_dir: str = "masks",
) -> list[Pair]:
    """List the image/mask pairs of a folder, following the pairing rules of this module.

    Args:
        folder: a folder with images/ and masks/ subfolders, or one folder of images and
            ``<stem><mask_suffix>`` masks.
        mask_suffix: the suffix that marks a mask's stem (default ``_mask``).
        images_dir: the images subfolder's name.
        masks_dir: the masks subfolder's name.

    Raises:
        DataError: no such folder, no images, an image without a mask or a mask without an image.

    Example:
        >>> [p.name for p in find_pairs("data/membrane")][:3]
        ['0.png', '1.png', '2.png']
    """
    found = discover(folder, mask_suffix=mask_suffix, images_dir=images_dir, masks_dir=masks_dir)
    found.raise_unpaired()
    return list(found.pairs)


def discover(
    folder: str | os.PathLike[str], *, mask_suffix: str = "_mask", images_dir: str = "images", masks_dir: str = "masks",
) -> Discovery:
    """Find a folder's pairs and its unpaired files (``find_pairs`` without the unpaired error).

    Args:
        folder: the folder (see ``find_pairs``).
        mask_suffix: the suffix that marks a mask's stem.
        images_dir: the images subfolder's name.
        masks_dir: the masks subfolder's name.

    Raises:
        DataError: no such folder, or no image files where they should be.
    """
    root = Path(folder)
    if not root.exists():
        raise DataError(f"{root}: no such folder; fix: give data.source an existing folder, or 'sample' for the built-in synthetic data")
    if not root.is_dir():
        raise DataError(f"{root}: is a file, not a folder; fix: give the folder holding images/ and masks/, or an .npz / .npy file")
    image_dir = _subfolder(root, images_dir, IMAGE_DIR_NAMES)
    mask_dir = _subfolder(root, masks_dir, MASK_DIR_NAMES)
    if image_dir is not None and mask_dir is not None:
        images = _image_files(image_dir)
        masks = _image_files(mask_dir)
        if not images and not masks:
            raise DataError(
                f"{root}: {image_dir.name}/ and {mask_dir.name}/ hold no image files "
                f"(looked for {', '.join(IMAGE_EXTENSIONS)}); fix: put the images and masks there"
            )
        if not images:
            raise DataError(f"{image_dir}: no image files (looked for {', '.join(IMAGE_EXTENSIONS)}); fix: put the images there")
        if not masks:
            raise DataError(f"{mask_dir}: no mask files (looked for {', '.join(IMAGE_EXTENSIONS)}); fix: put the masks there")
        return _match(images, masks, image_dir, mask_dir, mask_suffix)
    files = _image_files(root)
    if mask_suffix and files:
        masks = [p for p in files if p.stem.endswith(mask_suffix)]
        images = [p for p in files if not p.stem.endswith(mask_suffix)]
        if masks and images:
            return _match(images, masks, root, root, mask_suffix)
    if image_dir is not None or mask_dir is not None:
        found, lacking = ("images", "masks") if image_dir is not None else ("masks", "images")
        raise DataError(
            f"{root}: has a {found} folder but no {lacking} folder; fix: put the {lacking} in {root / lacking}/"
            f" (same file names as the {found})"
        )
    raise DataError(
        f"{root}: found no images/ and masks/ subfolders"
        + (f" and no '*{mask_suffix}' mask files" if mask_suffix else "")
        + f" (it holds {len(files)} image file(s)); fix: put the images in {root / 'images'}/ and the masks, "
        f"with the same file names, in {root / 'masks'}/"
    )


def _pick(arrays: dict[str, np.ndarray], keys: Sequence[str], path: Path, what: str) -> np.ndarray:
    for key in keys:
        if key in arrays:
            return arrays[key]
    raise DataError(
        f"{path}: no {what} array; it holds {sorted(arrays) or 'nothing'}; "
        f"fix: save the {what} under one of the names {', '.join(keys)}"
    )


def load_arrays(path: str | os.PathLike[str], *, mask_suffix: str = "_mask") -> ArraySource:
    """Read images and masks from an .npz, an images .npy (+ its masks .npy), or a folder of both.

    Args:
        path: the .npz / .npy file or the folder holding images.npy and masks.npy.
        mask_suffix: for an ``x.npy`` file, the masks are read from ``x<mask_suffix>.npy``
            (else ``masks.npy`` beside it).

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
        raise DataError(f"{image_file}: no such file; fix: give data.source an existing .npz / .npy file or folder")
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
        raise DataError(f"{name}: images must be (N, H, W) or (N, H, W, C) with C = 1, 3 or 4, got {images.shape}; fix: reshape them")
    if masks.ndim not in (3, 4) or (masks.ndim == 4 and masks.shape[-1] not in (3, 4)):
        raise DataError(f"{name}: masks must be (N, H, W), (N, H, W, 1) or (N, H, W, 3), got {masks.shape}; fix: reshape them")
    if len(images) != len(masks):
        raise DataError(f"{name}: {len(images)} images but {len(masks)} masks; fix: save one mask per image, in the same order")
    if images.shape[1:3] != masks.shape[1:3]:
        raise DataError(
            f"{name}: images are {images.shape[1]}x{images.shape[2]} but masks are {masks.shape[1]}x{masks.shape[2]}; "
            "fix: save masks of the images' size"
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
    """A palette image as indices (colour palettes of indexed masks) or as its colours / grey levels."""
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


def read_array(path: str | os.PathLike[str], *, palette: str = "rgb") -> np.ndarray:
    """Decode one image file to an (H, W) or (H, W, C) array of its own dtype (uint8, uint16, float).

    The readers are Pillow (PNG, JPEG, BMP, GIF) and tifffile (TIFF). Alpha channels are dropped,
    16-bit data stays 16-bit, 1-bit images become 0/255, and a TIFF stack gives its first page.

    Args:
        path: the file.
        palette: for palette images (GIF, indexed PNG): "rgb" gives the colours, "index" the palette
            indices (the class ids of indexed masks, as in Pascal VOC).

    Raises:
        DataError: the file is unreadable or truncated (naming it and the fix).
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path, key=0)
        else:
            from PIL import Image

            with Image.open(path) as img:
                img.load()
                mode = img.mode
                if mode == "P":
                    arr = _palette_array(img, palette)
                elif mode == "PA":
                    arr = np.array(img.convert("RGB"))
                elif mode == "1":
                    arr = np.array(img.convert("L"))
                elif mode in ("L", "RGB", "F") or mode.startswith("I;16"):
                    arr = np.array(img)
                elif mode == "LA":
                    arr = np.array(img)[..., 0]
                elif mode == "I":
                    arr = np.array(img)
                    if arr.min() < 0 or arr.max() > 65535:
                        raise DataError(
                            f"{path}: 32-bit integer pixel values outside 0..65535 cannot be scaled; "
                            "fix: save the image as 8- or 16-bit"
                        )
                    arr = arr.astype(np.uint16)
                else:  # RGBA, CMYK, YCbCr, LAB, HSV ...
                    arr = np.array(img.convert("RGB"))
    except DataError:
        raise
    except Exception as exc:  # OSError (truncated), UnidentifiedImageError, SyntaxError, ValueError ...
        raise DataError(
            f"{path}: cannot read the file ({type(exc).__name__}: {exc}); it may be truncated or not an "
            "image; fix: export it again, or remove it and its partner"
        ) from None
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not arr.dtype.isnative):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return _normalise_array(arr, path)
