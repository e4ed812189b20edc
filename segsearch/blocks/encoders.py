"""Pretrained encoders from keras.applications: ONE table of taps, stages, input and weights.

:data:`ENCODERS` maps an encoder name (the ``encoder`` hyperparameter of ``resnet50_unet`` and
``deeplabv3plus``) to its :class:`EncoderSpec`: the keras.applications constructor, the layer
whose output is the feature map at each stride 2, 4, 8, 16, 32 (keras-hub calls this the
``pyramid_outputs``), DeepLabV3+'s low-level (stride-4) features, the five stages that ``freeze``
counts, the input each encoder's ImageNet weights expect, and the ImageNet (no-top) weights file
Keras caches, with its checksum.

Every network is built with ``weights=None`` and the weights are loaded afterwards, so that a
missing download or a bad file becomes a :class:`~segsearch.errors.WeightsError` saying what to
do, never a traceback.

Input. The data pipeline gives images in [0, 1]. Each encoder gets what its keras.applications
graph and its ImageNet weights expect (the ``preprocessing`` column):

- ``"pixels"`` (EfficientNet, MobileNetV3): their graphs normalise their own input (EfficientNet's
  Rescaling + Normalization, MobileNetV3's Rescaling, ``include_preprocessing=True``) and take
  0..255 pixels, so a ``Rescaling(255)`` layer ("encoder_preprocess") always comes first, with or
  without weights. With pretrained weights EfficientNet's Normalization is set to the ImageNet
  mean and standard deviation (keras.applications adds an extra Rescaling layer for this only
  when it loads "imagenet" itself, https://github.com/tensorflow/tensorflow/issues/49930).
- ``"caffe"`` (ResNet50, ResNet101) and ``"tf"`` (ResNet50V2): their graphs take what
  ``keras.applications.resnet.preprocess_input`` (BGR, 0..255 minus the ImageNet means) or
  ``resnet_v2.preprocess_input`` ([-1, 1]) give. With pretrained weights ("imagenet" or a file)
  that step is the first layer; with ``weights=None`` a ResNet takes the [0, 1] images as they
  come (the seed networks: nothing to match, and nothing changes for them).

Grey (1-channel) input: ImageNet weights need 3 channels (refused, as for ResNet50); a weights file
loads into a 1-channel encoder with its first convolution skipped (another shape, a warning),
and the preprocessing uses the mean of the three channel means.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from segsearch._keras_compat import keras_home, notop_weights_hash
from segsearch.errors import ConfigError, WeightsError, unknown_name

if TYPE_CHECKING:  # pragma: no cover
    import keras

#: The freeze modes: the one list (the hyperparameter ``freeze`` reads it too). Every encoder has
#: five stages (its ``stages`` in the table); "stageN" freezes stages 1..N and "all" all five, so
#: "stage5" would be a second name for "all" and is not a mode.
FreezeMode = Literal["none", "all", "stage1", "stage2", "stage3", "stage4"]
FREEZE_MODES: tuple[str, ...] = get_args(FreezeMode)
Weights = Literal["imagenet"] | str | os.PathLike | None
WEIGHTS_SUFFIXES: tuple[str, ...] = (".weights.h5", ".weights.json", ".h5", ".hdf5", ".keras")
Preprocessing = Literal["caffe", "tf", "pixels"]

#: A tap is a layer name (its output), "<layer>:input" (the input of that layer: MobileNetV3's
#: activations have automatic names, the named padding layer after one does not) or OUTPUT (the
#: encoder's last feature map).
OUTPUT = ":output"
#: name of the layer that turns [0, 1] images into the encoder's input.
PREPROCESS_LAYER = "encoder_preprocess"

_RESNET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
_EFFICIENTNET_URL = "https://storage.googleapis.com/keras-applications/"
_MOBILENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"
#: ImageNet statistics (RGB) of the "caffe" (0..255) and EfficientNet ([0, 1]) preprocessing.
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderSpec:
    """One row of :data:`ENCODERS`.

    Args:
        name: the key (the ``encoder`` hyperparameter's value).
        title: the keras.applications name, for messages.
        constructor: the ``keras.applications`` attribute that builds it.
        taps: stride (2, 4, 8, 16, 32) -> tap (see :data:`OUTPUT`).
        low_level: DeepLabV3+'s low-level features (stride 4).
        stages: five regular expressions on layer names: stage 1 .. 5.
        preprocessing: "caffe", "tf" or "pixels" (see the module docstring).
        weights_file: the ImageNet (no-top) file name in the Keras cache.
        weights_url: where Keras downloads it.
        weights_hash: (keras.applications module, key) of its checksum in Keras' WEIGHTS_HASHES.
        kwargs: further constructor arguments.
    """

    name: str
    title: str
    constructor: str
    taps: Mapping[int, str]
    low_level: str
    stages: tuple[str, str, str, str, str]
    preprocessing: Preprocessing
    weights_file: str
    weights_url: str
    weights_hash: tuple[str, str]
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def stage(self, layer_name: str) -> int | None:
        """The stage (1-5) ``layer_name`` belongs to, None for layers outside the encoder."""
        for i, pattern in enumerate(self.stages, start=1):
            if re.match(pattern, layer_name):
                return i
        return None


def _resnet(name: str, title: str, taps: dict[int, str], low_level: str, *, v2: bool = False
            ) -> EncoderSpec:
    file = f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return EncoderSpec(
        name, title, title, MappingProxyType(taps), low_level,
        (r"^(?:conv|pool)1_", r"^conv2_", r"^conv3_", r"^conv4_",
         r"^(?:conv5_|post_)" if v2 else r"^conv5_"),
        "tf" if v2 else "caffe", file, _RESNET_URL + file, ("resnet", name))


def _efficientnet(b: int) -> EncoderSpec:
    # segmentation_models' taps: each stage's last map is the expanded input of the next stage's
    # first (stride-2) block, so the names are the same for B0..B7
    file = f"efficientnetb{b}_notop.h5"
    taps = {2: "block2a_expand_activation", 4: "block3a_expand_activation",
            8: "block4a_expand_activation", 16: "block6a_expand_activation", 32: "top_activation"}
    return EncoderSpec(
        f"efficientnetb{b}", f"EfficientNetB{b}", f"EfficientNetB{b}", MappingProxyType(taps),
        taps[4],
        (r"^(?:stem_|block1)", r"^block2", r"^block3", r"^block[45]", r"^(?:block[67]|top_)"),
        "pixels", file, _EFFICIENTNET_URL + file, ("efficientnet", f"b{b}"))


def _mobilenetv3(size: str, taps: dict[int, str], stages: tuple[str, str, str, str, str]
                 ) -> EncoderSpec:
    key = f"{size}_224_1.0_float"
    file = f"weights_mobilenet_v3_{key}_no_top_v2.h5"
    title = f"MobileNetV3{size.capitalize()}"
    return EncoderSpec(f"mobilenetv3{size}", title, title, MappingProxyType(taps), taps[4],
                       stages, "pixels", file, _MOBILENET_URL + file, ("mobilenet_v3", key))


_RESNET50_TAPS = {2: "conv1_relu", 4: "conv2_block3_out", 8: "conv3_block4_out",
                  16: "conv4_block6_out", 32: "conv5_block3_out"}
_MNV3_STEM = r"conv(?:_bn)?$"  # MobileNetV3's stem: "conv", "conv_bn"
_MNV3_FIRST = r"expanded_conv_(?!\d)"  # its block 0 ("expanded_conv_depthwise", ...)

#: encoder name -> spec: the one table of taps, stages, preprocessing and weights.
ENCODERS: Mapping[str, EncoderSpec] = MappingProxyType({s.name: s for s in (
    _resnet("resnet50", "ResNet50", _RESNET50_TAPS, "conv2_block2_out"),
    _resnet("resnet101", "ResNet101", {**_RESNET50_TAPS, 16: "conv4_block23_out"},
            "conv2_block2_out"),
    # v2 downsamples in the last block of a stage; its taps are the pre-activations (BN-ReLU)
    # of that block's input, the stage's last map (same widths as ResNet50's)
    _resnet("resnet50v2", "ResNet50V2",
            {2: "conv1_conv", 4: "conv2_block3_preact_relu", 8: "conv3_block4_preact_relu",
             16: "conv4_block6_preact_relu", 32: "post_relu"},
            "conv2_block3_preact_relu", v2=True),
    *(_efficientnet(b) for b in range(5)),
    # MobileNetV3: the expanded input of each stride-2 block (as EfficientNet's), read at the
    # named padding layer that follows it
    _mobilenetv3("small",
                 {2: "expanded_conv_depthwise_pad:input", 4: "expanded_conv_1_depthwise_pad:input",
                  8: "expanded_conv_3_depthwise_pad:input",
                  16: "expanded_conv_8_depthwise_pad:input", 32: OUTPUT},
                 ("^" + _MNV3_STEM, "^" + _MNV3_FIRST, r"^expanded_conv_[12]_",
                  r"^expanded_conv_[3-7]_", r"^(?:expanded_conv_(?:8|9|10)_|conv_1)")),
    _mobilenetv3("large",
                 {2: "expanded_conv_1_depthwise_pad:input",
                  4: "expanded_conv_3_depthwise_pad:input",
                  8: "expanded_conv_6_depthwise_pad:input",
                  16: "expanded_conv_12_depthwise_pad:input", 32: OUTPUT},
                 (f"^(?:{_MNV3_STEM}|{_MNV3_FIRST})", r"^expanded_conv_[12]_",
                  r"^expanded_conv_[3-5]_", r"^expanded_conv_(?:[6-9]|1[01])_",
                  r"^(?:expanded_conv_1[2-4]_|conv_1)")),
)})
#: the encoder names, in table order (the choices of the ``encoder`` hyperparameter).
ENCODER_NAMES: tuple[str, ...] = tuple(ENCODERS)
DEFAULT_ENCODER = "resnet50"


def encoder_spec(encoder: str) -> EncoderSpec:
    """The row of :data:`ENCODERS` named ``encoder``.

    Raises:
        ConfigError: unknown name (the message lists the names and the closest one).
    """
    if encoder not in ENCODERS:
        raise ConfigError(unknown_name("encoder", encoder, ENCODER_NAMES))
    return ENCODERS[encoder]


# ---------------------------------------------------------------------- weights
def keras_cache_dir() -> Path:
    """Return the folder where Keras caches downloaded application weights.

    It is ``<KERAS_HOME>/models``. This mirrors ``keras.utils.get_file``: ``$KERAS_HOME`` or
    ``~/.keras``, or ``/tmp/.keras`` when that is not writable.
    """
    base = os.path.expanduser(keras_home())
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return Path(base) / "models"


def imagenet_cache_path(encoder: str = DEFAULT_ENCODER) -> Path:
    """Return the exact path where Keras looks for ``encoder``'s ImageNet (no-top) weights."""
    return keras_cache_dir() / encoder_spec(encoder).weights_file


def imagenet_hash(encoder: str = DEFAULT_ENCODER) -> str:
    """The checksum (md5) Keras checks ``encoder``'s ImageNet (no-top) weights file against."""
    return notop_weights_hash(*encoder_spec(encoder).weights_hash)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def how_to_proceed(encoder: str = DEFAULT_ENCODER) -> str:
    """What to do when ``encoder``'s ImageNet weights are not there."""
    s = encoder_spec(encoder)
    return (
        f"Put the file {s.weights_file} (from {s.weights_url}) at {imagenet_cache_path(encoder)}, "
        f"or pass weights='<path to a {s.title} .h5 / .weights.h5 file>', "
        "or use weights=None (random initialisation)"
    )


def imagenet_weights_file(encoder: str = DEFAULT_ENCODER, expected: str | None = None) -> Path:
    """Return ``encoder``'s cached ImageNet weights file, checked against its checksum, downloading
    it when it is not cached.

    Args:
        encoder: a name of :data:`ENCODERS`.
        expected: the md5 to check (default: Keras' own, :func:`imagenet_hash`).

    Raises:
        WeightsError: the file is not cached and cannot be downloaded (offline), or the cached file
            is incomplete.
    """
    s = encoder_spec(encoder)
    path = imagenet_cache_path(encoder)
    expected = imagenet_hash(encoder) if expected is None else expected
    if path.is_file():
        if _md5(path) != expected:
            raise WeightsError(
                f"the cached ImageNet weights file {path} is incomplete or corrupted (its md5 is "
                f"not {expected}). Delete it and download it again from {s.weights_url}, or pass "
                f"weights='<path to a {s.title} weights file>' or weights=None"
            )
        return path
    from keras.utils import get_file

    try:
        downloaded = get_file(s.weights_file, s.weights_url, cache_subdir="models",
                              file_hash=expected)
    except Exception as exc:  # URL errors, hash mismatch, interrupted download
        raise WeightsError(
            f"{s.title} ImageNet weights are not in the Keras cache ({path} does not exist) and "
            f"could not be downloaded; this machine looks offline ({exc}). "
            f"{how_to_proceed(encoder)}"
        ) from None
    return Path(downloaded)


def check_weights(weights: Weights, channels: int | None = None,
                  encoder: str = DEFAULT_ENCODER) -> None:
    """Check a ``weights`` argument before anything is built.

    Args:
        weights: None, "imagenet" or a path to a weights file.
        channels: input channels of the network (ImageNet weights need 3).
        encoder: the encoder the weights are for (named in messages).

    Raises:
        WeightsError: missing file, unsupported file type, or ImageNet weights with channels != 3.
    """
    if weights is None:
        return
    title = encoder_spec(encoder).title
    if isinstance(weights, str) and weights == "imagenet":
        if channels is not None and channels != 3:
            raise WeightsError(
                f"ImageNet weights for {title} need 3 input channels, got {channels}; give the "
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
            f"weights file not found: {path}; pass an existing {title} weights file "
            f"({', '.join(WEIGHTS_SUFFIXES)}), weights='imagenet' or weights=None"
        )
    if not str(path).endswith(WEIGHTS_SUFFIXES):
        raise WeightsError(
            f"cannot load weights from {path}: the file name must end with one of "
            f"{', '.join(WEIGHTS_SUFFIXES)}"
        )


def _is_float(v: Any) -> bool:
    return "float" in str(v.dtype)


def load_encoder_weights(backbone: keras.Model, weights: Weights,
                         encoder: str = DEFAULT_ENCODER) -> None:
    """Load weights into an encoder built by keras.applications with ``weights=None``.

    "imagenet" loads the Keras cached (or downloaded) no-top file, checked against its checksum.
    A path is loaded by layer name for legacy ``.h5`` files and by structure for Keras 3
    ``.weights.h5`` / ``.keras`` files, skipping layers whose shapes do not match (a warning names
    them); a file that matches no layer at all is an error. EfficientNet's input normalisation is
    then set to the ImageNet statistics (see the module docstring).

    Args:
        backbone: the encoder (include_top=False).
        weights: None (nothing is loaded), "imagenet" or a path.
        encoder: its name in :data:`ENCODERS`.

    Raises:
        WeightsError: the file is missing, offline without a cached ImageNet file, or nothing
            matched.
    """
    if weights is None:
        return
    s = encoder_spec(encoder)
    channels = backbone.inputs[0].shape[-1]
    check_weights(weights, channels, encoder)
    if isinstance(weights, str) and weights == "imagenet":
        path = imagenet_weights_file(encoder)
        try:
            backbone.load_weights(str(path))
        except Exception as exc:
            raise WeightsError(
                f"could not load the ImageNet weights {path} into {s.title}: {exc}. "
                f"{how_to_proceed(encoder)}"
            ) from None
    else:
        _load_file(backbone, Path(weights).expanduser(), s)
    _imagenet_normalization(backbone, channels)


def _load_file(backbone: keras.Model, path: Path, s: EncoderSpec) -> None:
    import numpy as np
    from keras import layers

    # Normalization layers (EfficientNet's, auto-named) are set to ImageNet's statistics after
    # loading, whatever the file holds
    layers_with_weights = [layer for layer in backbone.layers
                           if any(_is_float(v) for v in layer.weights)
                           and not isinstance(layer, layers.Normalization)]
    # Fill every float variable with NaN first: whatever is still NaN after loading was skipped,
    # and gets its initial value back. (Comparing before/after would miss layers whose file values
    # equal the initial ones, e.g. untrained BatchNormalization.)
    initial = [[v.numpy() for v in layer.weights] for layer in layers_with_weights]
    for layer in layers_with_weights:
        for v in layer.weights:
            if _is_float(v):
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
                f"could not load {s.title} weights from {path}: {exc}. Pass a weights file saved "
                f"from a keras.applications {s.title} (include_top=False), weights='imagenet' or "
                "weights=None"
            ) from None
    finally:
        skipped = []
        for layer, values in zip(layers_with_weights, initial, strict=True):
            if any(np.isnan(v.numpy()).all() for v in layer.weights if _is_float(v)):
                skipped.append(layer.name)
                for v, value in zip(layer.weights, values, strict=True):
                    v.assign(value)
    if len(skipped) == len(layers_with_weights):
        raise WeightsError(
            f"no layer of the {s.title} encoder matched the weights in {path} (names or shapes "
            f"differ); pass a file saved from a keras.applications {s.title} (include_top=False) "
            "with the same number of input channels, weights='imagenet' or weights=None"
        )
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        warnings.warn(
            f"{len(skipped)} of {len(layers_with_weights)} {s.title} layers were not found in "
            f"{path} (or have other shapes) and keep their initial values: {shown}",
            stacklevel=4,
        )


