"""Augmentation that moves an image and its mask together, in NumPy alone (no TensorFlow).

Every geometric step (flips, 90-degree rotations, random scale and crop, the U-Net paper's elastic
deformation) is folded into ONE map from output pixels to source coordinates; the image is then read
through that map with bilinear interpolation and the mask with nearest-neighbour, both with mirrored
borders. Image and mask therefore always line up, and a mask never gains a class id it did not have
(ignored pixels, -1, stay -1). Brightness and contrast change the image only.

Example:
    >>> aug = Augment(strength=0.5)                       # half the default magnitudes
    >>> xb, yb = apply(x[:8], y[:8], aug, np.random.default_rng(0))
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segsearch.errors import ConfigError, unknown_name

__all__ = ["Augment", "apply", "batch_params", "transform"]


@dataclass(frozen=True)
class Augment:
    """How strongly training batches are augmented; ``strength`` scales every magnitude, 0 is off.

    Args:
        strength: multiplies ``scale``, ``brightness``, ``contrast`` and ``elastic``; 0 turns all
            augmentation off (flips and rotations too). May be a searched hyperparameter (0..4).
        flip: random horizontal and vertical flips.
        rotate90: random rotations by multiples of 90 degrees (only 180 for non-square sizes).
        scale: random zoom range at strength 1: a factor drawn log-uniformly from
            [1 / (1 + scale), 1 + scale], with a random crop position.
        brightness: random offset added to the image, drawn from [-brightness, brightness].
        contrast: random factor around the image mean, drawn from [1 - contrast, 1 + contrast].
        elastic: elastic deformation as in the U-Net paper: displacement vectors on a coarse
            ``elastic_grid`` x ``elastic_grid`` grid drawn with this standard deviation, as a
            fraction of the image side (0.02 is the paper's 10 pixels on a 512-pixel image), then
            interpolated to every pixel with cubic splines.
        elastic_grid: points per side of the coarse displacement grid (>= 2).

    Example:
        >>> Augment.from_config({"strength": 0.5, "elastic": 0})
        Augment(strength=0.5, flip=True, rotate90=True, scale=0.15, brightness=0.1, contrast=0.1,
                elastic=0.0, elastic_grid=3)
    """

    strength: float = 1.0
    flip: bool = True
    rotate90: bool = True
    scale: float = 0.15
    brightness: float = 0.1
    contrast: float = 0.1
    elastic: float = 0.02
    elastic_grid: int = 3

    def __post_init__(self) -> None:
        where = "data.augment"
        for name in ("strength", "scale", "brightness", "contrast", "elastic"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value)):
                raise ConfigError(f"{where}.{name}: expected a number >= 0, got {value!r}")
            if value < 0:
                raise ConfigError(f"{where}.{name}: must be >= 0, got {value!r}; use "
                                  "0 to turn it off")
            object.__setattr__(self, name, float(value))
        if self.strength > 4:
            raise ConfigError(f"{where}.strength: must be between 0 and 4, got {self.strength!r}")
        if self.contrast * self.strength >= 1:
            raise ConfigError(
                f"{where}.contrast: contrast x strength must stay below 1 (a factor in [1-c, "
                f"1+c]), got contrast={self.contrast} with strength={self.strength}"
            )
        for name in ("flip", "rotate90"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{where}.{name}: expected true or false, got "
                                  f"{getattr(self, name)!r}")
        if (isinstance(self.elastic_grid, bool) or not isinstance(self.elastic_grid, int)
                or self.elastic_grid < 2):
            raise ConfigError(f"{where}.elastic_grid: expected an integer >= 2, got "
                              f"{self.elastic_grid!r}")

    @property
    def enabled(self) -> bool:
        """True when this augmentation changes anything at all."""
        if self.strength <= 0:
            return False
        return bool(self.flip or self.rotate90 or self.scale or self.brightness or self.contrast
                    or self.elastic)

    @classmethod
    def from_config(cls, value: Any, where: str = "data.augment") -> Augment:
        """Build an Augment from a config value.

        Args:
            value: None, False or 0 (off); True (the default); a number (the strength); a mapping of
                fields (``{"strength": 0.5, "elastic": 0}``); or an Augment.
            where: location used in error messages.

        Example:
            >>> Augment.from_config(0).enabled
            False
        """
        if isinstance(value, Augment):
            return value
        if value is None or value is False:
            return cls(strength=0.0)
        if value is True:
            return cls()
        if isinstance(value, (int, float)):
            return cls(strength=float(value))
        if isinstance(value, Mapping):
            names = [f.name for f in dataclasses.fields(cls)]
            for key in value:
                if key not in names:
                    raise ConfigError(unknown_name("augmentation option", key, names, where))
            return cls(**dict(value))
        raise ConfigError(
            f"{where}: expected a strength (number), true/false or a mapping of "
            f"options, got {value!r}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------
# Coordinate maps


@functools.lru_cache(maxsize=64)
def _spline_matrix(n: int, grid: int) -> np.ndarray:
    """(n, grid) matrix that interpolates ``grid`` evenly spaced values to ``n`` pixels.

    The basis of a natural cubic spline (zero second derivative at both ends) through knots at
    ``linspace(0, n - 1, grid)``, the same as ``scipy.interpolate.CubicSpline(...,
    bc_type="natural")`` applied to the identity, in NumPy: row ``i`` holds the weights of the grid
    values at pixel ``i``.
    """
    if grid < 2:
        raise ValueError(f"a spline needs at least 2 knots, got {grid}")
    x = np.arange(n, dtype=np.float64)
    if n == 1 or grid == 2:  # a straight line (n == 1: the one pixel sits on the first knot)
        t = x / max(n - 1.0, 1.0)
        return np.ascontiguousarray(np.stack([1.0 - t, t], axis=1)[:, :grid], dtype=np.float32)
    h = (n - 1.0) / (grid - 1)
    # Second derivatives m at the inner knots solve m[i-1] + 4 m[i] + m[i+1] = 6/h^2 (second
    # difference of the values); m = 0 at both ends. With the identity as values, M = A^-1 D.
    inner = grid - 2
    a = 4.0 * np.eye(inner) + np.eye(inner, k=1) + np.eye(inner, k=-1)
    d = np.zeros((inner, grid))
    for i in range(inner):
        d[i, i:i + 3] = (1.0, -2.0, 1.0)
    m = np.zeros((grid, grid))
    m[1:-1] = np.linalg.solve(a, d) * (6.0 / (h * h))
    seg = np.minimum((x / h).astype(int), grid - 2)
    t = x / h - seg
    rows = np.arange(n)
    basis = np.zeros((n, grid))
    basis[rows, seg] += 1.0 - t
    basis[rows, seg + 1] += t
    c0 = (h * h / 6.0) * ((1.0 - t) ** 3 - (1.0 - t))
    c1 = (h * h / 6.0) * (t ** 3 - t)
    basis += c0[:, None] * m[seg] + c1[:, None] * m[seg + 1]
    return np.ascontiguousarray(basis, dtype=np.float32)


def _fold(coord: np.ndarray, size: int) -> np.ndarray:
    """Mirror continuous coordinates into [-0.5, size - 0.5] (about the pixel edges, so edge pixels
    repeat); one reflection a side, then a clip for anything further out."""
    lo, hi = float(coord.min()), float(coord.max())
    edge_lo, edge_hi = np.float32(-0.5), np.float32(size - 0.5)
    if lo >= edge_lo and hi <= edge_hi:
        return coord
    out = coord
    if lo < edge_lo:
        out = np.abs(out - edge_lo) + edge_lo
    if hi > edge_hi or lo < edge_lo:
        out = edge_hi - np.abs(edge_hi - out)
    return np.clip(out, edge_lo, edge_hi, out=out)


def _params(
    n: int, out_hw: tuple[int, int], src_hw: Sequence[tuple[int, int]], aug: Augment | None,
    rng: np.random.Generator, random_crop: bool, centers: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Draw the random parameters of ``n`` items (drawn in a fixed order, so seeds reproduce)."""
    h, w = out_hw
    on = aug is not None and aug.enabled
    s = aug.strength if on else 0.0
    src = np.asarray(src_hw, dtype=np.float64).reshape(n, 2)
    p: dict[str, np.ndarray] = {}
    p["flip_y"] = (rng.random(n) < 0.5) if on and aug.flip else np.zeros(n, bool)
    p["flip_x"] = (rng.random(n) < 0.5) if on and aug.flip else np.zeros(n, bool)
    if on and aug.rotate90:
        p["rot"] = rng.integers(0, 4, n) if h == w else 2 * rng.integers(0, 2, n)
    else:
        p["rot"] = np.zeros(n, int)
    if on and aug.scale > 0:
        top = math.log1p(aug.scale * s)
        p["zoom"] = np.exp(rng.uniform(-top, top, n))
    else:
        p["zoom"] = np.ones(n)
    # Where the (zoomed) window sits in the source: uniformly anywhere it fits when random.
    window = np.stack([np.full(n, h), np.full(n, w)], axis=1) / p["zoom"][:, None]
    lo = (window - 1.0) / 2.0
    hi = src - 1.0 - lo
    if random_crop or (on and aug.scale > 0):
        u = rng.random((n, 2))
        p["center"] = np.minimum(lo, hi) + u * np.abs(hi - lo)
        if centers is not None:  # foreground-centred patches: as close as the window fits
            chosen = np.all(np.isfinite(centers), axis=1)
            p["center"][chosen] = np.clip(centers[chosen], np.minimum(lo, hi)[chosen],
                                          np.maximum(lo, hi)[chosen])
        # Unzoomed windows start on whole pixels, so a plain random crop copies pixels exactly.
        plain = p["zoom"] == 1
        out_half = (np.array([h, w], np.float64) - 1) / 2.0
        p["center"][plain] = np.round(p["center"][plain] - out_half) + out_half
    else:
        p["center"] = (src - 1.0) / 2.0
    if on and aug.elastic > 0:
        g = aug.elastic_grid
        p["elastic"] = rng.normal(0.0, aug.elastic * s, (n, 2, g, g)).astype(np.float32)
    if on and aug.brightness > 0:
        p["brightness"] = rng.uniform(-aug.brightness * s, aug.brightness * s, n).astype(np.float32)
    if on and aug.contrast > 0:
        p["contrast"] = (1 + rng.uniform(-aug.contrast * s, aug.contrast * s, n)).astype(np.float32)
    return p


def _coordinates(
    n: int, out_hw: tuple[int, int], p: dict[str, np.ndarray], aug: Augment | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Source row and column coordinates (n, h, w) of every output pixel."""
    h, w = out_hw
    v = np.arange(h, dtype=np.float32) - (h - 1) / 2.0
    u = np.arange(w, dtype=np.float32) - (w - 1) / 2.0
    ys = np.broadcast_to(v[None, :, None], (n, h, w)).astype(np.float32)
    xs = np.broadcast_to(u[None, None, :], (n, h, w)).astype(np.float32)
    if "elastic" in p:
        side = float(max(h, w))
        g = aug.elastic_grid
        mh, mw = _spline_matrix(h, g), _spline_matrix(w, g)
        field = p["elastic"] * side
        ys = ys + np.einsum("hg,ngk,wk->nhw", mh, field[:, 0], mw, optimize=True)
        xs = xs + np.einsum("hg,ngk,wk->nhw", mh, field[:, 1], mw, optimize=True)
    fy = np.where(p["flip_y"], -1.0, 1.0).astype(np.float32)[:, None, None]
    fx = np.where(p["flip_x"], -1.0, 1.0).astype(np.float32)[:, None, None]
    ys, xs = ys * fy, xs * fx
    rot = p["rot"]
    if np.any(rot):
        k = rot[:, None, None]
        ry = np.where(k == 0, ys, np.where(k == 1, xs, np.where(k == 2, -ys, -xs)))
        rx = np.where(k == 0, xs, np.where(k == 1, -ys, np.where(k == 2, -xs, ys)))
        ys, xs = ry, rx
    zoom = p["zoom"].astype(np.float32)[:, None, None]
    center = p["center"].astype(np.float32)
    ys = ys / zoom + center[:, 0, None, None]
    xs = xs / zoom + center[:, 1, None, None]
    return ys, xs


def _index_dtype(flat: np.ndarray) -> type:
    return np.int32 if len(flat) < 2**31 - 1 else np.int64


def _gather_bilinear(
    flat: np.ndarray, base: np.ndarray, ys: np.ndarray, xs: np.ndarray, hw: tuple[int, int],
) -> np.ndarray:
    """Bilinear read of ``flat`` ((items*H*W, C)) at folded (ys, xs).

    ``base`` holds each item's first index.
    """
    H, W = hw
    it = _index_dtype(flat)
    y0f = np.floor(ys)
    x0f = np.floor(xs)
    wy = ys - y0f
    wx = xs - x0f
    y0 = y0f.astype(it)
    x0 = x0f.astype(it)
    ya = np.maximum(y0, 0) * it(W)
    yb = np.minimum(y0 + 1, H - 1) * it(W)
    xa = np.maximum(x0, 0)
    xb = np.minimum(x0 + 1, W - 1)
    b = base.astype(it)[:, None, None]
    ra, rb = ya + b, yb + b
    if flat.shape[1] == 1:
        f = flat[:, 0]
        top = f.take(ra + xa)
        top += (f.take(ra + xb) - top) * wx
        bottom = f.take(rb + xa)
        bottom += (f.take(rb + xb) - bottom) * wx
        top += (bottom - top) * wy
        return top[..., None].astype(np.float32, copy=False)
    wx, wy = wx[..., None], wy[..., None]
    top = flat.take(ra + xa, axis=0)
    top += (flat.take(ra + xb, axis=0) - top) * wx
    bottom = flat.take(rb + xa, axis=0)
    bottom += (flat.take(rb + xb, axis=0) - bottom) * wx
    top += (bottom - top) * wy
    return top.astype(np.float32, copy=False)


def _gather_nearest(
    flat: np.ndarray, base: np.ndarray, ys: np.ndarray, xs: np.ndarray, hw: tuple[int, int],
) -> np.ndarray:
    """Nearest-neighbour read of ``flat`` at folded (ys, xs)."""
    H, W = hw
    it = _index_dtype(flat)
    yi = np.clip(np.floor(ys + np.float32(0.5)).astype(it), 0, H - 1)
    xi = np.clip(np.floor(xs + np.float32(0.5)).astype(it), 0, W - 1)
    return flat.take(base.astype(it)[:, None, None] + yi * it(W) + xi, axis=0)


def _photometric(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """Contrast around each image's mean, then brightness, clipped to [0, 1]."""
    if "contrast" not in p and "brightness" not in p:
        return x
    if "contrast" in p:
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * p["contrast"][:, None, None, None] + mean
    if "brightness" in p:
        x = x + p["brightness"][:, None, None, None]
    return np.clip(x, 0.0, 1.0, out=x)


def batch_params(
    src_hw: Sequence[tuple[int, int]], out_hw: tuple[int, int], aug: Augment | None,
    rng: np.random.Generator, *, offsets: np.ndarray | None = None, random_crop: bool = False,
    centers: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The random parameters of one batch, as :func:`transform` draws them (same rng calls).

    Keys: ``flip_y``, ``flip_x``, ``rot`` (quarter turns), ``zoom``, ``center`` (source row, col of
    each window's centre), and where enabled ``elastic`` (n, 2, grid, grid), ``brightness``,
    ``contrast``. ``segsearch.data.device`` applies them on the accelerator.

    Args:
        src_hw: each item's source (height, width).
        out_hw: the (h, w) of the batch.
        aug: the augmentation, or None for none.
        rng: the random generator of this batch.
        offsets: see :func:`transform`.
        random_crop: see :func:`transform`.
        centers: see :func:`transform`.
    """
    n = len(src_hw)
    h, w = out_hw
    p = _params(n, out_hw, src_hw, aug, rng, random_crop,
                None if centers is None else np.asarray(centers, np.float64).reshape(n, 2))
    if offsets is not None and not random_crop:
        p["center"] = np.asarray(offsets, np.float64).reshape(n, 2) + (np.array([h, w]) - 1) / 2.0
    return p


def transform(
    images: np.ndarray | Sequence[np.ndarray],
    masks: np.ndarray | Sequence[np.ndarray],
    indices: Sequence[int],
    out_hw: tuple[int, int],
    aug: Augment | None,
    rng: np.random.Generator,
    *,
    offsets: np.ndarray | None = None,
    random_crop: bool = False,
    centers: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch out of source arrays through random (or identity) coordinate maps.

    Args:
        images: a (N, H, W, C) float32 array, or a list of (H_i, W_i, C) arrays of any sizes.
        masks: the matching (N, H, W, 1) / list of (H_i, W_i, 1) float32 class ids (-1 ignored).
        indices: which items form the batch, in order.
        out_hw: the (h, w) of the batch.
        aug: the augmentation, or None for none.
        rng: the random generator of this batch.
        offsets: (len(indices), 2) top-left corner of each item's window when not random (crop
            mode tiles); None puts the window at the centre of the source.
        random_crop: place each window anywhere in its source instead (patch mode, training).
        centers: with ``random_crop``, (len(indices), 2) source (row, col) to centre each window
            on (moved inwards as far as needed to fit), NaN rows for a random place.

    Returns:
        (x, y): float32 arrays (B, h, w, C) and (B, h, w, 1).
    """
    idx = np.asarray(indices, dtype=np.int64)
    n = len(idx)
    h, w = out_hw
    stacked = isinstance(images, np.ndarray)
    if stacked:
        src_hw = [images.shape[1:3]] * n
    else:
        src_hw = [images[i].shape[:2] for i in idx]
    p = batch_params(src_hw, out_hw, aug, rng, offsets=offsets, random_crop=random_crop,
                     centers=centers)
    ys, xs = _coordinates(n, out_hw, p, aug)
    identity = (
        "elastic" not in p and not np.any(p["flip_y"]) and not np.any(p["flip_x"])
        and not np.any(p["rot"]) and np.all(p["zoom"] == 1)
    )
    if stacked:
        H, W = images.shape[1:3]
        starts = p["center"] - (np.array([h, w]) - 1) / 2.0
        if (identity and np.all(starts == np.round(starts)) and np.all(starts >= 0)
                and np.all(starts[:, 0] + h <= H) and np.all(starts[:, 1] + w <= W)):
            s = starts.astype(int)
            if H == h and W == w:
                x = images[idx].astype(np.float32, copy=True)
                y = masks[idx].astype(np.float32, copy=True)
            else:
                x = np.stack([images[i, a:a + h, b:b + w]
                              for i, (a, b) in zip(idx, s)]).astype(np.float32)
                y = np.stack([masks[i, a:a + h, b:b + w]
                              for i, (a, b) in zip(idx, s)]).astype(np.float32)
        else:
            flat_x = images.reshape(-1, images.shape[-1])
            flat_y = masks.reshape(-1, 1)
            base = idx * (H * W)
            ys, xs = _fold(ys, H), _fold(xs, W)
            x = _gather_bilinear(flat_x, base, ys, xs, (H, W))
            y = _gather_nearest(flat_y, base, ys, xs, (H, W)).astype(np.float32, copy=False)
    else:
        xs_out, ys_out = [], []
        zero = np.zeros(1, np.int64)
        for j, i in enumerate(idx):
            img, msk = images[i], masks[i]
            H, W = img.shape[:2]
            fx = img.reshape(-1, img.shape[-1])
            fy = msk.reshape(-1, 1)
            yj, xj = _fold(ys[j:j + 1], H), _fold(xs[j:j + 1], W)
            xs_out.append(_gather_bilinear(fx, zero, yj, xj, (H, W))[0])
            ys_out.append(_gather_nearest(fy, zero, yj, xj, (H, W))[0])
        x = np.stack(xs_out).astype(np.float32, copy=False)
        y = np.stack(ys_out).astype(np.float32, copy=False)
    x = _photometric(x, p)
    return x, y


def apply(
    x: np.ndarray, y: np.ndarray, aug: Augment | float | Mapping[str, Any] | None,
    rng: np.random.Generator | int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment a batch of images and masks of one size, with the same geometric map for both.

    Args:
        x: float32 images (B, H, W, C) in [0, 1].
        y: float32 masks (B, H, W, 1) of class ids (-1 ignored).
        aug: an Augment, or anything ``Augment.from_config`` takes.
        rng: a numpy Generator or a seed.

    Example:
        >>> xa, ya = apply(x, y, 1.0, rng=0)   # default augmentation, seed 0
    """
    aug = Augment.from_config(aug)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.float32)
    if x.ndim != 4 or y.shape != x.shape[:3] + (1,):
        raise ValueError(f"expected x (B, H, W, C) and y (B, H, W, 1), got {x.shape} and {y.shape}")
    return transform(x, y, range(len(x)), x.shape[1:3], aug, rng)
