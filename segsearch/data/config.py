"""DataConfig: where the images and masks are and how to prepare them, validated when built.

Example:
    >>> DataConfig(source="data/membrane", image_size=(256, 256), val_fraction=0.2)
    >>> DataConfig.from_dict({"source": "sample", "num_classes": 3, "image_size": 64})
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from segsearch.data.augment import Augment
from segsearch.errors import ConfigError, unknown_name

__all__ = ["DataConfig", "MASK_KINDS", "RESIZE_MODES", "MAX_IMAGE_SIDE", "parse_colors",
           "parse_values"]

MASK_KINDS = ("auto", "binary", "ids", "rgb", "instances")
RESIZE_MODES = ("auto", "patch", "resize", "crop")
#: the largest side of data.image_size: a network trains on whole inputs of that size, and one
#: 8192x8192 input of a small U-Net already needs gigabytes of activations.
MAX_IMAGE_SIDE = 8192
Color = tuple[int, int, int]


def _color(key: Any, where: str) -> Color:
    """Parse one colour: '#rrggbb', 'r,g,b', [r, g, b] or a grey level g (= (g, g, g))."""
    if isinstance(key, bool):
        raise ConfigError(f"{where}: expected a colour, got {key!r}")
    if isinstance(key, int):
        rgb: Sequence[Any] = (key, key, key)
    elif isinstance(key, str):
        text = key.strip()
        if re.fullmatch(r"#?[0-9a-fA-F]{6}", text):
            text = text.lstrip("#")
            rgb = tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))
        elif re.fullmatch(r"\s*\d+\s*,\s*\d+\s*,\s*\d+\s*", text):
            rgb = tuple(int(v) for v in text.split(","))
        elif text.isdigit():
            rgb = (int(text),) * 3
        else:
            raise ConfigError(f"{where}: cannot read colour {key!r}; write '#rrggbb', 'r,g,b' or a "
                              "grey level 0-255")
    elif isinstance(key, Sequence) and len(key) == 3:
        rgb = tuple(key)
    else:
        raise ConfigError(f"{where}: cannot read colour {key!r}; write '#rrggbb', 'r,g,b' or a "
                          "grey level 0-255")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb):
        raise ConfigError(f"{where}: colour {key!r} must have three integer channels in 0..255")
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def parse_colors(value: Any, where: str = "data.colors") -> tuple[tuple[Color, int], ...] | None:
    """Normalise a colour table to ``((rgb, class_id), ...)``; class id -1 marks an ignored colour.

    Args:
        value: None; a mapping colour -> class id (``{"#000000": 0, "#ff0000": 1, "255,255,255":
            -1}``, grey levels as ints ``{0: 0, 128: 1}``); or a list of colours whose position is
            the class id (``[[0, 0, 0], [255, 0, 0]]``).
        where: location used in error messages.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
        if items and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[1], int)
                         and not isinstance(i[0], int) for i in items):
            pass  # already ((rgb, id), ...)
        else:
            items = [(c, i) for i, c in enumerate(items)]
    else:
        raise ConfigError(f"{where}: expected a mapping colour -> class id or a list of "
                          f"colours, got {value!r}")
    if not items:
        raise ConfigError(f"{where}: the colour table is empty; give at least two "
                          "colours or leave it out")
    out: dict[Color, int] = {}
    for key, cls in items:
        rgb = _color(key, f"{where}[{key!r}]")
        if isinstance(cls, bool) or not isinstance(cls, int) or cls < -1:
            raise ConfigError(f"{where}[{key!r}]: class id must be an integer >= 0 (or -1 to "
                              f"ignore), got {cls!r}")
        if rgb in out and out[rgb] != cls:
            raise ConfigError(f"{where}: colour {rgb} is given twice, as class "
                              f"{out[rgb]} and class {cls}")
        out[rgb] = int(cls)
    return tuple(sorted(out.items(), key=lambda kv: (kv[1], kv[0])))