def _imagenet_normalization(backbone: keras.Model, channels: int) -> None:
    """Set the Normalization layers of an encoder graph (EfficientNet's) to ImageNet's mean and
    variance (std**2), on the [0, 1] scale its Rescaling(1/255) gives; grey input: their means."""
    import numpy as np
    from keras import layers

    mean = np.asarray(IMAGENET_MEAN_RGB, "float32")
    var = np.asarray(IMAGENET_STD_RGB, "float32") ** 2
    if channels != 3:
        mean, var = np.full(channels, mean.mean(), "float32"), np.full(channels, var.mean(),
                                                                      "float32")
    for layer in backbone.layers:
        if isinstance(layer, layers.Normalization) and hasattr(layer, "adapt_mean"):
            layer.adapt_mean.assign(mean.reshape(layer.adapt_mean.shape))
            layer.adapt_variance.assign(var.reshape(layer.adapt_variance.shape))
            layer.finalize_state()


# ---------------------------------------------------------------------- building
def preprocess(inputs: keras.KerasTensor, encoder: str = DEFAULT_ENCODER, *,
               pretrained: bool = False) -> keras.KerasTensor:
    """Turn [0, 1] images into what ``encoder`` expects (see the module docstring).

    Args:
        inputs: the model input, images in [0, 1].
        encoder: a name of :data:`ENCODERS`.
        pretrained: whether weights are loaded (the ResNets are preprocessed only then).

    Returns:
        ``inputs`` itself (a ResNet without weights) or the output of the layer
        ``encoder_preprocess`` (and, for "caffe" RGB, the channels reversed to BGR).
    """
    from keras import layers

    s = encoder_spec(encoder)
    if s.preprocessing == "pixels":
        return layers.Rescaling(255.0, name=PREPROCESS_LAYER)(inputs)
    if not pretrained:
        return inputs
    if s.preprocessing == "tf":
        return layers.Rescaling(2.0, offset=-1.0, name=PREPROCESS_LAYER)(inputs)
    channels = inputs.shape[-1]
    if channels == 3:
        x = layers.Rescaling(255.0, offset=[-m for m in CAFFE_MEAN_RGB],
                             name=PREPROCESS_LAYER)(inputs)
        return x[..., ::-1]  # RGB -> BGR, the channel order of the caffe weights
    return layers.Rescaling(255.0, offset=-sum(CAFFE_MEAN_RGB) / 3, name=PREPROCESS_LAYER)(inputs)


