"""Test-time augmentation: exact inverses, the transforms the augmentation used, non-square
inputs, and the sliding-window path."""

from __future__ import annotations

import numpy as np
import pytest

from segsearch import tta
from segsearch.data.augment import Augment
from segsearch.errors import ConfigError


@pytest.mark.parametrize("shape", [(5, 7, 3), (6, 6, 1)])
def test_every_transform_round_trips_a_random_array(shape):
    x = np.random.default_rng(1).random(shape)
    seen = set()
    for name in tta.TRANSFORMS:
        moved = tta.forward(x, name)
        assert np.array_equal(tta.inverse(moved, name), x), name
        seen.add(moved.tobytes() + bytes(str(moved.shape), "ascii"))
    assert len(seen) == 8  # eight different images: the square's symmetries, no duplicate


def test_batch_axes_and_named_meanings():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4, 1)
    assert np.array_equal(tta.forward(x, "fliplr", (1, 2)), x[:, :, ::-1])
    assert np.array_equal(tta.forward(x, "fliplr_rot180", (1, 2)), x[:, ::-1])  # up-down
    assert np.array_equal(tta.forward(x, "rot180", (1, 2)), x[:, ::-1, ::-1])
    assert tta.forward(x, "rot90", (1, 2)).shape == (2, 4, 3, 1)
    assert np.array_equal(tta.inverse(tta.forward(x, "fliplr_rot270", (1, 2)), "fliplr_rot270",
                                      (1, 2)), x)
    with pytest.raises(ConfigError, match="unknown test-time transform 'flip'"):
        tta.forward(x, "flip")


def test_transforms_follow_the_augmentation_and_the_input_shape():
    both = tta.transforms_for(Augment(), (64, 64))
    assert both[0] == "rot0" and sorted(both) == sorted(tta.TRANSFORMS)
    # non-square: the augmentation rotates by 180 only, so quarter turns are never asked for
    assert tta.transforms_for(Augment(), (32, 64)) == ["rot0", "fliplr", "fliplr_rot180",
                                                        "rot180"]
    assert tta.transforms_for({"flip": False}, (32, 64)) == ["rot0", "rot180"]
    assert tta.transforms_for({"flip": False}, (32, 32)) == ["rot0", "rot90", "rot180", "rot270"]
    assert tta.transforms_for({"rotate90": False}, (32, 32)) == ["rot0", "fliplr",
                                                                 "fliplr_rot180", "rot180"]
    assert tta.transforms_for(0, (32, 32)) == ["rot0"]  # augmentation off: nothing to undo
    assert tta.transforms_for({"flip": False, "rotate90": False}, (32, 32)) == ["rot0"]
    assert len(tta.transforms_for(True, (None, None))) == 8  # any size: quarter turns allowed


def test_an_equivariant_function_gives_the_plain_output():
    x = np.random.default_rng(2).random((3, 6, 6, 2)).astype(np.float32)

    def pixelwise(batch):
        return 1 / (1 + np.exp(-(batch[..., :1] * 3 - batch[..., 1:])))

    names = tta.transforms_for(True, (6, 6))
    np.testing.assert_allclose(tta.predict(pixelwise, x, names, axes=(1, 2)), pixelwise(x),
                               rtol=1e-6, atol=1e-7)


def test_a_position_dependent_function_is_averaged_over_the_orbit():
    x = np.zeros((4, 4, 1), np.float32)
    ramp = np.arange(16, dtype=np.float32).reshape(4, 4, 1)

    out = tta.predict(lambda image: image + ramp, x, ["rot0", "rot180"])
    # each transformed input is zero; the ramp is added, turned back, and averaged
    np.testing.assert_allclose(out, (ramp + np.rot90(ramp, 2)) / 2)


def test_non_square_images_turn_through_their_transposed_size():
    x = np.random.default_rng(3).random((5, 9, 1)).astype(np.float32)
    shapes = []

    def record(image):
        shapes.append(image.shape)
        return image * 2

    out = tta.predict(record, x, tta.transforms_for(True, None))
    assert out.shape == x.shape
    np.testing.assert_allclose(out, x * 2, rtol=1e-6)
    assert (9, 5, 1) in shapes and (5, 9, 1) in shapes


def test_sliding_windows_of_a_pixelwise_model_are_unchanged_by_tta():
    keras = pytest.importorskip("keras")
    from segsearch.sliding import predict_image

    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid",
                                  kernel_initializer=keras.initializers.Constant(4.0),
                                  bias_initializer=keras.initializers.Constant(-2.0))(inputs)
    model = keras.Model(inputs, outputs)
    image = np.random.default_rng(4).random((20, 37, 1)).astype(np.float32)  # not square

    def windows(img):
        return predict_image(model, img, overlap=0.5, batch_size=4)

    plain = windows(image)
    both = tta.predict(windows, image, tta.transforms_for(True, (16, 16)))
    assert both.shape == plain.shape == (20, 37, 1)
    np.testing.assert_allclose(both, plain, atol=1e-5)
