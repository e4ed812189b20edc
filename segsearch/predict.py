"""Segment a folder of images with an exported model: one mask PNG per image, at its own size.

The model is loaded with ``keras.saving.load_model`` in safe mode; an exported ``model.onnx`` or
``model.tflite`` runs with onnxruntime or LiteRT instead (``segsearch.formats``), at the input size
it was exported with, through the same windows. Images are read and prepared the
way the training data was (the data package's readers, the ``data:`` settings the study stored in
``config.yaml`` beside the model): same scaling, channels and size. A model trained on patches
(``data.resize: patch``) sees each image whole at its own resolution (after ``data.scale``) through
overlapping windows blended with Gaussian weights, the code validation uses; a model trained on
resized images sees the image resized. The output is brought back to each image's original size
before the mask is taken, so masks line up with their images.

Masks: one-class (sigmoid) models give 0/255 PNGs (foreground where probability >= threshold);
several classes (softmax) give the class id of each pixel (8-bit PNG, 16-bit above 255 classes).
Overlays (``overlay=True``) are drawn as the export draws its own (``segsearch.export``):
``NAME_overlay.png`` shows image | prediction, every class in its colour with a legend of the
class names. Given the true masks (``masks=DIR``, the same names), they show image | truth |
prediction | errors with the image's score in the title, the masks read as in training.
Nothing in the output folder is ever overwritten: when a file to be written exists already, the
call refuses before writing anything and says how to proceed.

Example:
    >>> from segsearch.predict import predict
    >>> written = predict("studies/resunet/best", "new_images", "masks", overlay=True)
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsearch.console import listed, plural
from segsearch.errors import ConfigError, DataError, SegsearchError, similar_path
from segsearch.formats import RUNTIME_SUFFIXES, load_runtime

__all__ = ["predict", "find_model"]

MODEL_FILE = "model.keras"
CONFIG_FILES = ("config.yaml", "hyperparameters.yaml")


def find_model(path: str | os.PathLike[str]) -> Path:
    """The model file a MODEL argument names: a .keras, .onnx or .tflite file, a best/ folder, or a
    study folder.

    Args:
        path: ``model.keras`` (or the export's ``model.onnx`` / ``model.tflite``, run with
            onnxruntime / LiteRT); a folder holding it (``studies/NAME/best``: its model.keras);
            or a study folder (``studies/NAME``, whose ``best/model.keras`` is used).

    Raises:
        ConfigError: nothing loadable there; the message says what to give instead.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix != ".keras" and path.suffix not in RUNTIME_SUFFIXES:
            raise ConfigError(f"{path}: not a .keras, .onnx or .tflite model file; give the "
                              "model.keras a search exported (studies/NAME/best/model.keras) or "
                              "its folder")
        return path
    if path.is_dir():
        for candidate in (path / MODEL_FILE, path / "best" / MODEL_FILE):
            if candidate.is_file():
                return candidate
        raise ConfigError(f"{path}: holds no {MODEL_FILE} (nor best/{MODEL_FILE}); give an "
                          "exported model, or run `segsearch export STUDY_DIR` first")
    raise ConfigError(f"{path}: no such model file or folder; give studies/NAME/best or its "
                      f"{MODEL_FILE}")


