"""Helpers of the evaluation layer: model outputs -> COCO results, per-class AP, detection budgets, edge cases."""

import contextlib
import copy
import io
import json
import logging

import numpy as np
import pytest
from synthetic_coco import make_dataset

from yoloworld.errors import DatasetError, InputError
from yoloworld.eval import (
    evaluate,
    evaluate_detections,
    load_annotations,
    results_to_coco,
)
from yoloworld.eval.evaluate import top_k_per_group


def test_results_to_coco_maps_classes_and_converts_boxes():
    xyxy = np.array([[10.0, 20.0, 50.0, 80.0], [0.5, 1.5, 2.5, 9.5]], dtype=np.float32)
    records = results_to_coco(7, xyxy, np.array([0.9, 0.25]), np.array([1, 0]), category_ids=[3, 90])
    assert records == [
        {"image_id": 7, "category_id": 90, "bbox": [10.0, 20.0, 40.0, 60.0], "score": pytest.approx(0.9)},
        {"image_id": 7, "category_id": 3, "bbox": [0.5, 1.5, 2.0, 8.0], "score": 0.25},
    ]
    assert all(type(value) in (int, float, list) for record in records for value in record.values())
    json.dumps(records)  # plain Python types only
    assert results_to_coco(1, np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int), [1]) == []
    with pytest.raises(InputError, match="class index 2"):
        results_to_coco(1, xyxy, np.array([0.9, 0.2]), np.array([0, 2]), category_ids=[3, 90])


def test_top_k_per_group_keeps_best_scores_in_input_order():
    groups = np.array([1, 2, 1, 1, 2, 1])
    scores = np.array([0.1, 0.5, 0.9, 0.4, 0.7, 0.4])
    # group 1 scores 0.1, 0.9, 0.4, 0.4: top 2 = 0.9 and the first 0.4 (stable ties); group 2 keeps both
    assert top_k_per_group(groups, scores, 2).tolist() == [1, 2, 3, 4]
    assert top_k_per_group(groups, scores, 1).tolist() == [2, 4]


def test_per_class_ap_matches_pycocotools_per_category():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground_truth, predictions = make_dataset(num_images=80, num_categories=4, seed=21)
    rows = evaluate(ground_truth, predictions).per_class
    with contextlib.redirect_stdout(io.StringIO()):
        reference = COCO()
        reference.dataset = copy.deepcopy(ground_truth)
        reference.createIndex()
        results = reference.loadRes(copy.deepcopy(predictions))
        for row in rows:
            evaluator = COCOeval(reference, results, "bbox")
            evaluator.params.catIds = [row["category_id"]]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            assert row["AP"] == pytest.approx(evaluator.stats[0], abs=1e-4)
            assert row["AP50"] == pytest.approx(evaluator.stats[1], abs=1e-4)


def test_empty_predictions_score_zero_with_a_warning(caplog):
    ground_truth, _ = make_dataset(num_images=10, num_categories=3, seed=2, lvis=True)
    with caplog.at_level(logging.WARNING):
        metrics = evaluate_detections(ground_truth, [], lvis_mode="fixed")
    assert "no detections" in caplog.text
    assert metrics["mode"] == "lvis-fixed" and metrics["num_detections"] == 0
    assert metrics["AP"] == 0.0 and metrics["AP50"] == 0.0


def test_kind_detection_and_mismatch():
    coco, _ = make_dataset(num_images=3, num_categories=2, seed=0)
    lvis, _ = make_dataset(num_images=3, num_categories=3, seed=0, lvis=True)
    assert load_annotations(coco).kind == "coco" and load_annotations(lvis).kind == "lvis"
    assert load_annotations(lvis, "coco").kind == "coco"
    with pytest.raises(DatasetError, match="not an LVIS annotation file"):
        load_annotations(coco, "lvis")
    del lvis["categories"][1]["frequency"]
    with pytest.raises(DatasetError, match="category 2 has no frequency"):
        load_annotations(lvis)


def test_caller_data_is_not_modified():
    ground_truth, predictions = make_dataset(num_images=20, num_categories=3, seed=4)
    before = copy.deepcopy((ground_truth, predictions))
    evaluate_detections(ground_truth, predictions)
    assert (ground_truth, predictions) == before
