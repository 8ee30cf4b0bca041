"""Score COCO-format detections against a COCO or LVIS annotation set with faster-coco-eval.

Three labelled modes:
  coco           pycocotools rules (AP over IoU .50:.95, max 100 detections per image and category)
  lvis-standard  lvis-api rules, top 300 detections per image (the numbers in the official repo's tables)
  lvis-fixed     Fixed AP (Dave et al. 2021, used in the YOLO-World paper): top 10,000 detections per
                 category over the whole dataset, no per-image cap
Tests prove each mode equals pycocotools / lvis-api on the same detections. `iou_type="segm"` scores the masks
of the same detections (COCO RLE in 'segmentation') against the annotation polygons / RLE instead of the boxes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from yoloworld.errors import ConfigError
from yoloworld.eval.inputs import (
    Annotations,
    PredictionSet,
    check_predictions,
    load_annotations,
    load_predictions,
)
from yoloworld.eval.summary import (
    Evaluation,
    coco_metrics,
    lvis_metrics,
    per_class_rows,
)

logger = logging.getLogger(__name__)

COCO_MAX_DETS = [1, 10, 100]
LVIS_STANDARD_MAX_PER_IMAGE = 300
LVIS_FIXED_MAX_PER_CLASS = 10_000
LVIS_FIXED_MODEL_MAX_PER_IMAGE = 1000  # the paper's max_per_img when producing detections for Fixed AP

def evaluate_detections(
    annotations: str | Path | dict | Annotations,
    predictions: str | Path | list[dict],
    kind: str = "auto",
    lvis_mode: str = "standard",
    out_dir: str | Path | None = None,
) -> dict:
    """Score COCO results (image_id, category_id, bbox [x, y, w, h], score) and return flat metrics.

    kind: 'auto' (LVIS when categories carry 'frequency'), 'coco' or 'lvis'. lvis_mode: 'standard' or
    'fixed' (ignored for COCO). The dict holds 'mode' plus AP, AP50, AP75, APs, APm, APl and recall
    figures (LVIS adds APr, APc, APf); -1 means the group has no ground truth, as in pycocotools.
    Empty predictions are scored (every AP is 0) with a warning, so an early training epoch cannot crash.
    With out_dir, also writes per_class_ap_<mode>.csv and pr_curve_<mode>.png there.
    """
    evaluation = evaluate(annotations, predictions, kind=kind, lvis_mode=lvis_mode)
    if out_dir is not None:
        from yoloworld.eval.report import (
            write_reports,  # matplotlib is only needed for reports
        )

        write_reports(evaluation, Path(out_dir))
    return evaluation.metrics


def evaluate(
    annotations, predictions, kind: str = "auto", lvis_mode: str = "standard", predictions_name: str | None = None,
    iou_type: str = "bbox",
) -> Evaluation:
    """evaluate_detections without the files: returns the full Evaluation.

    predictions_name names an in-memory list in error messages (e.g. the file it was read from). iou_type
    'segm' scores masks (metrics then carry 'iou_type': 'segm').
    """
    if iou_type not in ("bbox", "segm"):
        raise ConfigError(f"unknown iou_type {iou_type!r}; use 'bbox' or 'segm'")
    checked = load_annotations(annotations, kind)
    records, name = load_predictions(predictions, predictions_name)
    detections = check_predictions(records, checked, name)
    mode = mode_name(checked.kind, lvis_mode)
    if not records:
        logger.warning("warning: %s holds no detections; every AP is 0", name)
    if iou_type == "segm":
        _check_masks(checked, records, name)
    return _run(checked, select_detections(detections, mode), mode, iou_type)


def has_masks(annotations: Annotations) -> bool:
    """Every ground-truth annotation has a mask (polygons or RLE): segm AP can be computed."""
    return all(ann.get("segmentation") for ann in annotations.dataset["annotations"])


def _check_masks(annotations: Annotations, records: list, name: str) -> None:
    if not has_masks(annotations):
        raise ConfigError("mask AP needs a 'segmentation' (polygons or RLE) on every ground-truth annotation")
    if any("segmentation" not in record for record in records):
        raise ConfigError(f"{name}: mask AP needs a 'segmentation' (COCO RLE) in every detection")


def mode_name(kind: str, lvis_mode: str) -> str:
    if lvis_mode not in ("standard", "fixed"):
        raise ConfigError(f"unknown LVIS mode {lvis_mode!r}; use 'standard' or 'fixed'")
    return "coco" if kind == "coco" else f"lvis-{lvis_mode}"


def select_detections(detections: PredictionSet, mode: str) -> PredictionSet:
    """Apply the mode's detection budget before scoring (COCO's own cap lives inside the evaluator)."""
    if mode == "lvis-standard":
        return detections.subset(top_k_per_group(detections.image_ids, detections.scores, LVIS_STANDARD_MAX_PER_IMAGE))
    if mode == "lvis-fixed":
        return detections.subset(top_k_per_group(detections.category_ids, detections.scores, LVIS_FIXED_MAX_PER_CLASS))
    return detections


def top_k_per_group(groups: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices of the k highest scores within each group (ties keep input order, like a stable sort)."""
    order = np.lexsort((-scores, groups))
    sorted_groups = groups[order]
    rank = np.arange(order.size) - np.searchsorted(sorted_groups, sorted_groups, side="left")
    return np.sort(order[rank < k])


def _run(annotations: Annotations, detections: PredictionSet, mode: str, iou_type: str = "bbox") -> Evaluation:
    from faster_coco_eval import COCO, COCOeval_faster

    quiet = lambda *args, **kwargs: None  # noqa: E731  the evaluator prints progress we do not want
    ground_truth = COCO(annotations.dataset, print_function=quiet)
    # loadRes adds id/area/segmentation to each record: give it copies so the caller's list stays untouched
    results = ground_truth.loadRes([dict(record) for record in detections.records])
    evaluator = COCOeval_faster(ground_truth, results, iou_type, print_function=quiet, lvis_style=mode != "coco")
    evaluator.params.maxDets = _max_dets(detections, mode)
    evaluator.evaluate()
    evaluator.accumulate()
    precision, recall = evaluator.eval["precision"], evaluator.eval["recall"]
    iou_thresholds = evaluator.params.iouThrs
    categories = sorted(annotations.categories, key=lambda cat: cat["id"])
    if mode == "coco":
        metrics = coco_metrics(precision, recall, iou_thresholds, evaluator.params.maxDets)
    else:
        metrics = lvis_metrics(precision, recall, iou_thresholds, [cat["frequency"] for cat in categories])
    metrics = {"mode": mode, **metrics, "num_images": len(annotations.dataset["images"]),
               "num_detections": len(detections.records), **({"iou_type": "segm"} if iou_type == "segm" else {})}
    rows = per_class_rows(precision, iou_thresholds, categories, annotations.dataset["annotations"],
                          detections.category_ids)
    return Evaluation(metrics, rows, precision, iou_thresholds, evaluator.params.recThrs)


def _max_dets(detections: PredictionSet, mode: str) -> list[int]:
    if mode == "coco":
        return list(COCO_MAX_DETS)
    if mode == "lvis-standard":
        return [LVIS_STANDARD_MAX_PER_IMAGE]
    # "no per-image cap": the evaluator allocates per budget, so use the largest per-image count there is
    counts = np.bincount(np.unique(detections.image_ids, return_inverse=True)[1]) if detections.records else [1]
    return [int(max(counts))]