def _stored_config(model_file: Path) -> dict[str, Any]:
    """The configuration stored beside the model (config.yaml of the export or the study), whose
    ``data:`` settings say how images were prepared; {} when there is none."""
    import yaml

    for folder in (model_file.parent, model_file.parent.parent):
        for name in CONFIG_FILES:
            candidate = folder / name
            if not candidate.is_file():
                continue
            try:
                stored = yaml.safe_load(candidate.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(stored, Mapping) and isinstance(stored.get("data"), Mapping):
                return dict(stored)
    return {}


def _data_config(stored: Mapping[str, Any]) -> Any:
    """The stored ``data:`` settings as a DataConfig (its known keys; defaults where unreadable)."""
    import dataclasses

    from segsearch.data import DataConfig

    known = {f.name for f in dataclasses.fields(DataConfig)}
    values = {k: v for k, v in dict(stored.get("data") or {}).items() if k in known}
    values.pop("source", None)  # where it trained; not needed, and it may be gone
    try:
        return DataConfig.from_dict(values)
    except ConfigError:
        return DataConfig()


def _objective(stored: Mapping[str, Any]) -> str:
    """The study's objective (the metric an overlay's title shows), ``val_dice`` by default."""
    search = stored.get("search") if isinstance(stored.get("search"), Mapping) else {}
    objective = search.get("objective", "val_dice")
    if isinstance(objective, (list, tuple)):
        objective = objective[0] if objective else "val_dice"
    return str(objective)


def _image_files(images: Path) -> list[Path]:
    """The images to segment: one file, a folder's images, or each case's image of a folder of
    case folders (``stage1_test/<id>/images/<id>.png``)."""
    from segsearch.data.sources import IMAGE_EXTENSIONS, case_images, masks_among

    cases = case_images(images) if images.is_dir() else []
    if cases:
        return [file for _, file in cases]

    if images.is_file():
        if images.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"{images}: not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        return [images]
    if not images.is_dir():
        raise DataError(f"{images}: no such image file or folder{similar_path(images)}")
    files = sorted(p for p in images.iterdir()
                   if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_EXTENSIONS)
    masks = set(masks_among(files))  # X_mask.png beside X.jpg: a mask, not an image to segment
    files = [p for p in files if p not in masks]
    if not files:
        raise DataError(f"{images}: holds no images ({', '.join(IMAGE_EXTENSIONS)}); give a folder "
                        "of images or one image file")
    return files


def _targets(files: Sequence[Path], out_dir: Path, overlay: bool,
             names: Sequence[str] | None = None) -> list[tuple[Path, Path | None]]:
    """Output paths per image: NAME.png (+ NAME_overlay.png); unique even when stems repeat.

    Args:
        files: the images.
        out_dir: the output folder.
        overlay: add the overlay paths.
        names: the NAME of each image (case ids), instead of the file stems.
    """
    stems = list(names) if names is not None else [f.stem for f in files]
    targets = []
    for f, own in zip(files, stems):
        stem = own if stems.count(own) == 1 else f"{own}_{f.suffix.lstrip('.').lower()}"
        mask = out_dir / f"{stem}.png"
        targets.append((mask, out_dir / f"{stem}_overlay.png" if overlay else None))
    return targets


def _fed_size(shape: tuple[int, int], size: tuple[int, int] | None, mode: str,
              scale: float = 1.0) -> tuple[tuple[int, int], bool]:
    """(the size the model sees the image at, whether through sliding windows): the image scaled
    by ``scale`` in patch mode ("patch", "crop", or "auto" when larger than the model's input),
    else the model's input size (its own size when the model takes any)."""
    if size is None:
        return (int(shape[0]), int(shape[1])), False
    scaled = (max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale))))
    patch = mode in ("patch", "crop") or (
        mode == "auto" and (scaled[0] > size[0] or scaled[1] > size[1]))
    return (scaled if patch else (int(size[0]), int(size[1]))), patch


def _predict_probabilities(model: Any, x: np.ndarray, size: tuple[int, int] | None,
                           mode: str, scale: float = 1.0, overlap: float = 0.5) -> np.ndarray:
    """Class probabilities (H, W, K) at the image's own size, for one prepared image (H, W, C).

    Patch mode ("patch", its old name "crop", or "auto" for an image larger than the model's
    input): the image (scaled by ``scale`` first) is covered with overlapping windows blended
    with Gaussian weights, the code validation uses (``segsearch.data.windows``). Resize mode: the
    image is resized to the model's input and the prediction back.
    """
    from segsearch.data.dataset import resize_image
    from segsearch.data.windows import sliding_window

    height, width = x.shape[:2]
    if size is None:
        return np.asarray(model.predict(x[None], verbose=0)[0], dtype=np.float32)
    scaled, patch = _fed_size((height, width), size, mode, scale)
    if patch:
        image = resize_image(x, scaled) if scaled != (height, width) else x
        probs = sliding_window(image, size, model.predict_on_batch, overlap=overlap, batch_size=8)
        return resize_image(probs, (height, width)) if scaled != (height, width) else probs
    pred = np.asarray(model.predict(resize_image(x, size)[None], verbose=0)[0], dtype=np.float32)
    return resize_image(pred, (height, width))


