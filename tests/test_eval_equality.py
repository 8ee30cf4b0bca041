"""Our evaluator (faster-coco-eval underneath) equals the reference tools on the same detections.

COCO: all 12 pycocotools stats. LVIS: lvis-api in standard mode (300 per image) and Fixed AP mode
(top 10,000 per class, no per-image cap), on data where both caps actually bind.
"""

import contextlib
import copy
import io
import logging
from collections import defaultdict

import numpy as np
import pytest
from synthetic_coco import make_dataset

from yoloworld.eval import evaluate_detections

TOLERANCE = 1e-4
COCO_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
LVIS_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"]


def pycocotools_stats(ground_truth: dict, predictions: list, iou_type: str = "bbox") -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        reference = COCO()
        reference.dataset = copy.deepcopy(ground_truth)
        reference.createIndex()
        evaluator = COCOeval(reference, reference.loadRes(copy.deepcopy(predictions)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def lvis_api_results(ground_truth: dict, predictions: list, max_dets: int) -> dict:
    """lvis-api as its authors run it; max_dets=-1 is the Fixed AP setting (no per-image cap)."""
    from lvis import LVIS, LVISEval, LVISResults

    reference = LVIS.__new__(LVIS)  # LVIS() only reads from a path; build it from the dict instead
    reference.logger = logging.getLogger("lvis")
    reference.dataset = copy.deepcopy(ground_truth)
    reference._create_index()
    results = LVISResults(reference, copy.deepcopy(predictions), max_dets=max_dets)
    evaluator = LVISEval(reference, results, "bbox")
    evaluator.params.max_dets = max_dets
    evaluator.run()
    return evaluator.get_results()


def top_per_category(predictions: list, k: int) -> list:
    """The Fixed AP selection written plainly: the k best-scoring detections of each category."""
    by_category = defaultdict(list)
    for prediction in predictions:
        by_category[prediction["category_id"]].append(prediction)
    return [p for group in by_category.values() for p in sorted(group, key=lambda p: -p["score"])[:k]]


def test_coco_equals_pycocotools_on_all_twelve_stats():
    ground_truth, predictions = make_dataset(num_images=300, num_categories=12, seed=7)
    assert any(ann["iscrowd"] for ann in ground_truth["annotations"])  # crowd regions are exercised
    areas = np.array([ann["area"] for ann in ground_truth["annotations"]])
    assert (areas < 32**2).any() and ((areas > 32**2) & (areas < 96**2)).any() and (areas > 96**2).any()

    ours = evaluate_detections(ground_truth, predictions)
    reference = pycocotools_stats(ground_truth, predictions)

    assert ours["mode"] == "coco"
    assert 0.05 < ours["AP"] < 0.95  # a meaningful score, not a degenerate 0 or 1
    np.testing.assert_allclose([ours[key] for key in COCO_KEYS], reference, atol=TOLERANCE, rtol=0)


def test_coco_mode_is_used_for_lvis_file_when_asked():
    ground_truth, predictions = make_dataset(num_images=60, num_categories=9, seed=3, lvis=True)
    ours = evaluate_detections(ground_truth, predictions, kind="coco")
    assert ours["mode"] == "coco"
    np.testing.assert_allclose([ours[key] for key in COCO_KEYS], pycocotools_stats(ground_truth, predictions),
                               atol=TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def crowded_lvis():
    """LVIS-style data where many images exceed 300 detections and every category exceeds 10,000."""
    ground_truth, predictions = make_dataset(
        num_images=120, num_categories=6, seed=11, lvis=True, max_objects=12, false_positives=900
    )
    per_image = np.bincount([p["image_id"] for p in predictions])
    per_category = np.bincount([p["category_id"] for p in predictions])
    assert (per_image > 300).sum() > 50 and (per_category[1:] > 10_000).all()
    assert {cat["frequency"] for cat in ground_truth["categories"]} == {"r", "c", "f"}
    return ground_truth, predictions


@pytest.fixture()
def lvis_api(monkeypatch):
    monkeypatch.setattr(np, "float", float, raising=False)  # lvis-api still uses np.float, gone in numpy 2
    return lvis_api_results


def test_lvis_standard_equals_lvis_api(crowded_lvis, lvis_api):
    ground_truth, predictions = crowded_lvis
    ours = evaluate_detections(ground_truth, predictions, lvis_mode="standard")
    reference = lvis_api(ground_truth, predictions, max_dets=300)

    assert ours["mode"] == "lvis-standard"
    assert ours["AP"] > 0.05
    np.testing.assert_allclose([ours[key] for key in LVIS_KEYS], [reference[key] for key in LVIS_KEYS],
                               atol=TOLERANCE, rtol=0)
    assert abs(ours["AR"] - reference["AR@300"]) < TOLERANCE


def test_lvis_fixed_ap_equals_lvis_api(crowded_lvis, lvis_api):
    ground_truth, predictions = crowded_lvis
    ours = evaluate_detections(ground_truth, predictions, lvis_mode="fixed")
    reference = lvis_api(ground_truth, top_per_category(predictions, 10_000), max_dets=-1)

    assert ours["mode"] == "lvis-fixed"
    assert ours["num_detections"] == 6 * 10_000
    np.testing.assert_allclose([ours[key] for key in LVIS_KEYS], [reference[key] for key in LVIS_KEYS],
                               atol=TOLERANCE, rtol=0)
    # the two protocols budget differently: standard keeps at most 300 per image, Fixed AP keeps all here
    standard = evaluate_detections(ground_truth, predictions, lvis_mode="standard")
    per_image = np.bincount([p["image_id"] for p in predictions])
    assert standard["num_detections"] == np.minimum(per_image, 300).sum() < ours["num_detections"]
