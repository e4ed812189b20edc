"""The registry: every architecture declared once, with its hyperparameters and its preset.

An :class:`ArchitectureSpec` holds what segsearch knows of one architecture: its snake_case key (the
YAML value, CLI word, export record and test id), its pure builder and the builder's argument
check, its architecture hyperparameters (:class:`~segsearch.params.Param` specs with their domains,
named as the builder's keyword arguments, defaults read from the builder), whether it takes
encoder weights, and its :class:`Preset`: the network of its source article, with the exact
parameter count the article's own Keras code gives (``weights=None``). The CLI, the space file,
the hypermodels, the tests and the docs read :data:`ARCHITECTURES` and :data:`PRESETS`.

Importing this module is cheap (no Keras, no keras-tuner): the builders import Keras when called.

Example:
    >>> from segsearch.hypermodels.registry import PRESETS, spec
    >>> PRESETS["unet"].parameters
    31055297
    >>> spec("deeplabv3plus").takes_weights
    True
    >>> model = PRESETS["resunet"].build()      # the network of the article, 8,227,393 params
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from segsearch.architectures import deeplabv3plus, resblock_unet, resnet50_unet, resunet, unet
from segsearch.blocks import ENCODER_NAMES, FREEZE_MODES, UPSAMPLING_MODES
from segsearch.errors import ConfigError, unknown_name
from segsearch.params import Domain, Param

__all__ = [
    "ARCHITECTURES",
    "PRESETS",
    "ArchitectureSpec",
    "Preset",
    "check_input_size",
    "names",
    "register",
    "spec",
]

#: The valid values of the numeric hyperparameters (what a space file may use; see
#: segsearch.params.Domain): what the layers, losses and optimizers accept.
POSITIVE_INT = Domain(1)  # filters, blocks: at least one
RATE = Domain(0.0, 1.0, high_open=True)  # dropout: 1 would drop everything
UNIT = Domain(0.0, 1.0)  # SGD momentum (Keras' own check), tversky alpha (beta = 1 - alpha)
NON_NEGATIVE = Domain(0.0)  # weight decay, focal gamma
POSITIVE = Domain(0.0, low_open=True)  # learning rate

#: The atrous-rate sets offered by default ("12,24,36" is the paper's choice at output stride 8).
ASPP_RATES: tuple[str, ...] = ("6,12,18", "12,24,36", "3,6,9", "2,4,6")


@dataclass(frozen=True)
class Preset:
    """A named network: an architecture, its builder arguments and what it must come to.

    As keras-hub's presets: the name, the builder's keyword arguments (empty: its defaults), the
    input it is defined at, and its exact parameter count, which a test holds.

    Args:
        name: the preset's name.
        architecture: the registry key of its builder.
        input_shape: the reference input, (H, W, C).
        num_classes: the channels of its head (1 = sigmoid, >= 2 = softmax).
        parameters: the parameter count of ``build()`` (Keras 3, ``weights=None``).
        source: the article the network comes from (the seed article).
        description: one line on the network.
        kwargs: builder keyword arguments besides the defaults.
    """

    name: str
    architecture: str
    input_shape: tuple[int, ...]
    num_classes: int
    parameters: int
    source: str
    description: str
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def build(self, **overrides: Any) -> Any:
        """Build the preset's network (a keras.Model); ``overrides`` change builder arguments."""
        return spec(self.architecture).builder(self.input_shape, self.num_classes,
                                               **{**self.kwargs, **overrides})


@dataclass(frozen=True)
class ArchitectureSpec:
    """Everything segsearch declares about one architecture, in one place.

    Args:
        key: the snake_case registry key.
        title: a short human name.
        builder: the pure builder ``build_<key>(input_shape, num_classes, **kwargs)``.
        validate: the builder's argument check: bound arguments -> a frozen object (or raises).
        params: ``(input_shape, weights) -> Param specs`` of the architecture hyperparameters,
            each named as a keyword argument of the builder, default = the builder's default.
        hypermodel: "module:ClassName" of its keras-tuner HyperModel, imported when first used.
        preset: the network of its source article.
        takes_weights: it has a pretrained (ResNet50) encoder that takes ``weights``.
        allows_3d: it also builds (D, H, W, C) volumes.
    """

    key: str
    title: str
    builder: Callable[..., Any]
    validate: Callable[[Mapping[str, Any]], Any]
    params: Callable[[Sequence[Any], Any], tuple[Param, ...]]
    hypermodel: str
    preset: Preset
    takes_weights: bool = False
    allows_3d: bool = False

    def __post_init__(self) -> None:
        accepted = inspect.signature(self.builder).parameters
        for p in self.params((None, None, 3), "weights" if self.takes_weights else None):
            if p.name not in accepted:  # pragma: no cover - programming error
                raise ConfigError(f"{self.key}: hyperparameter {p.name!r} is not a keyword "
                                  f"argument of {self.builder.__name__}")
        if self.preset.architecture != self.key:  # pragma: no cover - programming error
            raise ConfigError(f"{self.key}: its preset builds {self.preset.architecture!r}")

    @property
    def default_num_classes(self) -> int:
        """The head of the preset: what the hypermodel builds when num_classes is None."""
        return self.preset.num_classes