def build_encoder(inputs: keras.KerasTensor, encoder: str = DEFAULT_ENCODER, *,
                  weights: Weights = None) -> keras.Model:
    """Build ``encoder`` (keras.applications, no top) on ``inputs`` and load ``weights``.

    Weights are checked (file exists, ImageNet needs 3 channels, ImageNet file cached with the
    right checksum or downloadable) before any layer is made; the model is created with
    ``weights=None`` and :func:`load_encoder_weights` loads them.

    Args:
        inputs: a ``keras.Input`` of shape (H, W, C), images in [0, 1].
        encoder: a name of :data:`ENCODERS`.
        weights: None, "imagenet" or a path to a weights file.

    Example:
        >>> backbone = build_encoder(keras.Input((64, 64, 3)), "efficientnetb0")
        >>> encoder_features(backbone, "efficientnetb0")[16].shape
        (None, 4, 4, 672)
    """
    import keras

    s = encoder_spec(encoder)
    check_weights(weights, inputs.shape[-1], encoder)
    if isinstance(weights, str) and weights == "imagenet":
        imagenet_weights_file(encoder)  # fail early (offline) before creating layers
    x = preprocess(inputs, encoder, pretrained=weights is not None)
    backbone = getattr(keras.applications, s.constructor)(
        include_top=False, weights=None, input_tensor=x, **s.kwargs)
    load_encoder_weights(backbone, weights, encoder)
    return backbone