def parse_values(value: Any, where: str = "data.values") -> tuple[tuple[int, int], ...] | None:
    """Normalise a mask value -> class id map to ``((value, class_id), ...)``; id -1 = ignored.

    Args:
        value: None, or a mapping ``{1: 0, 2: 1}`` (keys may be digit strings, as JSON writes them).
        where: location used in error messages.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str) and all(
        isinstance(i, (tuple, list)) and len(i) == 2 for i in value
    ):
        items = [tuple(i) for i in value]
    else:
        raise ConfigError(f"{where}: expected a mapping mask value -> class id, e.g. "
                          f"{{1: 0, 2: 1}}, got {value!r}")
    if not items:
        raise ConfigError(f"{where}: the map is empty; give each mask value its class "
                          "id, or leave it out")
    glued = {k: _unglue(k) for k, c in items if c is None}
    if glued and all(pair is not None for pair in glued.values()):
        fixed = ", ".join("%s: %s" % (glued[k] if c is None else (k, c))  # type: ignore[str-format]
                          for k, c in items)
        read = ", ".join(f"{k}: {'null' if c is None else c}" for k, c in items)
        key, (a, b) = next(iter(glued.items()))  # type: ignore[misc]
        taken = f"the number {key}" if isinstance(key, int) else f"the text {key!r}"
        raise ConfigError(
            f"{where}: read as {{{read}}}: without a space after the colon YAML takes {a}:{b} for "
            f"one key ({taken}) without a class id; write {{{fixed}}} with a space after each "
            f"colon: --set 'data.values={{{fixed}}}'"
        )
    out: dict[int, int] = {}
    for key, cls in items:
        raw = key
        if cls is None:
            raise ConfigError(f"{where}: {raw!r} has no class id; write the map as {{1: 0, 2: 1}}, "
                              "with a space after each colon (YAML reads 1:0 as one number)")
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key.strip())
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= 2 ** 31:
            raise ConfigError(f"{where}[{raw!r}]: a mask value must be an integer >= 0, "
                              f"got {raw!r}")
        if isinstance(cls, bool) or not isinstance(cls, int) or cls < -1:
            raise ConfigError(f"{where}[{raw!r}]: class id must be an integer >= 0 (or -1 to "
                              f"ignore), got {cls!r}")
        out[key] = int(cls)
    if all(cls < 0 for cls in out.values()):
        raise ConfigError(f"{where}: every value maps to -1 (ignored); give the classes their ids")
    return tuple(sorted(out.items()))


def _unglue(key: Any) -> tuple[int, int] | None:
    """The ``a: b`` that YAML read as one key from ``a:b`` (no space after the colon), or None.

    YAML 1.1 reads ``1:0`` as the base-60 number 60 (``255:1`` as 15301), and ``0:0`` as the string
    '0:0'; either way the map entry has no value.
    """
    if isinstance(key, bool):
        return None
    if isinstance(key, int) and key >= 60:
        return divmod(key, 60)
    if isinstance(key, str) and re.fullmatch(r"\s*\d+:\d+\s*", key):
        a, b = key.split(":")
        return int(a), int(b)
    return None


@dataclass(frozen=True)
class DataConfig:
    """Where the images and masks are and how they are prepared for a model.

    Args:
        source: "sample" (the built-in synthetic data set), a folder with ``images/`` and ``masks/``
            subfolders (or one folder of ``NAME.ext`` + ``NAME<mask_suffix>.ext`` files, or one with
            ``images.npy`` + ``masks.npy``), an ``.npz`` file, or an images ``.npy`` file.
        image_size: (height, width) every sample is brought to (an int means square); None keeps the
            files' own size, which must then be the same for all.
        num_classes: 1 for binary (one sigmoid channel), >= 2 for softmax over classes; None infers
            it from the masks (at most ids 0/1 -> 1, else the largest id + 1).
        channels: 1 or 3 channels of the model input; None takes 3 if any image is in colour,
            else 1.
        val_fraction: share of the pairs held out for validation, by a split seeded with ``seed``.
        val_source: a folder / file laid out like ``source`` that is the validation set instead;
            it must not hold the training images.
        seed: seed of the split (and of the synthetic sample).
        folds: k-fold cross-validation: the pairs are dealt into ``folds`` disjoint folds (each
            fold in turn the validation part; the search scores on fold 0); None or 1: one split
            by ``val_fraction``. Not with ``val_source``.
        fold_seed: seed of the fold assignment; None: ``seed``.
        mask_suffix: a mask named ``<image stem><mask_suffix>`` pairs with that image
            (``case_3_mask.png`` with ``case_3.jpg``); equal stems always pair.
        mask_kind: "auto" (detect), "binary" (0 = background, values >= half the type's maximum =
            foreground, so 0/255, 0/1 and JPEG-damaged masks all work), "ids" (values are class
            ids), "rgb" (colours mapped through ``colors``), or "instances" (instance ids, as
            GlaS's: every value above 0 is foreground).
        colors: colour -> class id table for colour (or grey-level) masks; id -1 = ignored.
        ignore_value: a mask value marking void pixels, e.g. 255; they become -1 and count in
            neither loss nor metrics.
        resize: "auto" (default): "patch" when a side of some image (after ``scale``) exceeds
            ``image_size``, else "resize". "patch" keeps the full resolution: training takes random
            ``image_size`` patches (a new draw each epoch, ``foreground_oversample`` of them centred
            on a foreground pixel), validation and ``predict`` run overlapping windows over whole
            images, blended with Gaussian weights; images smaller than a patch are padded with
            ignored pixels. "crop" is the former name of "patch". "resize" scales each image to
            ``image_size`` (bilinear; masks nearest-neighbour).
        scale: in patch mode, downsample every image (bilinear) and mask (nearest) by this factor
            first, e.g. 0.5 for huge images; validation scores at that scale, ``predict`` scales
            its masks back to the input's size.
        foreground_oversample: in patch mode, the share of training patches centred on a random
            foreground pixel (a pixel of a class other than background, class 0); the rest lie
            anywhere. 0.33 as nnU-Net.
        overlap: in patch mode, how much neighbouring windows of validation and ``predict``
            overlap, as a share of the window (0 <= overlap < 1; 0.5 as nnU-Net).
        augment: training augmentation: a strength (0 = off, 1 = default), true/false, a mapping of
            :class:`~segsearch.data.augment.Augment` fields, or an Augment.
        cache: keep the decoded arrays in memory (True), read files every epoch (False), or decide
            by the available memory (None).
        images_dir: the images folder, relative to ``source`` (nested ones too:
            ``training/images``); "images" also finds ``image/``, ``imgs/``, ``img/``.
        masks_dir: the masks folder, relative to ``source`` (``training/1st_manual``); "masks" also
            finds ``labels/``, ``gt/``, ``groundTruth/``, ``mask/`` ... beside the images folder.
        val_images_dir: the images folder of ``val_source``, relative to it (``test/images``); None
            takes ``images_dir``.
        val_masks_dir: the masks folder of ``val_source`` (``test/1st_manual``); None takes
            ``masks_dir``.
        sample_count: number of images in the synthetic sample.
        pair: a regular expression whose first group is the key an image and its mask share,
            searched in each file name (``'^(\\d+)_'`` pairs ``21_training.tif`` with
            ``21_manual1.gif``); None pairs by stem, a mask's stem without a mask suffix (``_mask``,
            ``_gt`` ...) too.
        values: mask value -> class id, e.g. ``{1: 0, 2: 1}`` (1 = background, 2 = crack); id -1
            ignores a value; a mask value not in the map is an error. For grey (not colour) masks.
        mat_key: for MATLAB ``.mat`` masks, the dotted path of the mask's array
            (``groundTruth.Segmentation``), needed when a file holds several 2-D integer arrays.
        class_names: names of the classes, index = class id (binary: background, foreground),
            shown by ``segsearch data check``, in metrics files and overlay legends.
        background: the class id that is background (default 0): foreground scores (dice, iou,
            the objective ``val_dice``) and statistics leave it out; None when every class is a
            real one (street scenes whose class 0 is sky), then they average every class.

    Example:
        >>> DataConfig(source="data/cells", image_size=256, mask_kind="rgb",
        ...            colors={"#000000": 0, "#ff0000": 1, "#00ff00": 2}, ignore_value=None)
    """

    source: str | os.PathLike[str] = "sample"
    image_size: tuple[int, int] | int | None = (128, 128)
    num_classes: int | None = None
    channels: int | None = None
    val_fraction: float = 0.2
    val_source: str | os.PathLike[str] | None = None
    seed: int = 0
    mask_suffix: str = "_mask"
    mask_kind: Literal["auto", "binary", "ids", "rgb", "instances"] = "auto"
    colors: Any = None
    ignore_value: int | None = None
    resize: Literal["auto", "patch", "resize", "crop"] = "auto"
    augment: Any = field(default_factory=Augment)
    cache: bool | None = None
    images_dir: str = "images"
    masks_dir: str = "masks"
    sample_count: int = 64
    pair: str | None = None
    values: Any = None
    mat_key: str | None = None
    class_names: Any = None
    background: int | None = 0
    val_images_dir: str | None = None
    val_masks_dir: str | None = None
    scale: float = 1.0
    foreground_oversample: float = 0.33
    overlap: float = 0.5
    folds: int | None = None
    fold_seed: int | None = None

    def __post_init__(self) -> None:
        w = "data"
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731

        if isinstance(self.source, os.PathLike):
            set_("source", os.fspath(self.source))
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError(f"{w}.source: expected 'sample' or a folder / .npz path, "
                              f"got {self.source!r}")
        if self.val_source is not None:
            if isinstance(self.val_source, os.PathLike):
                set_("val_source", os.fspath(self.val_source))
            if not isinstance(self.val_source, str) or not self.val_source.strip():
                raise ConfigError(f"{w}.val_source: expected a folder / .npz path or null, got "
                                  f"{self.val_source!r}")

        size = self.image_size
        if size is not None:
            if isinstance(size, int) and not isinstance(size, bool):
                size = (size, size)
            if (
                isinstance(size, str) or not isinstance(size, Sequence) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
            ):
                auto = ("; `auto` is resolved by load_config (segsearch run), not by DataConfig"
                        if isinstance(size, str) and size.strip().lower() == "auto" else "")
                raise ConfigError(f"{w}.image_size: expected [height, width] or one integer, got "
                                  f"{self.image_size!r}{auto}")
            if min(size) < 8:
                raise ConfigError(f"{w}.image_size: each side must be >= 8 pixels, "
                                  f"got {list(size)}")
            if max(size) > MAX_IMAGE_SIDE:
                raise ConfigError(
                    f"{w}.image_size: each side must be <= {MAX_IMAGE_SIDE} pixels, "
                    f"got {list(size)}; "
                    "a network trains on whole images of this size, so train on a smaller size "
                    "(larger images are resized, or cut into windows with data.resize: crop)"
                )
            set_("image_size", (int(size[0]), int(size[1])))

        if self.num_classes is not None and (
            isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int)
            or self.num_classes < 1
        ):
            raise ConfigError(f"{w}.num_classes: expected 1 (binary) or >= 2 classes, or null to "
                              f"infer, got {self.num_classes!r}")
        if (self.channels is not None and self.channels not in (1, 3)
                or isinstance(self.channels, bool)):
            raise ConfigError(f"{w}.channels: expected 1, 3 or null (from the data), got "
                              f"{self.channels!r}")

        vf = self.val_fraction
        if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not math.isfinite(vf):
            raise ConfigError(f"{w}.val_fraction: expected a number between 0 and 1, got {vf!r}")
        if self.val_source is None and not 0 < vf < 1:
            raise ConfigError(
                f"{w}.val_fraction: must be between 0 and 1 (exclusive), got {vf!r}; "
                f"or give data.val_source, a separate validation folder"
            )
        set_("val_fraction", float(vf))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"{w}.seed: expected an integer >= 0, got {self.seed!r}")
        self._check_folds(w)
        if not isinstance(self.mask_suffix, str):
            raise ConfigError(f"{w}.mask_suffix: expected a string such as '_mask', got "
                              f"{self.mask_suffix!r}")
        if self.mask_kind not in MASK_KINDS:
            raise ConfigError(unknown_name("mask kind", self.mask_kind, MASK_KINDS,
                                           f"{w}.mask_kind"))
        set_("colors", parse_colors(self.colors, f"{w}.colors"))
        if self.mask_kind == "rgb" and self.colors is None:
            raise ConfigError(
                f"{w}.colors: mask_kind 'rgb' needs a colour table, e.g. colors: "
                "{'#000000': 0, '#ff0000': 1}"
            )
        if self.ignore_value is not None and (
            isinstance(self.ignore_value, bool) or not isinstance(self.ignore_value, int)
            or not 0 <= self.ignore_value <= 65535
        ):
            raise ConfigError(f"{w}.ignore_value: expected a mask value 0..65535 or null, got "
                              f"{self.ignore_value!r}")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(unknown_name("resize mode", self.resize, RESIZE_MODES, f"{w}.resize"))
        if self.resize in ("patch", "crop") and self.image_size is None:
            raise ConfigError(f"{w}.image_size: resize '{self.resize}' needs an image_size, the "
                              "size of the patches")
        for name, low, high, closed in (("scale", 0.0, 1.0, True),
                                        ("foreground_oversample", 0.0, 1.0, True),
                                        ("overlap", 0.0, 1.0, False)):
            value = getattr(self, name)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
            if ok:
                ok = (low < value <= high) if name == "scale" else (
                    low <= value <= high if closed else low <= value < high)
            if not ok:
                allowed = {"scale": "a number in (0, 1], e.g. 0.5 to halve huge images",
                           "foreground_oversample": "a share between 0 and 1, e.g. 0.33",
                           "overlap": "a share 0 <= overlap < 1, e.g. 0.5"}[name]
                raise ConfigError(f"{w}.{name}: expected {allowed}, got {value!r}")
            set_(name, float(value))
        set_("augment", Augment.from_config(self.augment, f"{w}.augment"))
        if self.cache is not None and not isinstance(self.cache, bool):
            raise ConfigError(f"{w}.cache: expected true, false or null (decide by memory), "
                              f"got {self.cache!r}")
        for name in ("images_dir", "masks_dir"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip("/ "):
                raise ConfigError(f"{w}.{name}: expected a folder relative to data.source, e.g. "
                                  f"training/images, got {value!r}")
            set_(name, Path(value.strip()).as_posix().rstrip("/"))
        for name in ("val_images_dir", "val_masks_dir"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip("/ "):
                raise ConfigError(f"{w}.{name}: expected a folder relative to data.val_source, "
                                  f"e.g. test/images, or null (= data.{name[4:]}), got {value!r}")
            if self.val_source is None:
                raise ConfigError(f"{w}.{name}: is set but data.val_source is not; give "
                                  "data.val_source, the folder it is relative to (it may be "
                                  "data.source itself)")
            set_(name, Path(value.strip()).as_posix().rstrip("/"))
        if self.pair is not None:
            if not isinstance(self.pair, str) or not self.pair:
                raise ConfigError(f"{w}.pair: expected a regular expression such as '^(\\d+)_', "
                                  f"got '{self.pair}'")
            try:
                groups = re.compile(self.pair).groups
            except re.error as exc:
                raise ConfigError(f"{w}.pair: '{self.pair}' is not a valid regular expression "
                                  f"({exc}); quote it in YAML, e.g. --set "
                                  "'data.pair=^(\\d+)_'") from None
            if groups < 1:
                raise ConfigError(f"{w}.pair: '{self.pair}' has no group; its first group (...) is "
                                  "the key an image and its mask share, e.g. '^(\\d+)_'")
        set_("values", parse_values(self.values, f"{w}.values"))
        if self.values is not None:
            if self.colors is not None:
                raise ConfigError(f"{w}.values: give either values (grey mask values) or colors "
                                  "(colour masks), not both")
            if self.mask_kind not in ("auto", "ids"):
                raise ConfigError(f"{w}.values: maps mask values to class ids, so mask_kind must "
                                  f"be auto or ids, got {self.mask_kind!r}; remove one of them")
        if self.mat_key is not None and (not isinstance(self.mat_key, str)
                                         or not self.mat_key.strip(". ")):
            raise ConfigError(f"{w}.mat_key: expected a dotted path such as "
                              f"groundTruth.Segmentation, got {self.mat_key!r}")
        names = self.class_names
        if names is not None:
            if (isinstance(names, str) or not isinstance(names, Sequence) or len(names) < 2
                    or not all(isinstance(n, str) and n.strip() for n in names)):
                raise ConfigError(f"{w}.class_names: expected a list of at least two names, index "
                                  f"= class id (binary: [background, foreground]), got {names!r}")
            set_("class_names", tuple(names))
        bg = self.background
        if bg is not None and (isinstance(bg, bool) or not isinstance(bg, int) or bg < 0):
            raise ConfigError(f"{w}.background: expected a class id >= 0 (default 0) or null "
                              f"when every class is a real one, got {bg!r}")
        if (isinstance(self.sample_count, bool) or not isinstance(self.sample_count, int)
                or self.sample_count < 2):
            raise ConfigError(f"{w}.sample_count: expected an integer >= 2, got "
                              f"{self.sample_count!r}")

    def patch_mode(self, sizes: Sequence[tuple[int, int]]) -> bool:
        """Whether images of these sizes (after ``scale``) train on patches (``resize`` resolved).

        Args:
            sizes: (height, width) of every image, already multiplied by ``scale``.
        """
        if self.resize in ("patch", "crop"):
            return True
        if self.resize == "resize" or self.image_size is None:
            return False
        h, w = self.image_size
        return any(a > h or b > w for a, b in sizes)

    @property
    def val_dirs(self) -> tuple[str, str]:
        """(images folder, masks folder) of ``val_source``: the val_* keys, else the others."""
        return (self.val_images_dir or self.images_dir, self.val_masks_dir or self.masks_dir)

    @property
    def is_sample(self) -> bool:
        """True when the source is the built-in synthetic sample."""
        return self.source == "sample"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, where: str = "data") -> DataConfig:
        """Build from a mapping (the ``data:`` section of a space file); unknown keys are errors.

        Args:
            values: the keys of DataConfig; missing keys take their defaults.
            where: location prefix for error messages, e.g. "spaces/unet.yaml: data".
        """
        values = dict(values or {})
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                raise ConfigError(unknown_name("data option", key, names, where))
        if isinstance(values.get("image_size"), list):
            values["image_size"] = tuple(values["image_size"])
        try:
            return cls(**values)
        except ConfigError as exc:
            msg = str(exc)
            if where != "data" and msg.startswith("data"):
                msg = where + msg[len("data"):]
            raise ConfigError(msg) from None

    def _check_folds(self, w: str) -> None:
        """data.folds: an integer >= 1 or null (1 is one split, stored as null); data.fold_seed."""
        folds = self.folds
        if folds is not None and (isinstance(folds, bool) or not isinstance(folds, int)
                                  or folds < 1):
            raise ConfigError(f"{w}.folds: expected an integer >= 2 (k-fold cross-validation) or "
                              f"null for one train/validation split, got {folds!r}")
        if folds == 1:
            object.__setattr__(self, "folds", None)
        seed = self.fold_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ConfigError(f"{w}.fold_seed: expected an integer >= 0 or null (data.seed), got "
                              f"{seed!r}")
        if self.folds is not None and self.val_source is not None:
            raise ConfigError(f"{w}.folds: cross-validation deals the pairs of data.source into "
                              f"folds, but data.val_source ({self.val_source}) is a fixed "
                              "validation folder; remove one of the two")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict that ``from_dict`` turns back into an equal config."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "image_size" and value is not None:
                value = list(value)
            elif f.name == "colors" and value is not None:
                value = {"#{:02x}{:02x}{:02x}".format(*rgb): cls for rgb, cls in value}
            elif f.name == "augment":
                value = value.to_dict()
            elif f.name == "values" and value is not None:
                value = {str(v): cls for v, cls in value}
            elif f.name == "class_names" and value is not None:
                value = list(value)
            out[f.name] = value
        return out