#: key -> spec, filled by :func:`register` (a duplicate key is an error at import).
ARCHITECTURES: dict[str, ArchitectureSpec] = {}
#: preset name -> preset, filled by :func:`register`.
PRESETS: dict[str, Preset] = {}


def register(architecture: ArchitectureSpec) -> None:
    """Add an architecture (and its preset) to the registry.

    Raises:
        ConfigError: the key or the preset name is already registered.
    """
    key = architecture.key
    if key in ARCHITECTURES:
        raise ConfigError(f"architecture key {key!r} registered twice ({ARCHITECTURES[key].title} "
                          f"and {architecture.title}); every architecture needs its own key")
    if architecture.preset.name in PRESETS:
        raise ConfigError(f"preset {architecture.preset.name!r} registered twice")
    if ":" not in architecture.hypermodel:
        raise ConfigError(f"hypermodel target must be 'module:ClassName', got "
                          f"{architecture.hypermodel!r}")
    ARCHITECTURES[key] = architecture
    PRESETS[architecture.preset.name] = architecture.preset


def names() -> list[str]:
    """The registry keys, sorted."""
    return sorted(ARCHITECTURES)


def spec(key: str, where: str = "") -> ArchitectureSpec:
    """The spec registered under ``key``.

    Raises:
        ConfigError: unknown key (the message lists the keys and the closest one).
    """
    if key not in ARCHITECTURES:
        raise ConfigError(unknown_name("architecture", key, ARCHITECTURES, where=where))
    return ARCHITECTURES[key]


def check_input_size(architecture: str, input_shape: Sequence[int | None], **options: Any) -> Any:
    """Check, without building, that ``architecture`` can be built at ``input_shape``.

    ``options`` are the builder's keyword arguments (missing ones take the builder's defaults). The
    checks are the builder's own: input size divisible by the total stride 2**depth, ASPP rates
    smaller than the feature map at the ASPP input, image pooling on a map of at least 1x1, 2D / 3D
    support, the value of every argument, an existing weights file.

    Args:
        architecture: registry key, e.g. "deeplabv3plus".
        input_shape: (H, W, C), or (D, H, W, C) for resblock_unet.
        **options: builder keyword arguments, e.g. ``depth=4, aspp_rates="6,12,18"``.

    Returns:
        The checked arguments, as the frozen object the builder builds from.

    Raises:
        InfeasibleError: the configuration cannot work at this input size (the message says the
            fix).
        ConfigError: unknown architecture or option, or a bad value.
        WeightsError: a weights path that does not exist, or ImageNet weights with != 3 channels.

    Example:
        >>> check_input_size("deeplabv3plus", (64, 64, 3))
        InfeasibleError: deeplabv3plus: ASPP rate(s) 6, 12, 18 >= the 4x4 feature map at ...
    """
    s = spec(architecture)
    signature = inspect.signature(s.builder)
    valid = [n for n in signature.parameters if n not in ("input_shape", "name")]
    for option in options:
        if option not in signature.parameters or option == "input_shape":
            raise ConfigError(unknown_name(f"{architecture} option", option, valid))
    bound = signature.bind(input_shape, **options)
    bound.apply_defaults()
    return s.validate(bound.arguments)


# ---------------------------------------------------------------------- hyperparameters
def _upsampling(default: str, input_shape: Sequence[Any]) -> Param:
    """``upsampling``; bilinear is left out for 3D inputs (no trilinear layer)."""
    values = UPSAMPLING_MODES if len(tuple(input_shape)) == 3 else tuple(
        m for m in UPSAMPLING_MODES if m != "bilinear")
    return Param.Choice("upsampling", values, default=default, closed=True,
                        help="decoder upsampling: transposed conv, or nearest/bilinear resize "
                             "+ conv")


def _filters(default: int, values: Sequence[int] = (8, 16, 32, 64), help: str = "") -> Param:
    return Param.Choice("filters", values, default=default, domain=POSITIVE_INT,
                        help=help or "filters of the first level (doubling per level)")


