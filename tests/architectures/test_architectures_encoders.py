"""Every encoder of the table under both decoders (ResNet50-U-Net and DeepLabV3+): it builds at
64x64 with weights=None, the layers ``freeze`` makes non-trainable are the table's stages, and it
trains one step without touching the frozen weights.

The big encoders (ResNet101, EfficientNetB3, EfficientNetB4) are marked slow (``-m slow``).
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
CASES = [pytest.param(encoder, decoder, id=f"{encoder}-{decoder}",
                      marks=[pytest.mark.slow] if encoder in SLOW else [])
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
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    after = [v.numpy() for layer in frozen for v in layer.weights]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
