"""DeepLabV3PlusHyperModel: the ``deeplabv3plus`` architecture of the registry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from segsearch.errors import ConfigError
from segsearch.hypermodels.base import SegmentationHyperModel
from segsearch.hypermodels.registry import ASPP_RATES
from segsearch.params import Param

__all__ = ["DeepLabV3PlusHyperModel", "ASPP_RATES"]

_RATES_RE = re.compile(r"^\s*(\d+\s*(,\s*\d+\s*)*)?$")


class DeepLabV3PlusHyperModel(SegmentationHyperModel):
    """DeepLabV3+: ASPP on conv4_block6_out, x4 bilinear.

    The ASPP has rates 6,12,18, 256 filters and image pooling. Hyperparameters: depth (ASPP input
    stage: 3 = stride 8, 4 = stride 16), aspp_rates (strings such as "6,12,18"), aspp_filters,
    aspp_pooling, filters (decoder convs), upsampling, dropout, batch_norm, freeze and
    freeze_batch_norm (searchable only with ``weights``) + the training ones. The defaults build the
    ``deeplabv3plus`` preset (``segsearch.hypermodels.registry.PRESETS``).

    Example:
        >>> import keras_tuner
        >>> hm = DeepLabV3PlusHyperModel((64, 64, 3), space={"aspp_rates": "1,2,3"})
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    key: ClassVar[str] = "deeplabv3plus"

    def normalize_entry(self, name: str, entry: Any, where: str) -> Any:
        """aspp_rates: accept [6, 12, 18]-style lists inside a list of choices.

        For example ``[[6,12,18], ...]``.
        """
        if name != "aspp_rates":
            return entry

        def one(v: Any) -> Any:
            if isinstance(v, (list, tuple)) and all(isinstance(r, int) and not isinstance(r, bool)
                                                    for r in v):
                return ",".join(str(r) for r in v)
            return v

        if isinstance(entry, (list, tuple)):
            if entry and all(isinstance(v, int) and not isinstance(v, bool) for v in entry):
                raise ConfigError(
                    f"{where}: a list gives the choices, and each choice is one set of rates; "
                    f"got {list(entry)}. Write aspp_rates: \"{','.join(map(str, entry))}\" for "
                    "this one set, or a list of sets such as [\"6,12,18\", \"12,24,36\"]"
                )
            return [one(v) for v in entry]
        if isinstance(entry, Mapping):
            entry = dict(entry)
            for k in ("values", "fixed", "default"):
                if k in entry:
                    entry[k] = ([one(v) for v in entry[k]] if k == "values"
                                and isinstance(entry[k], (list, tuple)) else one(entry[k]))
        return entry

    def validate_param(self, param: Param, where: str) -> None:
        if param.name != "aspp_rates":
            return
        values = param.values if param.kind == "choice" else (param.default,)
        for v in values:
            if not isinstance(v, str) or not _RATES_RE.match(v):
                raise ConfigError(f"{where}: aspp_rates must be comma-separated positive integers "
                                  f"such as \"6,12,18\" (or \"\" for no atrous branch), got {v!r}")
            rates = [int(r) for r in v.split(",") if r.strip()]
            if any(r < 1 for r in rates) or len(set(rates)) != len(rates):
                raise ConfigError(f"{where}: aspp_rates must be distinct integers >= 1, got {v!r}")
