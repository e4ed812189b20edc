"""What a network costs to deploy: its size (``params``), its work (``flops``), its speed
(``latency_ms``): the objectives a search may set beside a quality metric.

- :func:`count_params`: every weight of the model, trainable and not (batch-norm statistics,
  frozen backbone layers), what a deployed file holds.
- :func:`count_flops`: the floating-point operations of one forward pass for one image at the
  model's input size, counted from the Keras layers' shapes (no backend, no tracing), a
  multiply-add counting 2. What is counted (see :data:`FLOP_RULES`):

  ========================================  ==============================================
  layer                                     FLOPs
  ========================================  ==============================================
  Conv1D/2D/3D (dilated, grouped)           2 * kernel_size * in_channels / groups per output
                                            element, + 1 per output element for the bias
  Conv1D/2D/3DTranspose                     2 * kernel_size * in_channels * filters per input
                                            position, + 1 per output element for the bias
  DepthwiseConv1D/2D                        2 * kernel_size per output element (+ bias)
  SeparableConv1D/2D                        the depthwise part, + 2 * its channels per output
                                            element (pointwise), + bias
  Dense                                     2 * input features per output element (+ bias)
  BatchNormalization, Normalization         2 per element (inference: one scale, one shift)
  Add, Subtract, Multiply, Maximum, Minimum (inputs - 1) per output element
  Average                                   inputs per output element
  MaxPooling, AveragePooling                the pool size per output element
  GlobalMax/AveragePooling                  1 per input element
  ========================================  ==============================================

  Not counted (0): activations, upsampling and resizing, concatenation, padding, cropping,
  dropout, reshapes. A layer that holds weights and is not in the table raises a ValueError
  rather than being counted as free. Each layer is counted once (segsearch's networks call each
  layer once); a nested model (a ``keras.applications`` backbone) is counted layer by layer.
- :func:`measure_latency`: the median wall time of ``model.predict_on_batch`` over N batches of
  random images (batch size 1 by default) on the device the model lives on, after a few warm-up
  batches that are not timed (the first builds and compiles the predict function); the time
  includes copying the output back to the host, as a deployed model's caller pays it.

Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    >>> count_params(model), count_flops(model)  # 3*3*3*4 + 4; 6*6*4 * (2*27 + 1)
    (112, 7920)
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["COSTS", "FLOP_RULES", "count_params", "count_flops", "measure_latency", "measure",
           "LATENCY_WARMUP"]

#: the cost objectives, each minimised: parameters, FLOPs per image, milliseconds per batch.
COSTS: tuple[str, ...] = ("params", "flops", "latency_ms")
#: un-timed batches before the latency is measured.
LATENCY_WARMUP = 3
#: the layer types :func:`count_flops` counts (by name; subclasses count as their base).
FLOP_RULES: tuple[str, ...] = (
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D", "Dense",
    "BatchNormalization", "Normalization", "Add", "Subtract", "Multiply", "Maximum", "Minimum",
    "Average", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
)


def count_params(model: Any) -> int:
    """Every weight of the model, trainable and non-trainable (what a deployed model holds).

    Args:
        model: a built Keras model.
    """
    return int(model.count_params())


def _shapes(tensors: Any) -> list[tuple[int, ...]]:
    """The per-image shapes (batch dimension dropped) of a layer's input or output tensor(s)."""
    items = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    return [tuple(t.shape[1:]) for t in items]


