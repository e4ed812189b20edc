"""Generated thin-structure images for the patch / sliding-window tests: random lines one to three
pixels wide on a smooth texture, at sizes no power of two divides (300x340 by default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def thin_lines(n: int, size: tuple[int, int] = (300, 340), seed: int = 0,
               lines: int = 6) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` uint8 grey images and their 0/1 masks (1 = line pixel).

    Args:
        n: how many images.
        size: (height, width).
        seed: seed of everything.
        lines: straight lines per image, each 1-3 pixels wide at a random angle.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    images, masks = [], []
    for _ in range(n):
        coarse = rng.normal(0.0, 1.0, (h // 20 + 2, w // 20 + 2))
        texture = np.kron(coarse, np.ones((20, 20)))[:h, :w]
        mask = np.zeros((h, w), bool)
        for _ in range(lines):
            y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
            angle = rng.uniform(0, np.pi)
            width = int(rng.integers(1, 4))
            distance = np.abs((yy - y0) * np.cos(angle) - (xx - x0) * np.sin(angle))
            mask |= distance < width / 2.0
        noise = rng.normal(0.0, 6.0, (h, w))
        image = np.clip(90 + 20 * texture + 90 * mask + noise, 0, 255).astype(np.uint8)
        images.append(image)
        masks.append(mask.astype(np.uint8))
    return images, masks


def write_thin_lines(root: Path, n: int, size: tuple[int, int] = (300, 340),
                     seed: int = 0) -> Path:
    """A data folder (``images/NAME.png``, ``masks/NAME.png`` with 0/255) of ``thin_lines``."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    images, masks = thin_lines(n, size, seed)
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        Image.fromarray(mask * np.uint8(255)).save(root / "masks" / f"{i}.png")
    return root
