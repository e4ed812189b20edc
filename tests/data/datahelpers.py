"""Helpers of tests/data: write tiny image/mask files of any format (pillow / tifffile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_image(path: Path, arr: np.ndarray, **kwargs) -> Path:
    """Write ``arr`` to ``path`` in the format its extension names (pillow, or tifffile for TIFF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, arr, **kwargs)
        return path
    from PIL import Image

    if arr.dtype == np.uint16:
        img = Image.fromarray(arr)  # mode I;16
    else:
        img = Image.fromarray(arr)
    img.save(path, **kwargs)
    return path


def blobs(n: int, size: tuple[int, int] = (32, 32), num_classes: int = 2, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` uint8 grey images and matching class-id masks (rectangles of class 1..num_classes-1)."""
    rng = np.random.default_rng(seed)
    h, w = size
    images, masks = [], []
    for i in range(n):
        mask = np.zeros((h, w), np.uint8)
        for cls in range(1, num_classes):
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            mask[y0:y0 + h // 3, x0:x0 + w // 3] = cls
        image = (rng.integers(0, 60, (h, w)) + 60 * mask).clip(0, 255).astype(np.uint8)
        images.append(image)
        masks.append(mask)
    return images, masks