def _size(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def _layers(model: Any) -> Iterable[Any]:
    """The leaf layers of a model, nested models walked into."""
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        if inner:
            yield from _layers(layer)
        else:
            yield layer


def _layer_flops(layer: Any, inputs: list[tuple[int, ...]], output: tuple[int, ...]) -> int:
    """The FLOPs of one call of ``layer`` (see the module's table); -1 for an uncounted type."""
    import keras

    L = keras.layers  # noqa: N806
    out = _size(output)
    bias = out if getattr(layer, "use_bias", False) else 0
    first = inputs[0]
    kind = type(layer)
    if issubclass(kind, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return 2 * _size(layer.kernel_size) * out + bias
    if issubclass(kind, (L.SeparableConv1D, L.SeparableConv2D)):
        channels_last = layer.data_format == "channels_last"
        c_in = first[-1] if channels_last else first[0]
        spatial = output[:-1] if channels_last else output[1:]
        middle = c_in * layer.depth_multiplier
        return 2 * _size(layer.kernel_size) * middle * _size(spatial) + 2 * middle * out + bias
    if issubclass(kind, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        channels_last = layer.data_format == "channels_last"
        c_in = first[-1] if channels_last else first[0]
        positions = _size(first[:-1] if channels_last else first[1:])
        return 2 * _size(layer.kernel_size) * c_in * layer.filters * positions + bias
    if issubclass(kind, (L.Conv1D, L.Conv2D, L.Conv3D)):
        c_in = first[-1] if layer.data_format == "channels_last" else first[0]
        groups = int(getattr(layer, "groups", 1) or 1)
        return 2 * _size(layer.kernel_size) * (c_in // groups) * out + bias
    if issubclass(kind, L.Dense):
        return 2 * first[-1] * out + bias
    if issubclass(kind, (L.BatchNormalization, L.Normalization)):
        return 2 * out
    if issubclass(kind, (L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum)):
        return (len(inputs) - 1) * out
    if issubclass(kind, L.Average):
        return len(inputs) * out
    pools = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D,
             L.AveragePooling2D, L.AveragePooling3D)
    if issubclass(kind, pools):
        return _size(layer.pool_size) * out
    globals_ = (L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
                L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)
    if issubclass(kind, globals_):
        return _size(first)
    return -1


def count_flops(model: Any) -> int:
    """The floating-point operations of one forward pass for one image (multiply-add = 2).

    Counted from each layer's input and output shapes at the model's input size, by the rules in
    the module's table; independent of the backend and the device.

    Args:
        model: a built Keras model with a fixed input size (no None but the batch dimension).

    Raises:
        ValueError: a layer's size is unknown (an input size of None), or a layer that holds
            weights is of a type the rules do not cover.

    Example:
        >>> count_flops(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
        18
    """
    total = 0
    for layer in _layers(model):
        if not hasattr(layer, "input") or type(layer).__name__ == "InputLayer":
            continue
        inputs, outputs = _shapes(layer.input), _shapes(layer.output)
        if any(d is None for shape in inputs + outputs for d in shape):
            raise ValueError(f"flops: layer {layer.name!r} has an unknown size "
                             f"(input {inputs}); build the model for a fixed input size")
        flops = _layer_flops(layer, inputs, outputs[0])
        if flops < 0:
            if layer.weights:
                raise ValueError(f"flops: layer {layer.name!r} ({type(layer).__name__}) holds "
                                 "weights but segsearch has no rule to count its operations; "
                                 f"counted: {', '.join(FLOP_RULES)}")
            continue  # activations, resizing, concatenation, padding, reshapes: 0
        total += flops
    return int(total)


def measure_latency(model: Any, *, batches: int = 20, batch_size: int = 1,
                    warmup: int = LATENCY_WARMUP, seed: int = 0) -> float:
    """The median milliseconds of one ``predict_on_batch`` over ``batches`` timed batches.

    Args:
        model: a built Keras model with a fixed input size.
        batches: timed batches (the median of their times is returned).
        batch_size: images per batch.
        warmup: batches run first and not timed (building, compiling, caches).
        seed: seed of the random input images.

    Raises:
        ValueError: ``batches`` or ``batch_size`` is below 1, or the input size is not fixed.
    """
    import numpy as np

    if batches < 1 or batch_size < 1:
        raise ValueError(f"latency: batches and batch_size must be >= 1, got {batches}, "
                         f"{batch_size}")
    shape = tuple(model.input_shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"latency: the model's input size is not fixed ({shape})")
    x = np.random.default_rng(seed).random((batch_size, *shape), dtype=np.float32)
    for _ in range(max(0, warmup)):
        model.predict_on_batch(x)
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        model.predict_on_batch(x)  # returns NumPy arrays: the device has finished
        times.append(time.perf_counter() - start)
    return float(statistics.median(times) * 1000.0)


def measure(model: Any, names: Iterable[str], *, latency_batches: int = 20,
            latency_batch_size: int = 1) -> dict[str, float]:
    """The costs ``names`` asks for (a subset of :data:`COSTS`; other names are skipped).

    Args:
        model: the trained Keras model.
        names: objective names.
        latency_batches: timed batches for ``latency_ms``.
        latency_batch_size: images per batch for ``latency_ms``.
    """
    out: dict[str, float] = {}
    for name in names:
        if name == "params":
            out[name] = float(count_params(model))
        elif name == "flops":
            out[name] = float(count_flops(model))
        elif name == "latency_ms":
            out[name] = measure_latency(model, batches=latency_batches,
                                        batch_size=latency_batch_size)
    return out
