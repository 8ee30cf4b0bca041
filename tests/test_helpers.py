"""The set comparison of detections accepts float noise and near-tie swaps, and still catches real differences."""

import numpy as np
import pytest
from helpers import assert_same_detections

from yoloworld.results import Results

NAMES = ["person", "car", "dog"]


def results(boxes, scores, classes) -> Results:
    return Results(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes, np.int64), NAMES,
                   (480, 640))


@pytest.fixture
def reference() -> Results:
    boxes = [[10, 10, 50, 50], [100, 100, 150, 160], [100, 100, 150, 160], [300, 20, 360, 90], [5, 5, 20, 30]]
    return results(boxes, [0.95, 0.81000, 0.80995, 0.5, 0.2], [0, 1, 2, 0, 1])


def test_noise_and_swapped_near_ties_are_the_same_detections(reference):
    order = [0, 2, 1, 3, 4]  # the two near-tied scores swap places
    noisy = results(reference.xyxy[order] + 1e-3, reference.scores[order] + 2e-5, reference.class_ids[order])
    assert_same_detections(noisy, reference)


@pytest.mark.parametrize("change", ["shifted box", "changed class", "dropped detection", "changed score", "extra"])
def test_a_real_difference_fails(reference, change):
    boxes, scores, classes = reference.xyxy.copy(), reference.scores.copy(), reference.class_ids.copy()
    if change == "shifted box":
        boxes[3] += [2, 0, 2, 0]
    elif change == "changed class":
        classes[0] = 2
    elif change == "changed score":
        scores[3] = 0.49
    if change == "dropped detection":
        other = results(np.delete(boxes, 3, 0), np.delete(scores, 3), np.delete(classes, 3))
    elif change == "extra":
        other = results(np.vstack([boxes, [[0, 0, 9, 9]]]), np.append(scores, 0.3), np.append(classes, 0))
    else:
        other = results(boxes, scores, classes)
    with pytest.raises(AssertionError):
        assert_same_detections(other, reference)


def test_a_detection_at_a_cut_off_may_be_missing(reference):
    # the lowest score sits on the confidence threshold: float noise decides whether it is kept
    at_conf = results(reference.xyxy[:4], reference.scores[:4], reference.class_ids[:4])
    assert_same_detections(at_conf, reference, conf=0.19995)
    with pytest.raises(AssertionError):
        assert_same_detections(at_conf, reference, conf=0.1)
    # one side stopped at max_det: its lowest detection and the other's next one are interchangeable
    swapped_tail = results(np.vstack([reference.xyxy[:4], [[1, 1, 8, 8]]]), np.append(reference.scores[:4], 0.20005),
                           np.append(reference.class_ids[:4], 2))
    assert_same_detections(swapped_tail, reference, max_det=5)
    with pytest.raises(AssertionError):
        assert_same_detections(swapped_tail, reference)
