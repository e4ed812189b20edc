"""segsearch.data: read image/mask folders of every common kind, check them, split them, feed a
model.

Public API:

- :class:`DataConfig`: where the data is and how to prepare it (frozen, validated when built).
- :func:`load` ``(config, split=None) -> Splits(train, val, info, split)``: x float32 (N, H, W, C)
  in [0, 1], y float32 (N, H, W, 1) class ids with -1 for ignored pixels.
- :func:`batches` ``(part, batch_size, *, augment=None, shuffle=True, seed=0, repeat=False)``:
  what ``model.fit`` takes (tf.data under TensorFlow, a keras PyDataset under JAX / PyTorch).
- :func:`check` ``(path, **options) -> Report``: the ``segsearch data check DIR`` report.
- :class:`Augment`, :func:`make_sample` (the built-in SYNTHETIC sample).

Importing this package imports neither TensorFlow nor Keras; ``batches`` does, lazily.

Example:
    >>> from segsearch.data import DataConfig, load, batches
    >>> splits = load(DataConfig(source="data/membrane", image_size=(256, 256)))
    >>> model.fit(batches(splits.train, 8, augment=1.0),
    ...           validation_data=batches(splits.val, 8, shuffle=False))
"""

from __future__ import annotations

from segsearch.data.augment import Augment
from segsearch.data.check import Report, check
from segsearch.data.config import DataConfig
from segsearch.data.dataset import Part, Splits, load
from segsearch.data.pipeline import batches
from segsearch.data.sample import make_sample

__all__ = ["Augment", "DataConfig", "Part", "Report", "Splits", "batches", "check", "load",
           "make_sample"]
