"""segsearch: find the best semantic-segmentation network for your images and masks.

Importing the package is cheap: TensorFlow and Keras are imported only when a model, a search or
the data pipeline needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"
