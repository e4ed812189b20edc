"""segsearch: find the best semantic-segmentation network for your images and masks.

Importing the package is cheap: TensorFlow and Keras are imported only when a model, a search or
the data pipeline needs them. ``segsearch.run`` and ``segsearch.Study`` load the driver on first
use.

Example:
    >>> import segsearch
    >>> results = segsearch.run("unet", trials=2, epochs=1, image_size=32)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# TensorFlow 2.21's oneDNN CPU kernels for AVX-512 corrupt the heap on some CPUs (seen on AMD EPYC
# with AVX512_BF16): training a 1x1 convolution of stride 2 (the shortcuts of ResUNet and ResNet50)
# aborts with "double free or corruption" or a segmentation fault once the batch size changes. With
# oneDNN capped at AVX2 the same networks train correctly, and measured here as fast (U-Net and
# ResUNet at 128x128: 20.7 and 20.2 images/s against 21.5 and 19.9). oneDNN reads this on its first
# operation, so it holds even when TensorFlow was imported first. Set ONEDNN_MAX_CPU_ISA yourself
# (e.g. to DEFAULT) to choose otherwise. GPUs do not use these kernels.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

if TYPE_CHECKING:  # for type checkers; at run time they load on first use (__getattr__)
    from segsearch.driver import Results, Study, run

__version__ = "0.1.0"
__all__ = ["run", "Study", "Results", "__version__"]

_LAZY = {"run": "segsearch.driver", "Study": "segsearch.driver", "Results": "segsearch.driver"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segsearch' has no attribute {name!r}")
