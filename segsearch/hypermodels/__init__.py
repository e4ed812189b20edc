"""The hypermodels: one per architecture of the registry, found by one snake_case key.

The architectures, with their hyperparameters and presets, are declared once in
:mod:`segsearch.hypermodels.registry`. ``names()`` lists the keys, ``get(key, input_shape, ...)``
makes a hypermodel (a ``keras_tuner.HyperModel``), ``get_multi(keys, ...)`` one that also searches
the architecture, and ``for_config(config)`` the one a space file describes. Importing this package
is cheap: keras-tuner (and so TensorFlow) is imported when a hypermodel is made, not before.

Example:
    >>> import keras_tuner
    >>> from segsearch import hypermodels
    >>> hm = hypermodels.get("unet", (64, 64, 1), space={"filters": [8, 16], "depth": {"max": 3}})
    >>> tuner = keras_tuner.RandomSearch(hm, objective=keras_tuner.Objective("val_dice", "max"),
    ...                                  max_trials=2, directory="kt", project_name="demo")
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from segsearch.errors import ConfigError, unknown_name
from segsearch.hypermodels.registry import ARCHITECTURES, PRESETS, names, register, spec

if TYPE_CHECKING:  # pragma: no cover
    from segsearch.hypermodels.base import MultiArchitectureHyperModel, SegmentationHyperModel

__all__ = ["names", "get", "get_class", "get_multi", "for_config", "register", "ARCHITECTURES",
           "PRESETS"]

_BASE_CLASSES = ("SegmentationHyperModel", "MultiArchitectureHyperModel")


def get_class(name: str, where: str = "") -> type[SegmentationHyperModel]:
    """The hypermodel class registered under ``name``.

    Args:
        name: a registry key, e.g. "unet".
        where: prefix for the error message.

    Raises:
        ConfigError: unknown key (the message lists the keys and the closest one).
    """
    module, cls_name = spec(name, where=where).hypermodel.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    if cls.key != name:  # pragma: no cover - programming error
        raise ConfigError(f"{cls_name}.key is {cls.key!r} but it is registered as {name!r}")
    return cls


def get(
    name: str,
    input_shape: Sequence[int | None],
    num_classes: int | None = None,
    *,
    weights: Any = None,
    space: Mapping[str, Any] | None = None,
    where: str = "space",
    **options: Any,
) -> SegmentationHyperModel:
    """Make the hypermodel of one architecture.

    Args:
        name: registry key: "unet", "resunet", "resnet50_unet", "deeplabv3plus", "resblock_unet".
        input_shape: (H, W, C) of the images ((D, H, W, C) for a 3D resblock_unet).
        num_classes: 1 = binary (sigmoid), >= 2 = softmax; None = the preset's head.
        weights: None, "imagenet" or a weights file (resnet50_unet and deeplabv3plus only).
        space: overrides by hyperparameter name: scalar = fixed, list = choices, mapping = range
            ({min, max, step, sampling, default}) or {values, default} or {fixed}.
        where: prefix of error messages, e.g. "spaces/unet.yaml: space".
        **options: jit_compile (passed to compile), tunable, name (keras-tuner's), background
            (the class dice and iou leave out; None: none), class_weights (see
            ``SegmentationHyperModel``).

    Raises:
        ConfigError: unknown architecture, unknown hyperparameter name, bad space entry, or a
            space that freezes the encoder while weights is None.

    Example:
        >>> hm = get("deeplabv3plus", (128, 128, 3), space={"aspp_rates": ["3,6,9", "2,4,6"]})
    """
    cls = get_class(name, where=where)
    _check_options(options, where)
    return cls(input_shape, num_classes, weights=weights, space=space, where=where, **options)


def get_multi(
    keys: Sequence[str],
    input_shape: Sequence[int | None],
    num_classes: int | None = None,
    *,
    weights: Any = None,
    spaces: Mapping[str, Mapping[str, Any]] | None = None,
    where: str = "space",
    **options: Any,
) -> MultiArchitectureHyperModel:
    """Make a hypermodel that searches the architecture too (hp "architecture", "unet/depth", ...).

    Args:
        keys: the architectures to search, the first being the default.
        input_shape: (H, W, C) of the images.
        num_classes: 1 = binary, >= 2 = softmax; None = each architecture's preset head.
        weights: encoder weights, given to the architectures that have a ResNet50 encoder.
        spaces: per-architecture overrides, {key: {name: entry}}.
        where: prefix of error messages; an architecture's entries report as "<where>.<key>.<name>".
        **options: as for :func:`get`, given to every architecture.

    Example:
        >>> hm = get_multi(["unet", "resunet"], (64, 64, 1), spaces={"unet": {"depth": 3}})
    """
    from segsearch.hypermodels.base import MultiArchitectureHyperModel

    if isinstance(keys, str):
        keys = [keys]
    keys = list(keys)
    spaces = dict(spaces or {})
    for key in keys:
        get_class(key, where=where)
    for key in spaces:
        if key not in keys:
            raise ConfigError(unknown_name("architecture in spaces", key, keys, where=where)
                              + "; add it to the architectures or remove its space")
    _check_options(options, where)
    tunable = options.pop("tunable", True)
    name = options.pop("name", "auto")
    hms = [
        get(key, input_shape, num_classes,
            weights=weights if spec(key).takes_weights else None,
            space=spaces.get(key), where=f"{where}.{key}", **options)
        for key in keys
    ]
    return MultiArchitectureHyperModel(hms, where=where, tunable=tunable, name=name)


def for_config(
    config: Any,
    input_shape: Sequence[int | None] | None = None,
    num_classes: int | None = None,
    **options: Any,
) -> SegmentationHyperModel | MultiArchitectureHyperModel:
    """Make the hypermodel a space file's configuration searches (one architecture or several).

    The one factory behind ``Config.hypermodel()`` (which checks a space file) and the study's
    hypermodel (which knows the data's size and classes).

    Args:
        config: a :class:`segsearch.spacefile.Config`.
        input_shape: (H, W, C) of the images; default: data.image_size with data.channels (3 when
            the channels come from the data).
        num_classes: 1 = binary, >= 2 = softmax; default: data.num_classes (None = the preset's).
        **options: as for :func:`get` (jit_compile defaults to train.jit_compile).

    Raises:
        ConfigError: a ``space:`` entry does not fit the hypermodel ("FILE: space.NAME: ...").
    """
    if input_shape is None:
        height, width = config.data.image_size or (None, None)
        input_shape = (height, width, config.data.channels or 3)
    if num_classes is None:
        num_classes = config.data.num_classes
    options.setdefault("jit_compile", config.train.jit_compile)
    options.setdefault("class_weights", getattr(config.train, "class_weights", "none"))
    where = f"{config.source}: space"
    archs = list(config.architectures)
    if len(archs) == 1:
        return get(archs[0], input_shape, num_classes, weights=config.train.weights,
                   space=config.space_for(archs[0]), where=where, **options)
    return get_multi(archs, input_shape, num_classes, weights=config.train.weights,
                     spaces={a: config.space_for(a) for a in archs}, where=where, **options)


def _check_options(options: Mapping[str, Any], where: str) -> None:
    from segsearch.hypermodels.base import OPTIONS

    for key in options:
        if key not in OPTIONS:
            raise ConfigError(unknown_name("option", key, OPTIONS, where=where))


def __getattr__(attr: str) -> Any:
    """Lazy access to the classes, e.g. ``segsearch.hypermodels.UNetHyperModel``."""
    if attr in _BASE_CLASSES:
        return getattr(importlib.import_module("segsearch.hypermodels.base"), attr)
    for architecture in ARCHITECTURES.values():
        module, cls_name = architecture.hypermodel.split(":")
        if cls_name == attr:
            return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'segsearch.hypermodels' has no attribute {attr!r}")
