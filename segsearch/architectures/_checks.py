"""Argument and input-size checks shared by the builders (raised before any layer is created)."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from segsearch.errors import ConfigError, InfeasibleError

Shape = Sequence[Any]


def as_int(value: Any) -> int | None:
    """Return ``value`` as a Python int when it is an integer (numpy ints too, not bools).

    Anything else gives None.
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def check_input_shape(
    arch: str, input_shape: Shape, *, allow_3d: bool = False
) -> tuple[int | None, ...]:
    """Validate ``input_shape`` and return its spatial dims.

    ``input_shape`` is (H, W, C), or (D, H, W, C) when allowed.
    """
    try:
        dims = tuple(input_shape)
    except TypeError:
        raise ConfigError(
            f"{arch}: input_shape must be a tuple like (256, 256, 3), got {input_shape!r}"
        ) from None
    if len(dims) not in ((3, 4) if allow_3d else (3,)):
        expected = "(H, W, C) or (D, H, W, C)" if allow_3d else "(H, W, C)"
        hint = "" if allow_3d else "; 3D volumes (D, H, W, C) work with resblock_unet"
        raise InfeasibleError(
            f"{arch}: input_shape must be {expected}, got {dims} ({len(dims)} dimensions){hint}"
        )
    *spatial, channels = dims
    channels = as_int(channels)
    if channels is None or channels < 1:
        raise ConfigError(
            f"{arch}: the channel count (last entry of input_shape) must be a positive int, "
            f"got {dims}"
        )
    checked: list[int | None] = []
    for d in spatial:
        value = None if d is None else as_int(d)
        if d is not None and (value is None or value < 1):
            raise ConfigError(
                f"{arch}: input sizes must be positive ints or None, got input_shape={dims}"
            )
        checked.append(value)
    return tuple(checked)