def _mask(probabilities: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask to save, class ids) from probabilities (H, W, K)."""
    if probabilities.shape[-1] == 1:
        ids = (probabilities[..., 0] >= threshold).astype(np.uint8)
    else:
        ids = np.argmax(probabilities, axis=-1)
    return _mask_of(ids, probabilities.shape[-1]), ids


def _mask_of(ids: np.ndarray, channels: int) -> np.ndarray:
    """The mask PNG's array of class ids: 0/255 for one channel, else the ids (8 or 16 bits)."""
    if channels == 1:
        return ids.astype(np.uint8) * np.uint8(255)
    return ids.astype(np.uint8 if channels <= 256 else np.uint16)


def _export_record(model_file: Path) -> dict[str, Any] | None:
    """The export's ``hyperparameters.yaml`` beside ``model_file`` (what it chose on the validation
    images), or None when there is none or it cannot be read."""
    import yaml

    path = model_file.parent / "hyperparameters.yaml"
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None
    return dict(loaded) if isinstance(loaded, Mapping) else None


def _choices(model_file: Path, model: Any, stored: Mapping[str, Any], tta: bool | None,
             postprocess: bool, threshold: float | None = None,
             ) -> tuple[list[str], list[dict[str, Any]], float]:
    """(test-time transforms, post-processing rules, foreground threshold) to apply: what the
    export chose on the validation images (``hyperparameters.yaml`` beside the model), overridden
    by the arguments. A forced TTA without a record takes the flips and rotations of the stored
    ``data.augment``; the threshold is 0.5 without a record."""
    from segsearch import tta as tta_mod

    path = model_file.parent / "hyperparameters.yaml"
    record = _export_record(model_file) or {}
    chosen = record.get("tta") if isinstance(record.get("tta"), Mapping) else {}
    if tta is None:
        transforms = list(chosen.get("transforms") or ["rot0"]) if chosen.get("used") else ["rot0"]
    elif tta:
        transforms = list(chosen.get("available") or tta_mod.transforms_for(
            (stored.get("data") or {}).get("augment", True), model.input_shape[1:3]))
    else:
        transforms = ["rot0"]
    for name in transforms:
        if name not in tta_mod.TRANSFORMS:
            raise ConfigError(f"{path}: tta: unknown transform {name!r}; export the study again "
                              "(`segsearch export STUDY_DIR`) or use --no-tta")
    post = record.get("postprocess") if isinstance(record.get("postprocess"), Mapping) else {}
    rules = [dict(r) for r in post.get("rules") or () if isinstance(r, Mapping)]
    if threshold is None:
        threshold = _recorded_threshold(record, path)
    return transforms, (rules if postprocess else []), float(threshold)


def _recorded_threshold(record: Mapping[str, Any], path: Path) -> float:
    """The export's ``threshold`` (0.5 when it chose none: an older export, a softmax model)."""
    value = record.get("threshold")
    if value is None:
        return 0.5
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"{path}: threshold: must be a number between 0 and 1, got {value!r}; "
                          "export the study again (`segsearch export STUDY_DIR`) or give "
                          "--threshold")
    return float(value)


