"""Evaluation speed: yoloworld.eval (faster-coco-eval) vs pycocotools on the same 5,000 images of detections.

Both run in this process on the same seeded synthetic data, from in-memory dicts, end to end (index
building, loading results, matching, accumulation, summary). Prints both times, the ratio and the
largest difference between the 12 COCO stats.

    python benchmarks/eval_speed.py [--images 5000] [--categories 80] [--false-positives 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import time
from pathlib import Path

import numpy as np

from yoloworld.eval import evaluate_detections

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test suite's synthetic COCO maker
from synthetic_coco import make_dataset  # noqa: E402

COCO_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def time_ours(ground_truth: dict, predictions: list) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    metrics = evaluate_detections(ground_truth, predictions, kind="coco")
    return time.perf_counter() - start, np.array([metrics[key] for key in COCO_KEYS])


def time_pycocotools(ground_truth: dict, predictions: list) -> tuple[float, np.ndarray]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground_truth, predictions = copy.deepcopy(ground_truth), copy.deepcopy(predictions)  # it edits its inputs
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        reference = COCO()
        reference.dataset = ground_truth
        reference.createIndex()
        evaluator = COCOeval(reference, reference.loadRes(predictions), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return time.perf_counter() - start, np.asarray(evaluator.stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--categories", type=int, default=80)
    parser.add_argument("--false-positives", type=int, default=60, help="up to this many background boxes per image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ground_truth, predictions = make_dataset(args.images, args.categories, seed=args.seed,
                                             false_positives=args.false_positives)
    print(f"data: {args.images} images, {len(ground_truth['annotations'])} ground-truth boxes, "
          f"{len(predictions)} detections, {args.categories} categories (seed {args.seed})")
    ours_s, ours_stats = time_ours(ground_truth, predictions)
    print(f"yoloworld.eval (faster-coco-eval): {ours_s:8.2f} s")
    reference_s, reference_stats = time_pycocotools(ground_truth, predictions)
    print(f"pycocotools:                       {reference_s:8.2f} s")
    print(f"speed-up: {reference_s / ours_s:.1f}x")
    print(f"AP {ours_stats[0]:.4f} vs {reference_stats[0]:.4f}; "
          f"max |difference| over the 12 COCO stats: {np.abs(ours_stats - reference_stats).max():.2e}")


if __name__ == "__main__":
    main()
