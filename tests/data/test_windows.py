"""segsearch.data.windows: windows cover every pixel; an identity model blends to its input."""

from __future__ import annotations

import numpy as np
import pytest
from _thin import thin_lines

from segsearch.data.windows import gaussian_weights, sliding_window, window_corners, window_starts


@pytest.mark.parametrize("length, window, overlap", [
    (300, 64, 0.5), (340, 64, 0.5), (340, 128, 0.5), (300, 32, 0.25), (301, 64, 0.0), (64, 64, 0.5),
    (20, 64, 0.5), (65, 64, 0.5),
])
def test_window_starts_cover_the_side_with_at_least_the_overlap(length, window, overlap):
    starts = window_starts(length, window, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert starts[-1] == max(0, length - window)  # the last window is flush with the border
    steps = np.diff(starts)
    assert np.all(steps <= window * (1 - overlap) + 1e-9)  # neighbours overlap at least that much
    covered = np.zeros(max(length, window), int)
    for s in starts:
        covered[s:s + window] += 1
    assert np.all(covered[:length] >= 1)


@pytest.mark.parametrize("shape, window", [((300, 340), (64, 64)), ((300, 340), (32, 48)),
                                           ((20, 50), (32, 32)), ((77, 91), (32, 32))])
def test_windows_cover_every_pixel(shape, window):
    count = np.zeros((max(shape[0], window[0]), max(shape[1], window[1])), int)
    for y, x in window_corners(shape, window, 0.5):
        count[y:y + window[0], x:x + window[1]] += 1
    assert count.shape[0] >= shape[0] and count.shape[1] >= shape[1]
    assert count[:shape[0], :shape[1]].min() >= 1
    if min(shape[0] - window[0], shape[1] - window[1]) >= window[0]:
        assert count[:shape[0], :shape[1]].max() >= 4  # 50% overlap: inner pixels seen 4 times


def test_gaussian_weights_peak_in_the_middle_with_sigma_an_eighth():
    g = gaussian_weights((64, 64))
    assert g.dtype == np.float32 and g.shape == (64, 64)
    assert g.max() == pytest.approx(1.0, abs=1e-6) and g.min() > 0
    np.testing.assert_allclose(g, g[::-1, ::-1], rtol=1e-6)  # symmetric
    assert g[31, 31] == g.max()
    # sigma = 64 / 8 = 8 pixels about the centre 31.5: pixel 39 is 7.5 away, pixel 31 0.5
    expected = np.exp(-0.5 * (7.5 ** 2 - 0.5 ** 2) / 64)
    assert g[31, 39] / g[31, 31] == pytest.approx(expected, rel=1e-4)
    assert not g.flags.writeable


@pytest.mark.parametrize("overlap", [0.5, 0.0, 0.75])
def test_blend_of_an_identity_model_is_the_image(overlap):
    images, masks = thin_lines(1, (300, 340), seed=3)
    image = np.stack([images[0], masks[0] * 255, 255 - images[0]], axis=-1).astype(np.float32) / 255
    calls = []

    def identity(batch):
        calls.append(len(batch))
        return batch

    out = sliding_window(image, (64, 64), identity, overlap=overlap, batch_size=5)
    assert out.shape == image.shape
    np.testing.assert_allclose(out, image, atol=1e-5)
    assert max(calls) <= 5 and sum(calls) == len(window_corners((300, 340), (64, 64), overlap))


def test_blend_pads_images_smaller_than_a_window_and_keeps_their_size():
    image = np.random.default_rng(0).random((20, 50, 1), dtype=np.float32)
    out = sliding_window(image, (32, 32), lambda b: b, overlap=0.5)
    assert out.shape == (20, 50, 1)
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_blend_weights_favour_window_centres():
    """A model whose output is the window's index: each pixel takes mostly the window it is
    central in, and the blend stays between the windows' values."""
    image = np.zeros((96, 96, 1), np.float32)
    corners = window_corners((96, 96), (64, 64), 0.5)  # starts 0 and 32 on each axis
    seen = iter(range(len(corners)))

    def index_model(batch):
        return np.stack([np.full((64, 64, 1), float(next(seen)), np.float32) for _ in batch])

    out = sliding_window(image, (64, 64), index_model, overlap=0.5, batch_size=1)
    assert out.min() >= -1e-5 and out.max() <= len(corners) - 1 + 1e-5
    assert out[31, 31, 0] < out[64, 64, 0]  # the first window's centre vs the last's
    assert out[5, 5, 0] == pytest.approx(0.0, abs=1e-3)  # only window 0 covers the corner
    assert out[90, 90, 0] == pytest.approx(3.0, abs=1e-3)


def test_predict_batch_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"predict_batch returned shape"):
        sliding_window(np.zeros((40, 40, 1), np.float32), (32, 32), lambda b: b[:, :16])