def describe_choices(model_path: str | os.PathLike[str], tta: bool | None = None,
                     postprocess: bool = True, threshold: float | None = None) -> str:
    """What :func:`predict` applies besides the network, in words (for its output line).

    Args:
        model_path: as :func:`predict` takes it.
        tta: as :func:`predict` takes it.
        postprocess: as :func:`predict` takes it.
        threshold: as :func:`predict` takes it.
    """
    model_file = find_model(model_path)
    path = model_file.parent / "hyperparameters.yaml"
    record = _export_record(model_file)
    given = f"the threshold {threshold:g} (--threshold)" if threshold is not None else None
    if record is None:
        if tta:
            return ", ".join(["test-time augmentation (forced)", *([given] if given else []),
                              "no post-processing"])
        return (f"the network's output as it is{f' at {given}' if given else ''}: no {path.name} "
                f"beside {model_file.name}, so the export's test-time augmentation, threshold and "
                "post-processing are not known (predict from the best/ folder to apply them)")
    chosen = record.get("tta") if isinstance(record.get("tta"), Mapping) else {}
    post = record.get("postprocess") if isinstance(record.get("postprocess"), Mapping) else {}
    parts = []
    if tta or (tta is None and chosen.get("used")):
        count = len(chosen.get("transforms") or chosen.get("available") or [])
        parts.append(f"test-time augmentation ({count} transforms)" if count else
                     "test-time augmentation")
    chosen_threshold = record.get("threshold")
    chosen_threshold = chosen_threshold if isinstance(chosen_threshold, float) else None
    classes = record.get("num_classes")
    if isinstance(classes, int) and classes > 1:
        if threshold is not None:
            parts.append(f"the argmax of {classes} classes (--threshold is for one-channel "
                         "models)")
    elif given:
        parts.append(given if chosen_threshold is None else
                     f"the threshold {threshold:g} (--threshold; the export chose "
                     f"{chosen_threshold:g})")
    elif chosen_threshold is not None and chosen_threshold != 0.5:
        parts.append(f"the threshold {chosen_threshold:g} (chosen on validation)")
    rules = len(post.get("rules") or ()) if postprocess else 0
    if rules:
        parts.append(plural(rules, "post-processing rule"))
    return listed(parts) if parts else "the network's output as it is"


def _mask_files(files: Sequence[Path], masks_dir: Path, names: Sequence[str]) -> list[Path]:
    """The true mask of each image in ``masks_dir``: the same name, or the name with a mask
    suffix (``NAME_mask.png``, ...), any image extension.

    Raises:
        DataError: no such folder, or an image without a mask there.
    """
    from segsearch.data.sources import IMAGE_EXTENSIONS, MASK_SUFFIXES

    if not masks_dir.is_dir():
        raise DataError(f"{masks_dir}: no such folder of masks (--masks)"
                        f"{similar_path(masks_dir)}; give the folder holding the true masks, "
                        "named as the images")
    found: dict[str, Path] = {}
    for p in sorted(masks_dir.iterdir()):
        if not p.is_file() or p.suffix.lower() not in IMAGE_EXTENSIONS + (".mat",):
            continue
        found.setdefault(p.stem, p)
        for suffix in MASK_SUFFIXES:
            if p.stem.lower().endswith(suffix) and len(p.stem) > len(suffix):
                found.setdefault(p.stem[: -len(suffix)], p)
    out = []
    for file, name in zip(files, names):
        mask = found.get(name, found.get(file.stem))
        if mask is None:
            raise DataError(f"{masks_dir}: holds no mask for {file.name} (looked for {name}.png, "
                            f"{name}_mask.png, ...); give every image a mask of the same name, or "
                            "leave out --masks")
        out.append(mask)
    return out