def _depth(low: int, high: int, default: int, help: str, domain: Domain = POSITIVE_INT) -> Param:
    """``depth``, searched in low..high; ``domain``: the depths the builder accepts at all."""
    return Param.Int("depth", low, high, default=default, help=help, domain=domain)


def _levels(d: Mapping[str, Any], input_shape: Sequence[Any]) -> tuple[Param, Param]:
    """``upsampling`` and ``dropout``, defaults ``d``'s."""
    return (_upsampling(d["upsampling"], input_shape),
            Param.Float("dropout", 0.0, 0.5, default=d["dropout"],
                        help="dropout rate after each block", domain=RATE))


def _batch_norm(d: Mapping[str, Any]) -> Param:
    return Param.Boolean("batch_norm", default=d["batch_norm"],
                         help="batch normalization in the conv blocks")


def _freeze(weights: Any) -> tuple[Param, Param]:
    """``freeze`` (searchable only with pretrained weights) and ``freeze_batch_norm``."""
    if weights is None:
        freeze = Param.Fixed("freeze", "none", allowed=FREEZE_MODES,
                             help="encoder stages to freeze (needs pretrained weights)")
    else:
        freeze = Param.Choice("freeze", FREEZE_MODES, default="none", closed=True,
                              help="encoder stages to freeze: none, all, or stages 1..N")
    freeze_bn = Param.Boolean("freeze_batch_norm", default=True, parent="freeze",
                              parent_values=[v for v in FREEZE_MODES if v != "none"],
                              help="also freeze the batch norms of the frozen stages")
    return freeze, freeze_bn


def _encoder(default: str) -> Param:
    """``encoder``: fixed at the preset's ResNet50 unless a space lists encoders to search."""
    return Param.Fixed("encoder", default, allowed=ENCODER_NAMES,
                       help="keras.applications encoder: " + ", ".join(ENCODER_NAMES))


def _defaults(builder: Callable[..., Any]) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(builder).parameters.items()}


def _unet_params(input_shape: Sequence[Any], weights: Any) -> tuple[Param, ...]:
    d = _defaults(unet.build_unet)
    return (_depth(2, 5, d["depth"], "number of 2x2 poolings (levels below full resolution)"),
            _filters(d["filters"]), *_levels(d, input_shape), _batch_norm(d))


def _resunet_params(input_shape: Sequence[Any], weights: Any) -> tuple[Param, ...]:
    d = _defaults(resunet.build_resunet)
    return (_depth(2, 4, d["depth"], "number of stride-2 downsamplings (the bridge is the last)"),
            _filters(d["filters"]), *_levels(d, input_shape), _batch_norm(d))


def _resblock_unet_params(input_shape: Sequence[Any], weights: Any) -> tuple[Param, ...]:
    d = _defaults(resblock_unet.build_resblock_unet)
    return (_depth(2, 5, d["depth"], "number of poolings (levels = depth + 1)"),
            _filters(d["filters"]),
            Param.Int("blocks", 1, 3, default=d["blocks"], help="residual blocks per level",
                      domain=POSITIVE_INT),
            *_levels(d, input_shape), _batch_norm(d))


def _resnet50_unet_params(input_shape: Sequence[Any], weights: Any) -> tuple[Param, ...]:
    d = _defaults(resnet50_unet.build_resnet50_unet)
    return (_depth(2, 5, d["depth"],
                   "ResNet50 stage used as bridge (stride 2**depth; 4 = conv4_block6_out)",
                   domain=Domain(resnet50_unet.MIN_DEPTH, resnet50_unet.MAX_DEPTH)),
            _filters(d["filters"], help="filters of the last (full-resolution) decoder level, "
                                        "doubling per level upwards"),
            *_levels(d, input_shape), _batch_norm(d), _encoder(d["encoder"]),
            *_freeze(weights))


def _deeplabv3plus_params(input_shape: Sequence[Any], weights: Any) -> tuple[Param, ...]:
    d = _defaults(deeplabv3plus.build_deeplabv3plus)
    upsampling, dropout = _levels(d, input_shape)
    return (_depth(3, 4, d["depth"],
                   "ResNet50 stage feeding the ASPP (stride 2**depth; 4 = conv4_block6_out)",
                   domain=Domain(deeplabv3plus.MIN_DEPTH, deeplabv3plus.MAX_DEPTH)),
            Param.Choice("aspp_rates", ASPP_RATES, default=",".join(map(str, d["aspp_rates"])),
                         help="dilation rates of the three atrous ASPP branches"),
            Param.Choice("aspp_filters", (64, 128, 256), default=d["aspp_filters"],
                         domain=POSITIVE_INT,
                         help="filters of every ASPP branch and its projection"),
            Param.Boolean("aspp_pooling", default=d["aspp_pooling"],
                          help="ASPP image-pooling branch"),
            Param.Choice("filters", (64, 128, 256), default=d["filters"], domain=POSITIVE_INT,
                         help="filters of the two 3x3 decoder convs"),
            upsampling, dropout, _batch_norm(d), _encoder(d["encoder"]),
            *_freeze(weights))