def tap(backbone: keras.Model, name: str) -> keras.KerasTensor:
    """The feature map a tap of the table names (a layer's output or input, or the output)."""
    if name == OUTPUT:
        return backbone.outputs[0]
    if name.endswith(":input"):
        return backbone.get_layer(name[: -len(":input")]).input
    return backbone.get_layer(name).output


def encoder_features(backbone: keras.Model, encoder: str = DEFAULT_ENCODER
                     ) -> dict[int, keras.KerasTensor]:
    """Return the encoder's feature maps by stride: 1 (the input), 2, 4, 8, 16 and 32."""
    features = {1: backbone.inputs[0]}
    for stride, name in encoder_spec(encoder).taps.items():
        features[stride] = tap(backbone, name)
    return features


# ---------------------------------------------------------------------- freezing
def encoder_stage(layer_name: str, encoder: str = DEFAULT_ENCODER) -> int | None:
    """Return the stage (1-5) of ``encoder`` a layer belongs to, None for other layers.

    Example:
        >>> encoder_stage("conv3_block2_1_conv"), encoder_stage("pool1_pool")
        (3, 1)
        >>> encoder_stage("block5b_add", "efficientnetb0"), encoder_stage("head_conv")
        (4, None)
    """
    return encoder_spec(encoder).stage(layer_name)


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
    encoder: str = DEFAULT_ENCODER,
) -> int:
    """Freeze encoder layers: "none", "all", or "stageN" = stages 1..N inclusive.

    Only layers in a stage of ``encoder`` (its ``stages`` in :data:`ENCODERS`) are touched.
    BatchNormalization layers of the frozen part are frozen too when ``freeze_batch_norm`` is
    True (they then also run in inference mode); with False they stay trainable. Layers outside
    the frozen part are left as they are.

    Args:
        layers: the layers (or a model whose ``.layers``) to go through.
        freeze: "none", "all" (stages 1..5), "stage1" .. "stage4".
        freeze_batch_norm: whether BatchNormalization layers in the frozen part are frozen.
        encoder: a name of :data:`ENCODERS`.

    Returns:
        The number of layers made non-trainable.

    Example:
        >>> freeze_encoder(model, "stage2", freeze_batch_norm=False)
    """
    from keras import layers as klayers

    check_freeze(freeze)
    s = encoder_spec(encoder)
    if freeze == "none":
        return 0
    last = 5 if freeze == "all" else int(freeze[len("stage") :])
    if hasattr(layers, "layers"):
        layers = layers.layers
    frozen = 0
    for layer in layers:
        stage = s.stage(layer.name)
        if stage is None or stage > last:
            continue
        if isinstance(layer, klayers.BatchNormalization) and not freeze_batch_norm:
            layer.trainable = True
            continue
        layer.trainable = False
        frozen += 1
    return frozen
