"""Mask AP: our evaluator (faster-coco-eval, iou_type='segm') equals pycocotools and lvis-api on the same masks;
`yoloworld val` reports it next to box AP for a segmentation model."""

import copy
import json
import logging

import cv2
import numpy as np
import pytest
from helpers import run_cli
from seg_helpers import official_seg_checkpoint
from synthetic_coco import make_dataset
from test_eval_equality import COCO_KEYS, LVIS_KEYS, pycocotools_stats

from yoloworld.eval import evaluate


def ellipse(box: list[float], points: int = 16) -> list[float]:
    """A polygon inscribed in an [x, y, w, h] box: masks whose overlaps differ from the boxes'."""
    x, y, w, h = box
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([x + w / 2 * (1 + np.cos(t)), y + h / 2 * (1 + np.sin(t))], axis=1).reshape(-1).tolist()


def with_masks(ground_truth: dict, predictions: list) -> tuple[dict, list]:
    """Polygon masks on the ground truth, compressed-RLE masks (as `yoloworld predict` writes) on the detections."""
    from faster_coco_eval.core import mask as mask_utils

    sizes = {image["id"]: (image["height"], image["width"]) for image in ground_truth["images"]}
    for ann in ground_truth["annotations"]:
        ann["segmentation"] = [ellipse(ann["bbox"])]
    for prediction in predictions:
        height, width = sizes[prediction["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects([ellipse(prediction["bbox"], 12)], height, width))
        prediction["segmentation"] = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
    return ground_truth, predictions


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2
def test_coco_mask_ap_equals_pycocotools():
    ground_truth, predictions = with_masks(*make_dataset(num_images=60, num_categories=6, seed=11))
    ours = evaluate(ground_truth, predictions, iou_type="segm").metrics
    box = evaluate(ground_truth, predictions).metrics
    assert ours["iou_type"] == "segm" and 0.05 < ours["AP"] < 0.95 and ours["AP"] != box["AP"]
    np.testing.assert_allclose([ours[k] for k in COCO_KEYS], pycocotools_stats(ground_truth, predictions, "segm"),
                               atol=1e-4, rtol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_lvis_mask_ap_equals_lvis_api(monkeypatch):
    from lvis import LVIS, LVISEval, LVISResults

    monkeypatch.setattr(np, "float", float, raising=False)  # lvis-api's mask path still uses np.float (numpy < 1.24)

    ground_truth, predictions = with_masks(*make_dataset(num_images=40, num_categories=9, seed=5, lvis=True))
    ours = evaluate(ground_truth, predictions, lvis_mode="standard", iou_type="segm").metrics
    reference = LVIS.__new__(LVIS)  # LVIS() only reads from a path
    reference.logger = logging.getLogger("lvis")
    reference.dataset = copy.deepcopy(ground_truth)
    reference._create_index()
    evaluator = LVISEval(reference, LVISResults(reference, copy.deepcopy(predictions), max_dets=300), "segm")
    evaluator.run()
    expected = evaluator.get_results()
    np.testing.assert_allclose([ours[k] for k in LVIS_KEYS], [expected[k] for k in LVIS_KEYS], atol=1e-4, rtol=0)


def test_val_reports_mask_ap_next_to_box_ap_for_a_segmentation_model(fixtures, tmp_path):
    """A tiny COCO set drawn with polygons; the official seg model (random weights) scores something."""
    from yoloworld.data.synth import SynthConfig, synthesize

    synthesize(tmp_path / "synth", SynthConfig(images=3, seed=1, min_side=96, max_side=128, max_objects=3))
    coco = tmp_path / "synth" / "coco"
    weights, _ = official_seg_checkpoint(fixtures, "v2", tmp_path)
    out = run_cli("val", "--weights", weights, "--text-model", fixtures / "tiny-clip", "--ann",
                  coco / "annotations.json", "--images", coco / "images", "--imgsz", 128,
                  "--metrics-json", tmp_path / "metrics.json")
    assert out.returncode == 0, out.stderr
    assert "mask COCO AP" in out.stdout and out.stdout.index("COCO AP") < out.stdout.index("mask COCO AP")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "AP" in metrics and "segm_AP" in metrics and metrics["segm_iou_type"] == "segm"


def test_rle_of_a_mask_round_trips():
    from faster_coco_eval.core import mask as mask_utils

    from yoloworld.masks import encode_rle

    mask = np.zeros((7, 9), bool)
    cv2.circle(mask.view(np.uint8), (4, 3), 2, 1, -1)
    rle = encode_rle(mask)
    assert rle["size"] == [7, 9]
    decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert (decoded.astype(bool) == mask).all()
