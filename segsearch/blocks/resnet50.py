"""ResNet50 encoder (keras.applications): feature taps, weights loading and freezing.

The seeds (000, 002) build ``keras.applications.ResNet50(include_top=False, weights="imagenet",
input_tensor=inputs)`` and tap named layers. Here the network is always built with ``weights=None``
and the weights are loaded afterwards, so that a missing download or a bad file becomes a
:class:`~segsearch.errors.WeightsError` with a message saying what to do, never a traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from segsearch._keras_compat import keras_home, resnet50_notop_md5
from segsearch.errors import ConfigError, WeightsError, unknown_name

if TYPE_CHECKING:  # pragma: no cover
    import keras

#: The freeze modes: the one list (the hyperparameter ``freeze`` reads it too). Keras' ResNet50 has
#: five stages (conv1 + pool1, conv2_x .. conv5_x); "stageN" freezes stages 1..N and "all" all five,
#: so "stage5" would be a second name for "all" and is not a mode.
FreezeMode = Literal["none", "all", "stage1", "stage2", "stage3", "stage4"]
FREEZE_MODES: tuple[str, ...] = get_args(FreezeMode)
Weights = Literal["imagenet"] | str | os.PathLike | None

#: stride -> layer whose output is the feature map at that stride (1 is the input itself).
RESNET50_TAPS: dict[int, str | None] = {
    1: None,
    2: "conv1_relu",
    4: "conv2_block3_out",
    8: "conv3_block4_out",
    16: "conv4_block6_out",
    32: "conv5_block3_out",
}
#: DeepLabV3+'s low-level features (stride 4), as in the DeepLabV3+ article.
RESNET50_LOW_LEVEL = "conv2_block2_out"

IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + IMAGENET_FILE
)
WEIGHTS_SUFFIXES: tuple[str, ...] = (".weights.h5", ".weights.json", ".h5", ".hdf5", ".keras")

_STAGE_RE = re.compile(r"^(?:conv|pool)([1-5])_")


def keras_cache_dir() -> Path:
    """Return the folder where Keras caches downloaded application weights.

    It is ``<KERAS_HOME>/models``. This mirrors ``keras.utils.get_file``: ``$KERAS_HOME`` or
    ``~/.keras``, or ``/tmp/.keras`` when that is not writable.
    """
    base = os.path.expanduser(keras_home())
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return Path(base) / "models"


def imagenet_cache_path() -> Path:
    """Return the exact path where Keras looks for the ResNet50 ImageNet (no-top) weights file."""
    return keras_cache_dir() / IMAGENET_FILE


def _imagenet_md5() -> str:
    return resnet50_notop_md5()


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _how_to_proceed() -> str:
    return (
        f"Put the file {IMAGENET_FILE} (from {IMAGENET_URL}) at {imagenet_cache_path()}, "
        "or pass weights='<path to a ResNet50 .h5 / .weights.h5 file>', "
        "or use weights=None (random initialisation)"
    )


def imagenet_weights_file() -> Path:
    """Return the cached ResNet50 ImageNet weights file, downloading it when it is not cached.

    Raises:
        WeightsError: the file is not cached and cannot be downloaded (offline), or the cached file
            is incomplete.
    """
    path = imagenet_cache_path()
    expected = _imagenet_md5()
    if path.is_file():
        if _md5(path) != expected:
            raise WeightsError(
                f"the cached ImageNet weights file {path} is incomplete or corrupted (its md5 is "
                f"not {expected}). Delete it and download it again from {IMAGENET_URL}, or pass "
                "weights='<path to a ResNet50 weights file>' or weights=None"
            )
        return path
    from keras.utils import get_file

    try:
        downloaded = get_file(
            IMAGENET_FILE, IMAGENET_URL, cache_subdir="models", file_hash=expected
        )
    except Exception as exc:  # URL errors, hash mismatch, interrupted download
        raise WeightsError(
            f"ResNet50 ImageNet weights are not in the Keras cache ({path} does not exist) and "
            f"could not be downloaded; this machine looks offline ({exc}). {_how_to_proceed()}"
        ) from None
    return Path(downloaded)


def check_weights(weights: Weights, channels: int | None = None) -> None:
    """Check a ``weights`` argument before anything is built.

    Args:
        weights: None, "imagenet" or a path to a weights file.
        channels: input channels of the network (ImageNet weights need 3).

    Raises:
        WeightsError: missing file, unsupported file type, or ImageNet weights with channels != 3.
    """
    if weights is None:
        return
    if isinstance(weights, str) and weights == "imagenet":
        if channels is not None and channels != 3:
            raise WeightsError(
                f"ImageNet weights for ResNet50 need 3 input channels, got {channels}; give the "
                "model RGB input (e.g. repeat a grayscale channel 3 times) or use weights=None"
            )
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(
            f"weights must be None, 'imagenet' or a path to a weights file, got {weights!r}"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weights file not found: {path}; pass an existing ResNet50 weights file "
            f"({', '.join(WEIGHTS_SUFFIXES)}), weights='imagenet' or weights=None"
        )
    if not str(path).endswith(WEIGHTS_SUFFIXES):
        raise WeightsError(
            f"cannot load weights from {path}: the file name must end with one of "
            f"{', '.join(WEIGHTS_SUFFIXES)}"
        )


def load_encoder_weights(backbone: keras.Model, weights: Weights) -> None:
    """Load weights into a ResNet50 built by keras.applications with ``weights=None``.

    "imagenet" loads the Keras cached (or downloaded) no-top file. A path is loaded by layer name
    for legacy ``.h5`` files and by structure for Keras 3 ``.weights.h5`` / ``.keras`` files,
    skipping layers whose shapes do not match (a warning names them); a file that matches no layer
    at all is an error.

    Args:
        backbone: the ResNet50 model (include_top=False).
        weights: None (nothing is loaded), "imagenet" or a path.

    Raises:
        WeightsError: the file is missing, offline without a cached ImageNet file, or nothing
            matched.
    """
    if weights is None:
        return
    channels = backbone.inputs[0].shape[-1]
    check_weights(weights, channels)
    if isinstance(weights, str) and weights == "imagenet":
        path = imagenet_weights_file()
        try:
            backbone.load_weights(str(path))
        except Exception as exc:
            raise WeightsError(
                f"could not load the ImageNet weights {path} into ResNet50: {exc}. "
                f"{_how_to_proceed()}"
            ) from None
        return

    import numpy as np

    path = Path(weights).expanduser()
    layers_with_weights = [layer for layer in backbone.layers if layer.weights]
    # Fill every variable with NaN first: whatever is still NaN after loading was skipped, and gets
    # its initial value back. (Comparing before/after would miss layers whose file values equal the
    # initial ones, e.g. untrained BatchNormalization.)
    initial = [[v.numpy() for v in layer.weights] for layer in layers_with_weights]
    for layer in layers_with_weights:
        for v in layer.weights:
            v.assign(np.full(v.shape, np.nan, dtype=v.dtype))
    kwargs = {}
    if str(path).endswith((".h5", ".hdf5")) and not str(path).endswith(".weights.h5"):
        # legacy HDF5 (e.g. the keras.applications files): match by layer name
        kwargs["by_name"] = True
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                backbone.load_weights(str(path), skip_mismatch=True, **kwargs)
        except Exception as exc:
            raise WeightsError(
                f"could not load ResNet50 weights from {path}: {exc}. Pass a weights file saved "
                "from a keras.applications ResNet50 (include_top=False), weights='imagenet' or "
                "weights=None"
            ) from None
    finally:
        skipped = []
        for layer, values in zip(layers_with_weights, initial, strict=True):
            if any(np.isnan(v.numpy()).all() for v in layer.weights):
                skipped.append(layer.name)
                for v, value in zip(layer.weights, values, strict=True):
                    v.assign(value)
    if len(skipped) == len(layers_with_weights):
        raise WeightsError(
            f"no layer of the ResNet50 encoder matched the weights in {path} (names or shapes "
            "differ); pass a file saved from a keras.applications ResNet50 (include_top=False) "
            "with the same number of input channels, weights='imagenet' or weights=None"
        )
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        warnings.warn(
            f"{len(skipped)} of {len(layers_with_weights)} ResNet50 layers were not found in "
            f"{path} (or have other shapes) and keep their initial values: {shown}",
            stacklevel=3,
        )


def resnet50_encoder(inputs: keras.KerasTensor, *, weights: Weights = None) -> keras.Model:
    """Build keras.applications ResNet50 (no top) on ``inputs`` and load ``weights``.

    The model is always created with ``weights=None``, then :func:`load_encoder_weights` loads the
    weights, so download or file problems raise :class:`WeightsError`. Weights are checked (file
    exists, ImageNet needs 3 channels, ImageNet file cached or downloadable) before any layer is
    made.

    Args:
        inputs: a ``keras.Input`` of shape (H, W, C).
        weights: None, "imagenet" or a path to a weights file.

    Example:
        >>> backbone = resnet50_encoder(keras.Input((64, 64, 3)), weights=None)
        >>> resnet50_features(backbone)[16].shape
        (None, 4, 4, 1024)
    """
    import keras

    check_weights(weights, inputs.shape[-1])
    if isinstance(weights, str) and weights == "imagenet":
        imagenet_weights_file()  # fail early (offline) before creating layers
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_tensor=inputs)
    load_encoder_weights(backbone, weights)
    return backbone


def resnet50_features(backbone: keras.Model) -> dict[int, keras.KerasTensor]:
    """Return the encoder feature maps by stride.

    The strides are 1 (input), 2, 4, 8, 16 and 32 (see ``RESNET50_TAPS``).
    """
    features = {1: backbone.inputs[0]}
    for stride, layer_name in RESNET50_TAPS.items():
        if layer_name is not None:
            features[stride] = backbone.get_layer(layer_name).output
    return features


def encoder_stage(layer_name: str) -> int | None:
    """Return the ResNet50 stage (1-5) a keras.applications layer belongs to, None for others.

    Example:
        >>> encoder_stage("conv3_block2_1_conv"), encoder_stage("pool1_pool")
        (3, 1)
        >>> encoder_stage("head_conv") is None
        True
    """
    match = _STAGE_RE.match(layer_name)
    return int(match.group(1)) if match else None


def check_freeze(freeze: str) -> str:
    """Return ``freeze`` if it is a known mode, else raise ConfigError listing the modes."""
    if freeze not in FREEZE_MODES:
        raise ConfigError(unknown_name("freeze mode", freeze, FREEZE_MODES))
    return freeze


def freeze_encoder(
    layers: Iterable[keras.Layer] | keras.Model,
    freeze: FreezeMode = "none",
    *,
    freeze_batch_norm: bool = True,
) -> int:
    """Freeze ResNet50 layers: "none", "all", or "stageN" = stages 1..N inclusive.

    Only layers with a keras.applications ResNet50 name (``conv1_*``, ``pool1_*``, ``conv2_*`` ...
    ``conv5_*``) are touched. BatchNormalization layers of the frozen part are frozen too when
    ``freeze_batch_norm`` is True (they then also run in inference mode); with False they stay
    trainable. Layers outside the frozen part are left as they are.

    Args:
        layers: the layers (or a model whose ``.layers``) to go through.
        freeze: "none", "all" (stages 1..5), "stage1" .. "stage4".
        freeze_batch_norm: whether BatchNormalization layers in the frozen part are frozen.

    Returns:
        The number of layers made non-trainable.

    Example:
        >>> freeze_encoder(model, "stage2", freeze_batch_norm=False)
    """
    from keras import layers as klayers

    check_freeze(freeze)
    if freeze == "none":
        return 0
    last = 5 if freeze == "all" else int(freeze[len("stage") :])
    if hasattr(layers, "layers"):
        layers = layers.layers
    frozen = 0
    for layer in layers:
        stage = encoder_stage(layer.name)
        if stage is None or stage > last:
            continue
        if isinstance(layer, klayers.BatchNormalization) and not freeze_batch_norm:
            layer.trainable = True
            continue
        layer.trainable = False
        frozen += 1
    return frozen