def _image_size(file: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header where Pillow reads it."""
    from PIL import Image

    from segsearch.data.sources import read_array

    try:
        with Image.open(file) as img:
            return img.size[1], img.size[0]
    except (OSError, ValueError):
        shape = read_array(file).shape
        return int(shape[0]), int(shape[1])


def _true_masks(files: Sequence[Path], data: Any, num_classes: int) -> list[np.ndarray]:
    """Class ids (H, W) of each mask file, read the way training reads masks (``data:``'s mask
    kind, values, colours and ignored value; the kind decided over all of them together)."""
    from segsearch.data import masks as masks_mod
    from segsearch.data.sources import read_array, read_mat

    palette = "rgb" if data.colors is not None else "index"
    raws = [read_mat(f, data.mat_key) if f.suffix.lower() == ".mat" else
            read_array(f, palette=palette) for f in files]
    rule = masks_mod.decide(
        [masks_mod.mask_stats(raw, str(f)) for raw, f in zip(raws, files)],
        mask_kind=data.mask_kind, num_classes=data.num_classes or num_classes,
        colors=data.colors, ignore_value=data.ignore_value, where="--masks", values=data.values)
    return [masks_mod.to_ids(raw, rule, str(f)) for raw, f in zip(raws, files)]


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write a PNG without ever replacing an existing file (exclusive create)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    try:
        with open(path, "xb") as f:
            f.write(buffer.getvalue())
    except FileExistsError:
        raise SegsearchError(f"{path}: exists already and is kept; give an empty --out folder or "
                             "remove that file") from None


def _model_settings(model: Any, stored: Mapping[str, Any],
                    image_size: int | Sequence[int] | None) -> tuple[tuple[int, int] | None, int,
                                                                     str]:
    """(size to feed, channels, resize mode) from the argument, the stored config and the model."""
    shape = tuple(model.input_shape)
    if len(shape) != 4:
        raise ConfigError(f"the model takes inputs of shape {shape}; predict handles 2-D images "
                          "(batch, height, width, channels)")
    channels = int(shape[-1])
    mode = str(stored.get("resize", "auto"))
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    elif shape[1] is not None and shape[2] is not None:
        size = (int(shape[1]), int(shape[2]))
    elif stored.get("image_size"):
        stored_size = stored["image_size"]
        size = ((stored_size, stored_size) if isinstance(stored_size, int)
                else tuple(int(v) for v in stored_size))
    else:
        size = None
    if size is not None and shape[1] is not None and (shape[1], shape[2]) != tuple(size):
        raise ConfigError(f"image size {size[0]}x{size[1]} does not fit this model, which takes "
                          f"{shape[1]}x{shape[2]} inputs; leave out --image-size")
    return size, channels, mode


def predict(
    model_path: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overlay: bool = False,
    threshold: float | None = None,
    image_size: int | Sequence[int] | None = None,
    overlap: float | None = None,
    masks: str | os.PathLike[str] | None = None,
    tta: bool | None = None,
    postprocess: bool = True,
) -> list[Path]:
    """Write a mask PNG (and optionally an overlay) for every image, at the image's own size.

    Args:
        model_path: ``model.keras``, the export folder holding it, or a study folder; or the
            export's ``model.onnx`` / ``model.tflite`` (onnxruntime / LiteRT run it).
        images_dir: a folder of images (PNG, JPEG, TIFF, BMP, GIF), one image file, or a folder of
            case folders each holding ``images/`` with one image
            (``stage1_test/<id>/images/<id>.png``): the masks are then named by case (``<id>.png``).
        out_dir: folder for the results; created if needed. Existing files are never replaced.
        overlay: also write ``NAME_overlay.png``: image | prediction, every class in its colour,
            a legend with the class names (``data.class_names`` stored with the model).
        threshold: probability at or above which a pixel is foreground (one-class models);
            None: the threshold the export chose on the validation images (``threshold`` in
            ``hyperparameters.yaml``), else 0.5.
        image_size: size the model is fed (N or (H, W)); default: the model's input size, else the
            size in the stored config.
        overlap: in patch mode, the share neighbouring windows overlap (default: the stored
            ``data.overlap``, else 0.5).
        masks: a folder of the images' true masks (same names, or with a mask suffix such as
            ``_mask``): the overlays (implied) then add truth and errors panels and the image's
            score by the study's objective in the title.
        tta: test-time augmentation (the training augmentation's flips and rotations, averaged;
            :mod:`segsearch.tta`): None applies what the export chose on the validation images
            (``tta`` in ``hyperparameters.yaml``), True forces it, False turns it off.
        postprocess: apply the post-processing the export chose on the validation images
            (``postprocess`` in ``hyperparameters.yaml``; minimum sizes scaled to each image's
            resolution); False: the network's output as it is.

    Returns:
        The paths written, masks and overlays, in image order.

    Raises:
        ConfigError: no model there, or an image size the model cannot take.
        DataError: no images, or an unreadable one; with ``masks``, an image without a mask, or
            a mask that does not fit its image.
        SegsearchError: a file to be written exists already (nothing is written then).
    """
    if threshold is not None and not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must be between 0 and 1, got {threshold}")
    model_file = find_model(model_path)
    from segsearch.data.sources import case_images

    files = _image_files(Path(images_dir))
    cases = case_images(images_dir) if Path(images_dir).is_dir() else []
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; give a folder for --out")
    overlay = overlay or masks is not None
    names = [name for name, _ in cases] if cases else [f.stem for f in files]
    mask_files = _mask_files(files, Path(masks), names) if masks is not None else None
    targets = _targets(files, out, overlay, names if cases else None)
    existing = [p for pair in targets for p in pair if p is not None and p.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise SegsearchError(f"{existing[0]}{more} exists already and is kept; give an empty or "
                             "new --out folder, or move those files away")

    from segsearch import postprocess as postprocess_mod
    from segsearch import tta as tta_mod
    from segsearch.data.dataset import fit_channels, to_float
    from segsearch.data.sources import read_array
    from segsearch.export import overlay_figure

    model = _load(model_file)
    stored_config = _stored_config(model_file)
    stored = dict(stored_config.get("data") or {})
    data = _data_config(stored_config)
    size, channels, mode = _model_settings(model, stored, image_size)
    num_classes = int(model.output_shape[-1])
    truths = _true_masks(mask_files, data, num_classes) if mask_files is not None else None
    scale = float(stored.get("scale", 1.0) or 1.0)
    overlap = float(stored.get("overlap", 0.5) if overlap is None else overlap)
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap must be at least 0 and below 1, got {overlap}")
    transforms, rules, threshold = _choices(model_file, model, stored_config, tta, postprocess,
                                            threshold)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for file, truth, mask_file in zip(files, truths or (), mask_files or ()):
        height, width = _image_size(file)
        if truth.shape[:2] != (height, width):  # found before anything is written
            raise DataError(f"{mask_file}: the mask is {truth.shape[0]}x{truth.shape[1]} but "
                            f"{file.name} is {height}x{width} (height x width); give each image "
                            "its own mask (--masks)")
    for i, (file, (mask_path, overlay_path)) in enumerate(zip(files, targets)):
        raw = read_array(file)
        truth = truths[i] if truths is not None else None
        x = fit_channels(to_float(raw, str(file)), channels)
        probabilities = tta_mod.predict(
            lambda image: _predict_probabilities(model, image, size, mode, scale, overlap), x,
            transforms)
        mask, ids = _mask(probabilities, threshold)
        if rules:
            fed = _fed_size(x.shape[:2], size, mode, scale)[0]
            ids = postprocess_mod.apply(ids, rules, data.background,
                                        area_scale=x.shape[0] * x.shape[1] / (fed[0] * fed[1]))
            mask = _mask_of(ids, probabilities.shape[-1])
        _write_png(mask_path, mask)
        written.append(mask_path)
        if overlay_path is not None:
            figure = overlay_figure(
                fit_channels(to_float(raw, str(file)), 3), ids, truth, name=file.name,
                num_classes=num_classes, background=data.background,
                class_names=data.class_names, objective=_objective(stored_config))
            _write_png(overlay_path, np.asarray(figure))
            written.append(overlay_path)
    return written


def _load(model_file: Path) -> Any:
    """Load a .keras model in safe mode (segsearch's losses and metrics registered first); an
    .onnx or .tflite model through its runtime (segsearch.formats)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if model_file.suffix in RUNTIME_SUFFIXES:
        return load_runtime(model_file)
    import keras

    import segsearch.losses  # noqa: F401  (registers the serializable losses)
    import segsearch.metrics  # noqa: F401  (registers the serializable metrics)

    try:
        return keras.saving.load_model(model_file, compile=False, safe_mode=True)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"{model_file}: cannot load the model ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); export it again with "
                          "`segsearch export STUDY_DIR`") from None
