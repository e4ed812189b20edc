"""Fixtures of tests/data: write tiny image/mask folders into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datahelpers import write_image


@pytest.fixture
def folder(tmp_path):
    """Factory: a data folder with images/ + masks/ from lists of arrays.

    Example:
        root = folder(images, masks, image_ext=".jpg", mask_ext=".png", mask_scale=255)
    """

    def make(images, masks, *, image_ext=".png", mask_ext=".png", mask_scale=1, names=None,
             suffix="", root=None):
        root = Path(root or tmp_path / "data")
        for i, (img, msk) in enumerate(zip(images, masks)):
            stem = names[i] if names else f"{i}"
            write_image(root / "images" / f"{stem}{image_ext}", img)
            m = (
                msk
                if mask_scale == 1
                else (msk.astype(np.int64) * mask_scale).astype(
                    msk.dtype if msk.dtype != np.uint8 or mask_scale <= 255 else np.uint16
                )
            )
            write_image(root / "masks" / f"{stem}{suffix}{mask_ext}", m)
        return root

    return make