# ---------------------------------------------------------------------- the table
def _source(seed: str, title: str) -> str:
    """The article a preset comes from, by its title (``seed``: the project's own copy of it,
    kept outside the package)."""
    del seed
    return title


for _spec in (
    ArchitectureSpec(
        key="unet", title="U-Net", builder=unet.build_unet, validate=unet.validate_unet,
        params=_unet_params, hypermodel="segsearch.hypermodels.unet:UNetHyperModel",
        preset=Preset("unet", "unet", (512, 512, 3), 1, 31_055_297,
                      _source("003_b2c16c1aaf6c8eef.txt",
                              "UNET Implementation in TensorFlow using Keras API"),
                      "U-Net (Ronneberger et al. 2015), 4 poolings, filters 64-128-256-512, "
                      "bridge 1024, conv-BN-ReLU x2 blocks, 2x2 transposed-conv upsampling"),
    ),
    ArchitectureSpec(
        key="resunet", title="Deep Residual U-Net", builder=resunet.build_resunet,
        validate=resunet.validate_resunet, params=_resunet_params,
        hypermodel="segsearch.hypermodels.resunet:ResUNetHyperModel",
        preset=Preset("resunet", "resunet", (224, 224, 3), 1, 8_227_393,
                      _source("001_3ba55ee71d7a352f.txt",
                              "ResUNET: A TensorFlow Implementation for Semantic Segmentation"),
                      "Deep Residual U-Net (Zhang et al., road extraction): pre-activation "
                      "residual blocks, stride-2 downsampling, filters 64-128-256, bridge 512, "
                      "2x nearest upsampling"),
    ),
    ArchitectureSpec(
        key="resnet50_unet", title="ResNet50 U-Net", builder=resnet50_unet.build_resnet50_unet,
        validate=resnet50_unet.validate_resnet50_unet, params=_resnet50_unet_params,
        hypermodel="segsearch.hypermodels.resnet50_unet:ResNet50UNetHyperModel",
        takes_weights=True,
        preset=Preset("resnet50_unet", "resnet50_unet", (512, 512, 3), 1, 20_676_545,
                      _source("000_eacdca21f6735b98.txt",
                              "Step-by-Step Guide to ResNet50 UNET in TensorFlow"),
                      "keras.applications ResNet50 encoder, bridge conv4_block6_out, decoder "
                      "512-256-128-64 with 2x2 transposed convs"),
    ),
    ArchitectureSpec(
        key="deeplabv3plus", title="DeepLabV3+ with ResNet50",
        builder=deeplabv3plus.build_deeplabv3plus, validate=deeplabv3plus.validate_deeplabv3plus,
        params=_deeplabv3plus_params,
        hypermodel="segsearch.hypermodels.deeplabv3plus:DeepLabV3PlusHyperModel",
        takes_weights=True,
        preset=Preset("deeplabv3plus", "deeplabv3plus", (512, 512, 3), 1, 17_830_209,
                      _source("002_4785e756683758d2.txt",
                              "DeepLabV3+ ResNet50 Architecture in TensorFlow using Keras"),
                      "ResNet50 encoder, ASPP (rates 6, 12, 18, 256 filters, image pooling) on "
                      "conv4_block6_out, low-level conv2_block2_out, x4 bilinear upsampling"),
    ),
    ArchitectureSpec(
        key="resblock_unet", title="U-Net with residual blocks",
        builder=resblock_unet.build_resblock_unet, validate=resblock_unet.validate_resblock_unet,
        params=_resblock_unet_params,
        hypermodel="segsearch.hypermodels.resblock_unet:ResBlockUNetHyperModel", allows_3d=True,
        preset=Preset("resblock_unet", "resblock_unet", (256, 256, 1), 2, 32_446_914,
                      _source("004_5ba3853d2578a26f.txt",
                              "UNet with ResBlock for Semantic Segmentation (N. Singla, 2019)"),
                      "U-Net whose every level is one residual block, 5 levels, root filters 64, "
                      "upsample + 2x2 conv, softmax head"),
    ),
):
    register(_spec)
del _spec
