"""segsearch: find the best semantic-segmentation network for your images and masks.

Importing the package is cheap: TensorFlow and Keras are imported only when a model, a search or
the data pipeline needs them. ``segsearch.run`` and ``segsearch.Study`` load the driver on first use.

Example:
    >>> import segsearch
    >>> results = segsearch.run("unet", trials=2, epochs=1, image_size=32)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "Study", "Results", "__version__"]

_LAZY = {"run": "segsearch.driver", "Study": "segsearch.driver", "Results": "segsearch.driver"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segsearch' has no attribute {name!r}")