def check_depth(
    arch: str, depth: Any, low: int, high: int | None = None, what: str = "depth"
) -> int:
    """Return ``depth`` as an int in [low, high], or raise ConfigError."""
    value = as_int(depth)
    if value is None:
        raise ConfigError(f"{arch}: {what} must be an int, got {depth!r}")
    depth = value
    if depth < low or (high is not None and depth > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{arch}: {what} must be {allowed}, got {depth}")
    return depth


def _fmt(spatial: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in spatial)


def check_divisible(
    arch: str,
    spatial: Sequence[int | None],
    depth: int,
    *,
    min_depth: int = 1,
    what: str = "depth",
) -> None:
    """Raise InfeasibleError when a known spatial size is not divisible by the stride 2**depth.

    2**depth is the total stride. The message names the size, depth and stride, and suggests sizes
    divisible by the stride and the largest depth that this size allows.
    """
    stride = 2**depth
    bad = [d for d in spatial if d is not None and d % stride]
    if not bad:
        return
    d = bad[0]
    below = (d // stride) * stride
    above = below + stride
    such_as = f"{below} or {above}" if below > 0 else f"{above} or {above + stride}"
    known = [s for s in spatial if s is not None]
    best = 0
    for k in range(depth - 1, 0, -1):
        if all(s % 2**k == 0 for s in known):
            best = k
            break
    if best >= min_depth:
        smaller = f", or a smaller {what} (at most {best} for {_fmt(spatial)})"
    else:
        smaller = ""
    if stride > 8192:  # no image of a sensible size would do (segsearch reads up to 8192 a side)
        fix = (f"use a smaller {what} (at most {best} for {_fmt(spatial)})" if best >= min_depth
               else f"use a smaller {what} and an input size divisible by 2**{what}")
        raise InfeasibleError(
            f"{arch}: input size {_fmt(spatial)} is smaller than the total stride {stride} "
            f"(2**{what} with {what}={depth}); {fix}"
        )
    raise InfeasibleError(
        f"{arch}: input size {_fmt(spatial)} is not divisible by {stride} (the total stride "
        f"2**{what} with {what}={depth}); use an input size divisible by {stride}, such as "
        f"{such_as}{smaller}"
    )


def parse_rates(arch: str, rates: Any) -> tuple[int, ...]:
    """Return ASPP rates as a tuple of distinct positive ints (accepts "6,12,18" and sequences)."""
    if rates is None:
        return ()
    if isinstance(rates, str):
        parts = [p.strip() for p in rates.replace(";", ",").split(",") if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(
                f"{arch}: aspp_rates must be comma-separated integers like '6,12,18', got {rates!r}"
            ) from None
    else:
        try:
            values = list(rates)
        except TypeError:
            raise ConfigError(
                f"{arch}: aspp_rates must be a list of ints or '6,12,18', got {rates!r}"
            ) from None
        if any(as_int(v) is None for v in values):
            raise ConfigError(f"{arch}: aspp_rates must be integers, got {rates!r}")
        values = [as_int(v) for v in values]
    if any(v < 1 for v in values):
        raise ConfigError(f"{arch}: aspp_rates must be >= 1, got {rates!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{arch}: aspp_rates must be distinct, got {rates!r}")
    return tuple(int(v) for v in values)


def _suggest_rates(limit: int) -> str:
    picks = sorted({max(1, round(limit * k / 4)) for k in (1, 2, 3)} - {0})
    picks = [p for p in picks if p < limit]
    return ", ".join(str(p) for p in picks)


def check_aspp(
    arch: str,
    spatial: Sequence[int | None],
    depth: int,
    rates: Sequence[int],
    image_pooling: bool,
    *,
    min_depth: int,
) -> None:
    """Raise InfeasibleError when the ASPP cannot work on the feature map at stride 2**depth.

    An atrous rate >= the feature-map size puts every off-centre tap of the 3x3 kernel in the
    padding, so that branch would be a 1x1 convolution in disguise; the image-pooling branch needs a
    map of at least 1x1 and a fixed size.
    """
    stride = 2**depth
    if any(d is None for d in spatial):
        raise InfeasibleError(
            f"{arch}: the ASPP needs a fixed input size (its pooling window and its rates depend "
            f"on the feature-map size), got {_fmt(spatial)}; give input_shape with known height "
            "and width"
        )
    fmap = [d // stride for d in spatial]
    if min(fmap) < 1:
        raise InfeasibleError(
            f"{arch}: input {_fmt(spatial)} gives a feature map smaller than 1x1 at the ASPP input "
            f"(stride {stride}); use an input of at least {stride}x{stride} or a smaller depth"
        )
    size = min(fmap)
    bad = [r for r in rates if r >= size]
    if bad:
        need = (max(rates) + 1) * stride
        suggestion = _suggest_rates(size)
        rates_hint = (
            f"rates below {size} (e.g. {suggestion})"
            if suggestion
            else "no atrous rates (aspp_rates=())"
        )
        smaller = f", or a smaller depth (down to {min_depth})" if depth > min_depth else ""
        raise InfeasibleError(
            f"{arch}: ASPP rate(s) {', '.join(map(str, bad))} >= the {_fmt(fmap)} feature map at "
            f"the ASPP input (input {_fmt(spatial)}, stride {stride}, depth={depth}): every "
            f"off-centre tap would read padding. Use {rates_hint}, an input of at least "
            f"{need}x{need}{smaller}"
        )


def level_filters(
    arch: str,
    base: Any,
    growth: Any,
    count: int,
    stackwise: Sequence[int] | None = None,
    *,
    what: str = "filters",
    stackwise_name: str = "stackwise_filters",
) -> list[int]:
    """Return ``count`` widths: ``round(base * growth**i)`` or the ``stackwise`` list when given."""
    if stackwise is not None:
        values = list(stackwise)
        if len(values) != count:
            raise ConfigError(
                f"{arch}: {stackwise_name} needs {count} entries, got {len(values)}: {values}"
            )
        if any(as_int(v) is None or v < 1 for v in values):
            raise ConfigError(f"{arch}: {stackwise_name} must be positive ints, got {values}")
        return [int(v) for v in values]
    if as_int(base) is None or base < 1:
        raise ConfigError(f"{arch}: {what} must be a positive int, got {base!r}")
    base = as_int(base)
    try:
        growth = float(growth)
    except (TypeError, ValueError):
        raise ConfigError(f"{arch}: filter_growth must be a number > 0, got {growth!r}") from None
    if not math.isfinite(growth) or growth <= 0:
        raise ConfigError(f"{arch}: filter_growth must be a number > 0, got {growth}")
    return [max(1, int(round(base * growth**i))) for i in range(count)]
