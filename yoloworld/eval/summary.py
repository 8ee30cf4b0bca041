"""Named metrics and per-class rows from the evaluator's accumulated precision/recall arrays.

Conventions follow pycocotools and lvis-api exactly: a metric averages every entry that is not -1,
and a group with no ground truth at all reports -1.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

MODE_DESCRIPTIONS = {
    "coco": "COCO AP (IoU .50:.95, max 100 detections per image and class)",
    "lvis-standard": "LVIS standard AP (max 300 detections per image)",
    "lvis-fixed": "LVIS Fixed AP (top 10,000 detections per class over the dataset, no per-image cap)",
}


@dataclass
class Evaluation:
    """Everything one evaluation produced: the flat metrics plus what the reports need."""

    metrics: dict
    per_class: list[dict]
    precision: np.ndarray  # [IoU thresholds, recall thresholds, classes, areas, max-dets], -1 = no ground truth
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray


AREAS = ("s", "m", "l")  # area-range index 1..3 in the evaluator's order: small, medium, large


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def _iou_index(iou_thresholds: np.ndarray, threshold: float) -> int:
    return int(np.flatnonzero(np.isclose(iou_thresholds, threshold))[0])


def average_precisions(precision: np.ndarray, iou_thresholds: np.ndarray, classes=slice(None)) -> dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl from precision[T, R, K, A, M] at the largest detection budget."""
    p = precision[:, :, classes, :, -1]
    metrics = {
        "AP": _mean_valid(p[..., 0]),
        "AP50": _mean_valid(p[_iou_index(iou_thresholds, 0.5), ..., 0]),
        "AP75": _mean_valid(p[_iou_index(iou_thresholds, 0.75), ..., 0]),
    }
    for area_index, area in enumerate(AREAS, start=1):
        metrics[f"AP{area}"] = _mean_valid(p[..., area_index])
    return metrics


def coco_metrics(precision: np.ndarray, recall: np.ndarray, iou_thresholds: np.ndarray, max_dets) -> dict:
    """The 12 pycocotools stats under readable names (AR1, AR10, AR100 follow max_dets)."""
    metrics = average_precisions(precision, iou_thresholds)
    for budget_index, budget in enumerate(max_dets):
        metrics[f"AR{budget}"] = _mean_valid(recall[:, :, 0, budget_index])
    for area_index, area in enumerate(AREAS, start=1):
        metrics[f"AR{area}"] = _mean_valid(recall[:, :, area_index, -1])
    return metrics


def lvis_metrics(precision: np.ndarray, recall: np.ndarray, iou_thresholds: np.ndarray, frequencies: list[str]):
    """The lvis-api summary: AP, AP50, AP75, APs/m/l, APr/c/f and AR, ARs/m/l at the mode's budget."""
    metrics = average_precisions(precision, iou_thresholds)
    groups = np.asarray(frequencies)
    for group in ("r", "c", "f"):
        metrics[f"AP{group}"] = _mean_valid(precision[:, :, groups == group, 0, -1])
    metrics["AR"] = _mean_valid(recall[:, :, 0, -1])
    for area_index, area in enumerate(AREAS, start=1):
        metrics[f"AR{area}"] = _mean_valid(recall[:, :, area_index, -1])
    return metrics


def per_class_rows(precision, iou_thresholds, categories, annotations, detection_category_ids) -> list[dict]:
    """One row per category (evaluator order = ascending id): ground-truth count, detections, AP, AP50, AP75."""
    ground_truth = Counter(ann["category_id"] for ann in annotations if not ann.get("iscrowd", 0))
    detections = Counter(detection_category_ids.tolist())
    rows = []
    for index, category in enumerate(sorted(categories, key=lambda cat: cat["id"])):
        ap = average_precisions(precision, iou_thresholds, classes=slice(index, index + 1))
        row = {"category_id": category["id"], "name": category["name"]}
        if "frequency" in category:
            row["frequency"] = category["frequency"]
        row.update(ground_truth=ground_truth[category["id"]], detections=detections[category["id"]])
        row.update(AP=ap["AP"], AP50=ap["AP50"], AP75=ap["AP75"])
        rows.append(row)
    return rows
