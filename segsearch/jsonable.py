"""One normaliser for everything segsearch writes as JSON or YAML: :func:`jsonable`.

It sits at the bottom of the package (it imports nothing of segsearch), so every layer may use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

__all__ = ["jsonable"]


def jsonable(value: Any, *, keep_nan: bool = False) -> Any:
    """``value`` as plain JSON/YAML data, recursively.

    Mappings become dicts with string keys; lists, tuples and sets become lists; paths become
    strings; a dataclass becomes its fields' dict; numpy (or any ``tolist()``) scalars and arrays
    become Python numbers and lists; NaN and infinities become None (unless ``keep_nan``); anything
    else becomes its ``str()``.

    Args:
        value: what to write.
        keep_nan: leave NaN and infinities as they are (YAML, and JSON lines that always had them).

    Example:
        >>> jsonable({"size": (32, 32), "loss": float("nan")})
        {'size': [32, 32], 'loss': None}
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, keep_nan=keep_nan) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, keep_nan=keep_nan) for v in value]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value), keep_nan=keep_nan)
    if not isinstance(value, (int, float)) and callable(getattr(value, "tolist", None)):
        return jsonable(value.tolist(), keep_nan=keep_nan)  # numpy scalars and arrays
    if isinstance(value, float):
        value = float(value)  # a float subclass (np.float64) as a plain float
        return None if not keep_nan and not math.isfinite(value) else value
    if isinstance(value, int):
        return int(value)
    return str(value)
