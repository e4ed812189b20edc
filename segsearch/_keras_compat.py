"""The only place segsearch touches private names of Keras (``keras.src.*``; checked with keras
3.15.1 on tensorflow 2.21.0, whose private names segsearch does not use).

Low in the package: it imports nothing of segsearch but :mod:`segsearch.errors`, so ``blocks/``
may use it. Each function names the private name it needs; when one has moved it raises
:class:`~segsearch.errors.CompatError` naming the release and the fix, never a silent fallback.
``tests/engines/test_compat.py`` touches every name in :data:`PRIVATE_NAMES`.
"""

from __future__ import annotations

import importlib
from typing import Any

from segsearch.errors import library_moved

__all__ = ["CHECKED", "PRIVATE_NAMES", "keras_home", "notop_weights_hash", "resnet50_notop_md5"]

#: the keras release these names were checked with.
CHECKED = "3.15.1"
#: every private Keras name this module uses.
PRIVATE_NAMES: tuple[str, ...] = (
    "keras.src.backend.config.keras_home",
    "keras.src.applications.resnet.WEIGHTS_HASHES",
    "keras.src.applications.efficientnet.WEIGHTS_HASHES",
    "keras.src.applications.mobilenet_v3.WEIGHTS_HASHES",
)
#: the keras.applications modules whose ``WEIGHTS_HASHES`` segsearch reads (see PRIVATE_NAMES).
_HASH_MODULES: tuple[str, ...] = ("resnet", "efficientnet", "mobilenet_v3")
_HERE = "segsearch/_keras_compat.py"


def _private(module: str, attr: str, use: str) -> Any:
    """``module.attr``, or a CompatError naming it when Keras no longer has it."""
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise library_moved("keras", f"{module}.{attr}", use, CHECKED, _HERE) from None


def keras_home() -> str:
    """Keras' home folder: ``$KERAS_HOME``, else ``~/.keras`` (the cache of
    ``keras.utils.get_file`` and of the ``keras.applications`` weights is its ``models/``).

    Private name (keras 3.15.1): ``keras.src.backend.config.keras_home`` (no public one). If it
    moves, segsearch cannot tell where Keras looks for the cached ResNet50 ImageNet weights.
    """
    use = "find where Keras caches downloaded weights"
    return str(_private("keras.src.backend.config", "keras_home", use)())


def notop_weights_hash(module: str, key: str) -> str:
    """The hash Keras checks an ImageNet weights file without the top (``notop``) against.

    Private name (keras 3.15.1): ``keras.src.applications.<module>.WEIGHTS_HASHES`` (``module``:
    "resnet", "efficientnet" or "mobilenet_v3"; ``key`` e.g. "resnet101", "b0",
    "small_224_1.0_float"; each entry is (with top, without top)). If it moves, segsearch cannot
    check a cached weights file before Keras loads it.

    Example:
        >>> notop_weights_hash("resnet", "resnet50")
        '4d473c1dd8becc155b73f8504c6f6626'
    """
    if module not in _HASH_MODULES:  # pragma: no cover - programming error
        raise ValueError(f"unknown keras.applications module {module!r}")
    name = f"keras.src.applications.{module}"
    use = f"check the cached ImageNet weights file of keras.applications' {module}"
    hashes = _private(name, "WEIGHTS_HASHES", use)
    try:
        return str(hashes[key][1])
    except (KeyError, IndexError, TypeError):
        raise library_moved("keras", f'{name}.WEIGHTS_HASHES["{key}"][1]', use, CHECKED,
                            _HERE) from None


def resnet50_notop_md5() -> str:
    """The md5 Keras checks the ResNet50 ImageNet weights file without the top (``notop``) against.

    Private name (keras 3.15.1): ``keras.src.applications.resnet.WEIGHTS_HASHES`` (the
    ``"resnet50"`` entry: (with top, without top)). If it moves, segsearch cannot check a cached
    weights file before Keras loads it.
    """
    return notop_weights_hash("resnet", "resnet50")
