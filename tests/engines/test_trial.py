"""The one trial function: batch norm statistics that keep up, checkpoints to continue from."""

from __future__ import annotations

import keras

from segsearch.engines.trial import adapt_batch_norm, continuation


def _model_with_nested_batch_norm():
    inner_in = keras.Input((8, 8, 2))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(name="inner_bn")(inner_in),
                        name="inner")
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    h = keras.layers.BatchNormalization(name="outer_bn")(h)
    h = inner(h)
    slow = keras.layers.BatchNormalization(momentum=0.5, name="already_fast")(h)
    return keras.Model(inputs, slow)


def test_batch_norm_window_follows_the_epoch_length():
    model = _model_with_nested_batch_norm()
    assert adapt_batch_norm(model, epoch_steps=3) == 2  # outer and nested; 0.5 is already faster
    layers = {layer.name: layer for layer in model.layers}
    assert abs(layers["outer_bn"].momentum - 0.9) < 1e-9
    assert abs(layers["inner"].get_layer("inner_bn").momentum - 0.9) < 1e-9
    assert layers["already_fast"].momentum == 0.5

    big = _model_with_nested_batch_norm()
    assert adapt_batch_norm(big, epoch_steps=500) == 0  # 0.99 keeps up with 500 steps an epoch
    assert big.get_layer("outer_bn").momentum == 0.99


def test_continuation_prefers_the_last_epoch(tmp_path):
    assert continuation(tmp_path) is None
    (tmp_path / "model.keras").write_text("best")
    assert continuation(tmp_path).name == "model.keras"
    (tmp_path / "last.keras").write_text("last")
    assert continuation(tmp_path).name == "last.keras"
