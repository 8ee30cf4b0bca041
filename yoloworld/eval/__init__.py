"""Evaluation: COCO AP and LVIS AP (standard and Fixed), via faster-coco-eval, checked against the reference tools."""

from yoloworld.eval.coco_results import results_to_coco
from yoloworld.eval.evaluate import (
    LVIS_FIXED_MAX_PER_CLASS,
    LVIS_FIXED_MODEL_MAX_PER_IMAGE,
    LVIS_STANDARD_MAX_PER_IMAGE,
    evaluate,
    evaluate_detections,
)
from yoloworld.eval.inputs import load_annotations
from yoloworld.eval.summary import MODE_DESCRIPTIONS, Evaluation

__all__ = [
    "LVIS_FIXED_MAX_PER_CLASS",
    "LVIS_FIXED_MODEL_MAX_PER_IMAGE",
    "LVIS_STANDARD_MAX_PER_IMAGE",
    "MODE_DESCRIPTIONS",
    "Evaluation",
    "evaluate",
    "evaluate_detections",
    "load_annotations",
    "results_to_coco",
]
