"""``train.mixed_precision``: which Keras dtype policy a trial trains under.

- ``"auto"`` (the default): ``mixed_bfloat16`` on a GPU that computes in bfloat16 (NVIDIA compute
  capability 8.0 and later: A100, H100, H200, RTX 30xx/40xx), ``mixed_float16`` on an older GPU
  (Keras then scales the loss: ``LossScaleOptimizer``), ``float32`` on a CPU;
- ``true``: ``mixed_float16``, as before ``auto`` existed;
- ``false``: ``float32``;
- ``"mixed_bfloat16"`` / ``"mixed_float16"``: that policy.

Under a mixed policy the layers keep float32 weights and compute in the half type; every
architecture's head (final conv and activation) and every loss compute in float32. The policy is
picked in the process that trains (the worker), so the driver never touches the GPU.

Example:
    >>> policy_name("auto")        # on a CPU
    'float32'
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["MIXED_PRECISION_VALUES", "gpu_capability", "policy_name"]

#: the values ``train.mixed_precision`` takes (besides true and false).
MIXED_PRECISION_VALUES = ("auto", "mixed_bfloat16", "mixed_float16")


@functools.lru_cache(maxsize=1)
def gpu_capability() -> tuple[int, int] | None:
    """The compute capability (major, minor) of the first GPU the Keras backend sees, or None
    (no GPU, or a backend that does not say)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            if not gpus:
                return None
            text = str(getattr(gpus[0], "compute_capability", "") or "")
            major, _, minor = text.partition(".")
            return (int(major), int(minor or 0)) if major.isdigit() else (0, 0)
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                return None
            cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
            return (int(cc[0]), int(cc[1])) if cc else (0, 0)
        if backend == "torch":
            import torch

            if not torch.cuda.is_available():
                return None
            return tuple(torch.cuda.get_device_capability(0))  # type: ignore[return-value]
    except (ImportError, RuntimeError, ValueError):
        return None
    return None


def policy_name(setting: Any, capability: tuple[int, int] | None | str = "detect") -> str:
    """The Keras dtype policy for a ``train.mixed_precision`` value.

    Args:
        setting: true, false, "auto", "mixed_bfloat16" or "mixed_float16".
        capability: the GPU's compute capability, None for no GPU; "detect" asks the backend
            (:func:`gpu_capability`).

    Raises:
        ValueError: an unknown setting (``spacefile`` checks it when the file is read).
    """
    if setting is True:
        return "mixed_float16"
    if setting is False or setting is None:
        return "float32"
    if setting in ("mixed_bfloat16", "mixed_float16"):
        return str(setting)
    if setting != "auto":
        raise ValueError(f"train.mixed_precision: expected true, false or one of "
                         f"{', '.join(MIXED_PRECISION_VALUES)}, got {setting!r}")
    cc = gpu_capability() if capability == "detect" else capability
    if cc is None:
        return "float32"
    return "mixed_bfloat16" if tuple(cc) >= (8, 0) else "mixed_float16"
