"""Every encoder of the table under both decoders (ResNet50-U-Net and DeepLabV3+): it builds at
64x64 with weights=None, the layers ``freeze`` makes non-trainable are the table's stages, and it
trains one step without touching the frozen weights.

The default run trains each encoder but the big ones (ResNet101, EfficientNetB3, EfficientNetB4)
under one decoder; the other cases are marked slow (``-m slow``): about 2-4 s each on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from segsearch.architectures.deeplabv3plus import build_deeplabv3plus  # noqa: E402
from segsearch.architectures.resnet50_unet import build_resnet50_unet  # noqa: E402
from segsearch.blocks import ENCODER_NAMES, ENCODERS  # noqa: E402

SLOW = {"resnet101", "efficientnetb3", "efficientnetb4"}
DECODERS = {
    "resnet50_unet": (build_resnet50_unet, {"depth": 3, "filters": 4}),
    "deeplabv3plus": (build_deeplabv3plus, {"depth": 3, "aspp_rates": (1, 2), "aspp_filters": 8,
                                            "low_level_filters": 8, "filters": 8}),
}
_SMALL = [e for e in ENCODER_NAMES if e not in SLOW]


def _slow(encoder: str, decoder: str) -> bool:
    """The default run trains each small encoder under one decoder, alternating between the two
    (both decoders see a ResNet, an EfficientNet and a MobileNetV3); the rest is slow."""
    return encoder in SLOW or decoder != list(DECODERS)[_SMALL.index(encoder) % 2]


CASES = [pytest.param(encoder, decoder, id=f"{encoder}-{decoder}",
                      marks=[pytest.mark.slow] if _slow(encoder, decoder) else [])
         for encoder in ENCODER_NAMES for decoder in DECODERS]


@pytest.mark.parametrize("encoder,decoder", CASES)
def test_encoder_builds_freezes_and_trains_one_step(encoder, decoder):
    builder, kwargs = DECODERS[decoder]
    keras.utils.set_random_seed(0)
    model = builder((64, 64, 3), encoder=encoder, freeze="stage2", freeze_batch_norm=True,
                    **kwargs)
    assert model.output_shape == (None, 64, 64, 1)
    spec = ENCODERS[encoder]
    frozen, trainable = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        stage = spec.stage(layer.name)
        if stage is not None and stage <= 2:
            assert not layer.trainable, layer.name
            frozen.append(layer)
        else:
            assert layer.trainable, layer.name
            trainable.append(layer)
    assert frozen and trainable
    before = [v.numpy() for layer in frozen for v in layer.weights]
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
    y = (np.random.default_rng(1).random((2, 64, 64, 1)) > 0.5).astype("float32")
    # eager: one step, so tracing a graph (most of the time on CPU) is not worth it
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                  run_eagerly=True)
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    after = [v.numpy() for layer in frozen for v in layer.weights]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
