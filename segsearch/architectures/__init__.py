"""Pure network builders: one ``build_<key>`` per architecture, no hyperparameter objects.

Every builder checks its arguments once, before creating a layer (``validate_<key>``, which
returns them as a frozen object), and raises :class:`~segsearch.errors.InfeasibleError` for sizes,
depths or ASPP rates that cannot work, :class:`~segsearch.errors.ConfigError` for bad values and
:class:`~segsearch.errors.WeightsError` for weights that cannot be loaded. The builders' keyword
arguments have the names of the hyperparameters (``depth``, ``filters``, ``upsampling``, ...).

The architectures are named in one registry, :mod:`segsearch.hypermodels.registry` (key, builder,
hyperparameters, preset with its parameter count and source); its ``check_input_size`` runs a
builder's checks without building. Keras is imported only inside the builders, so importing this
package is cheap.

Example:
    >>> from segsearch.architectures import build_unet
    >>> model = build_unet((64, 64, 3), filters=8)
"""

from __future__ import annotations

from segsearch.architectures.deeplabv3plus import build_deeplabv3plus, validate_deeplabv3plus
from segsearch.architectures.resblock_unet import build_resblock_unet, validate_resblock_unet
from segsearch.architectures.resnet50_unet import build_resnet50_unet, validate_resnet50_unet
from segsearch.architectures.resunet import build_resunet, validate_resunet
from segsearch.architectures.unet import build_unet, validate_unet

__all__ = [
    "build_deeplabv3plus",
    "build_resblock_unet",
    "build_resnet50_unet",
    "build_resunet",
    "build_unet",
    "validate_deeplabv3plus",
    "validate_resblock_unet",
    "validate_resnet50_unet",
    "validate_resunet",
    "validate_unet",
]
