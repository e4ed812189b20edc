"""Post-processing on hand-made masks: the largest component kept, small ones removed, each
applied only when it raises the validation score."""

from __future__ import annotations

import numpy as np

from segsearch import postprocess, scores


def _blobs(*boxes, shape=(12, 12), cls=1, base=None):
    ids = np.zeros(shape, np.int64) if base is None else base.copy()
    for top, left, h, w in boxes:
        ids[top:top + h, left:left + w] = cls
    return ids


def _dice(truths):
    def score(preds):
        matrix = scores.confusion_matrix(truths, preds, 1)
        return scores.confusion_scores(matrix, 1, 0)["val_dice"]
    return score


def test_keep_largest_and_min_size_on_a_hand_made_mask():
    ids = _blobs((1, 1, 3, 3), (7, 7, 1, 1), (9, 0, 2, 2))  # 9, 1 and 4 pixels
    largest = postprocess.apply(ids, [{"class": 1, "keep_largest": True}], 0)
    assert largest.sum() == 9 and largest[1:4, 1:4].all()
    small = postprocess.apply(ids, [{"class": 1, "min_size": 3}], 0)
    assert small.sum() == 13 and small[7, 7] == 0  # only the 1-pixel speck goes
    # min_size at another resolution: 4x the pixels per validation pixel
    assert postprocess.apply(ids, [{"class": 1, "min_size": 3}], 0, area_scale=4).sum() == 0
    assert np.array_equal(ids, _blobs((1, 1, 3, 3), (7, 7, 1, 1), (9, 0, 2, 2)))  # untouched


def test_diagonal_pixels_are_separate_components():
    ids = np.eye(4, dtype=np.int64)
    assert postprocess.apply(ids, [{"class": 1, "keep_largest": True}], 0).sum() == 1


def test_removed_pixels_become_the_background_class_and_other_classes_stay():
    ids = np.full((6, 6), 2, np.int64)
    ids[0:2, 0:2] = 1
    ids[4, 4] = 1
    ids[5, 0] = 0
    out = postprocess.apply(ids, [{"class": 1, "keep_largest": True}], background=2)
    assert out[4, 4] == 2 and out[0:2, 0:2].tolist() == [[1, 1], [1, 1]] and out[5, 0] == 0
    # without a background class nothing is changed
    assert postprocess.apply(ids, [{"class": 1, "keep_largest": True}], None) is ids
    assert postprocess.foreground_classes(1, 0) == [1]
    assert postprocess.foreground_classes(3, 1) == [0, 2]
    assert postprocess.foreground_classes(3, None) == []


def test_size_grid_from_the_smallest_true_component():
    truths = [_blobs((0, 0, 4, 4), (8, 8, 2, 4))[..., None].astype(np.float32),
              _blobs((1, 1, 5, 5))]
    assert postprocess.size_grid(truths, 1) == [2, 4, 8]  # smallest: 8 pixels
    assert postprocess.size_grid([np.zeros((4, 4))], 1) == []
    # a one-pixel true component (a mask resized from its own resolution) leaves the shares of
    # the image's pixels: 4 to 64 pixels of a 128x128 image
    speck = np.zeros((128, 128))
    speck[5, 5] = 1
    assert postprocess.size_grid([speck], 1) == [4, 8, 16, 32, 64]


def test_holes_of_a_binary_mask_are_filled_when_it_raises_the_score():
    """The background class of a binary problem: its small components (holes in the foreground)
    become the foreground; the real gap between two objects stays."""
    truth = _blobs((0, 0, 12, 5), (0, 7, 12, 5), shape=(12, 12))  # a 2-pixel-wide gap
    truth[8:11, 1:4] = 0  # and a real hole of 9 pixels
    pred = truth.copy()
    pred[3, 2] = pred[8, 9] = pred[8, 10] = 0  # false holes of 1 and 2 pixels
    rules, log = postprocess.choose([pred], [truth], num_classes=1, background=0,
                                    score=_dice([truth]))
    assert rules == [{"class": 0, "name": None, "keep_largest": False, "min_size": 4, "into": 1}]
    assert log["with"] == 1.0 and np.array_equal(postprocess.apply(pred, rules, 0), truth)
    tried = [t for t in log["tried"] if t["class"] == 0]
    assert tried[0]["keep_largest"] and not tried[0]["kept"]  # it would fill the real hole too
    assert all(t["into"] == 1 for t in tried)
    # rules without "into" (an export before it) still give removed pixels to the background
    assert postprocess.apply(pred, [{"class": 1, "min_size": 100}], 0).sum() == 0


def test_a_multi_class_problem_fills_no_holes():
    truth = _blobs((0, 0, 6, 6), cls=1, shape=(12, 12))
    truth = _blobs((6, 6, 6, 6), cls=2, base=truth)
    pred = truth.copy()
    pred[2, 2] = 0

    def score(preds):
        return scores.confusion_scores(scores.confusion_matrix([truth], preds, 3), 3,
                                       0)["val_mean_iou"]

    _, log = postprocess.choose([pred], [truth], num_classes=3, background=0, score=score)
    assert {t["class"] for t in log["tried"]} == {1, 2}


def test_keep_largest_is_chosen_when_it_raises_the_score():
    truth = _blobs((2, 2, 5, 5))
    pred = _blobs((2, 2, 5, 5), (10, 10, 2, 1), (0, 11, 1, 1))
    rules, log = postprocess.choose([pred], [truth], num_classes=1, background=0,
                                    score=_dice([truth]))
    assert rules == [{"class": 1, "name": None, "keep_largest": True, "min_size": None}]
    assert log["with"] == 1.0 and log["without"] < 1.0
    assert [t["kept"] for t in log["tried"] if t["class"] == 1] == [True]
    assert all(t["into"] == 1 and not t["kept"] for t in log["tried"] if t["class"] == 0)


def test_min_size_is_chosen_when_the_largest_alone_would_lose_real_objects():
    truth = _blobs((1, 1, 4, 4), (7, 7, 3, 3))  # two real objects, the smaller of 9 pixels
    pred = _blobs((1, 1, 4, 4), (7, 7, 3, 3), (0, 11, 1, 1), (11, 0, 1, 2))
    rules, log = postprocess.choose([pred], [truth], num_classes=1, background=0,
                                    score=_dice([truth]), class_names=["bg", "cell"])
    assert rules == [{"class": 1, "name": "cell", "keep_largest": False, "min_size": 4}]
    assert log["with"] == 1.0
    tried = {(t["keep_largest"], t["min_size"]): t for t in log["tried"] if t["class"] == 1}
    assert not tried[(True, None)]["kept"] and tried[(False, 4)]["kept"]
    assert tried[(True, None)]["score"] < log["without"]  # keeping one object would cost
    cleaned = postprocess.apply(pred, rules, 0)
    assert np.array_equal(cleaned, truth)


def test_nothing_is_applied_when_no_step_raises_the_score():
    truth = _blobs((1, 1, 4, 4), (9, 9, 1, 1))  # a real one-pixel object
    pred = truth.copy()
    rules, log = postprocess.choose([pred], [truth], num_classes=1, background=0,
                                    score=_dice([truth]))
    assert rules == [] and log["with"] == log["without"] == 1.0
    assert log["tried"] and not any(t["kept"] for t in log["tried"])
    rules, log = postprocess.choose([pred], [truth], num_classes=1, background=None,
                                    score=_dice([truth]))
    assert rules == [] and "background" in log["note"]
