"""Per-class score thresholds from a labelled sample: match detections at IoU 0.5, then choose per class the cut of
its score-sorted detections that best meets the target.

    f1             of the cuts whose F1 is within one standard error of the class's best, the one nearest the
                   single best threshold (below): a per-class threshold only where the sample clearly asks for
                   one, so a few labelled boxes do not overfit it (on held-out data the plain best-F1 cut lost up
                   to 0.1 F1 on some class; this rule at most 0.02, benchmarks/calibration.py)
    precision=0.9  the cut with the most recall whose precision is at least 0.9 (else the best-F1 cut)

A threshold lies halfway between the last kept score and the next one, so a score equal to a kept one is kept
(prediction keeps scores above a threshold). Classes without ground truth, and classes the model never finds,
get the fallback: the one threshold that does best over all classes (the mean F1 of the classes, or the pooled
precision for a precision target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yoloworld.errors import InputError

MATCH_IOU = 0.5


@dataclass
class ClassCurve:
    """One class's detections over the sample, best score first, and whether each matched a ground-truth box."""

    scores: np.ndarray
    hits: np.ndarray  # bool
    ground_truth: int

    def counts_above(self, threshold: float) -> tuple[int, int]:
        """(true, false) positives among the detections scored above `threshold`."""
        kept = int(np.searchsorted(-self.scores, -threshold, side="left"))
        true = int(self.hits[:kept].sum())
        return true, kept - true


@dataclass(frozen=True)
class Target:
    kind: str  # "f1" or "precision"
    precision: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Target:
        if text == "f1":
            return cls("f1")
        name, _, value = text.partition("=")
        try:
            precision = float(value)
        except ValueError:
            precision = -1.0
        if name != "precision" or not 0 < precision <= 1:
            raise InputError(f"--target {text!r}: use f1 or precision=P with P in (0, 1], e.g. precision=0.9")
        return cls("precision", precision)

    def __str__(self) -> str:
        return "f1" if self.kind == "f1" else f"precision={self.precision:g}"


def prf(true: int, false: int, ground_truth: int) -> tuple[float, float, float]:
    """Precision, recall and F1 (precision 1 when nothing is kept: no false detection)."""
    precision = true / (true + false) if true + false else 1.0
    recall = true / ground_truth if ground_truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def class_curves(annotations, predictions: list[dict], iou: float = MATCH_IOU) -> list[ClassCurve]:
    """Per category (annotation order): its detections matched greedily, best score first, each to the unmatched
    ground-truth box of its image and category it overlaps most (IoU >= `iou`). Crowd boxes are not counted."""
    categories = [c["id"] for c in annotations.categories]
    truth: dict[tuple, list] = {}
    for ann in annotations.dataset["annotations"]:
        if not ann.get("iscrowd", 0):
            truth.setdefault((ann["image_id"], ann["category_id"]), []).append(xyxy(ann["bbox"]))
    found: dict[tuple, list] = {}
    for record in predictions:
        found.setdefault((record["image_id"], record["category_id"]), []).append(record)
    per_category: dict[int, list] = {c: [] for c in categories}
    for key, records in found.items():
        per_category[key[1]] += match_one(records, np.array(truth.get(key, []), dtype=np.float64).reshape(-1, 4), iou)
    counts = {c: 0 for c in categories}
    for (_, category), boxes in truth.items():
        counts[category] += len(boxes)
    curves = []
    for category in categories:
        pairs = sorted(per_category[category], key=lambda pair: -pair[0])
        scores = np.array([p[0] for p in pairs], dtype=np.float64)
        curves.append(ClassCurve(scores, np.array([p[1] for p in pairs], dtype=bool), counts[category]))
    return curves


def xyxy(box) -> list[float]:
    x, y, w, h = box
    return [x, y, x + w, y + h]


def match_one(records: list[dict], truth: np.ndarray, iou: float) -> list[tuple[float, bool]]:
    """(score, matched) of one image's detections of one category."""
    records = sorted(records, key=lambda r: -r["score"])
    taken = np.zeros(len(truth), dtype=bool)
    matched = []
    for record in records:
        hit = False
        if len(truth):
            overlaps = box_iou(np.array(xyxy(record["bbox"])), truth)
            overlaps[taken] = -1
            best = int(overlaps.argmax())
            if overlaps[best] >= iou:
                taken[best] = hit = True
        matched.append((float(record["score"]), hit))
    return matched


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=1)
    area = (box[2:] - box[:2]).prod() + (boxes[:, 2:] - boxes[:, :2]).prod(axis=1) - inter
    return inter / np.maximum(area, 1e-9)


def cut_thresholds(scores: np.ndarray, floor: float) -> np.ndarray:
    """The threshold of each cut of a best-first score list: halfway to the next lower score (`floor` after the
    last); cuts inside a run of equal scores are NaN (no threshold separates them)."""
    lower = np.append(scores[1:], floor)
    return np.where(scores > lower, (scores + lower) / 2, np.nan)


def class_threshold(curve: ClassCurve, target: Target, floor: float, prior: float | None = None) -> float | None:
    """The threshold of the cut that best meets `target` (for F1: nearest `prior` within one standard error of the
    best); None where the class has no ground truth or no hit."""
    if not curve.ground_truth or not curve.hits.any():
        return None
    true = np.cumsum(curve.hits)
    kept = np.arange(1, len(curve.hits) + 1)
    precision, recall = true / kept, true / curve.ground_truth
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    thresholds = cut_thresholds(curve.scores, floor)
    valid = ~np.isnan(thresholds)
    if target.kind == "precision" and (valid & (precision >= target.precision)).any():
        return float(thresholds[np.flatnonzero(valid & (precision >= target.precision))[-1]])
    best = f1[valid].max()
    if prior is None:
        return float(thresholds[np.flatnonzero(valid)[np.argmax(f1[valid])]])
    error = np.sqrt(best * (1 - best) / curve.ground_truth)  # binomial standard error of a rate on these boxes
    near_best = np.flatnonzero(valid & (f1 >= best - error))
    return float(thresholds[near_best[np.argmin(np.abs(thresholds[near_best] - prior))]])


def global_threshold(curves: list[ClassCurve], target: Target, floor: float) -> float:
    """The one threshold for every class that does best on the sample: the highest mean F1 over the classes with
    ground truth (f1), or the most detections at a pooled precision of at least the target."""
    scores = np.sort(np.concatenate([c.scores for c in curves] + [np.zeros(0)]))[::-1]
    candidates = cut_thresholds(scores, floor)
    candidates = candidates[~np.isnan(candidates)]
    labelled = [c for c in curves if c.ground_truth]
    if not len(candidates) or not labelled:
        return floor
    table = np.array([[c.counts_above(t) + (c.ground_truth,) for c in labelled] for t in candidates])  # (N, C, 3)
    if target.kind == "precision":
        true, false = table[..., 0].sum(1), table[..., 1].sum(1)
        precision = true / np.maximum(true + false, 1)
        reached = np.flatnonzero(precision >= target.precision)
        if len(reached):
            return float(candidates[reached[-1]])
    mean_f1 = np.array([np.mean([prf(*row)[2] for row in rows]) for rows in table])
    return float(candidates[int(np.argmax(mean_f1))])


@dataclass
class Calibration:
    names: list[str]
    thresholds: list[float | None]  # per class; None: the fallback applies
    fallback: float
    curves: list[ClassCurve]
    target: Target

    def applied(self) -> list[float]:
        return [self.fallback if t is None else t for t in self.thresholds]

    def per_class(self) -> dict[str, float]:
        return {name: t for name, t in zip(self.names, self.thresholds) if t is not None}

    def scores_at(self, thresholds: list[float]) -> list[tuple[float, float, float]]:
        return [prf(*curve.counts_above(t), curve.ground_truth) for curve, t in zip(self.curves, thresholds)]

    def table(self) -> str:
        """Per class: ground truth, threshold, precision / recall / F1 at it, and at the single global threshold."""
        own, single = self.scores_at(self.applied()), self.scores_at([self.fallback] * len(self.names))
        width = max(12, *(len(n) for n in self.names))
        lines = [f"{'class':<{width}} {'boxes':>5} {'thresh':>7} {'P':>6} {'R':>6} {'F1':>6}   "
                 f"F1 at one threshold {self.fallback:.3f}"]
        for name, curve, t, mine, theirs in zip(self.names, self.curves, self.thresholds, own, single):
            shown = f"{t:7.3f}" if t is not None else "  (all)"
            lines.append(f"{name:<{width}} {curve.ground_truth:>5} {shown} {mine[0]:6.3f} {mine[1]:6.3f} "
                         f"{mine[2]:6.3f}   {theirs[2]:6.3f}")
        labelled = [i for i, c in enumerate(self.curves) if c.ground_truth]
        if labelled:
            lines.append(f"{'mean F1':<{width}} {'':>5} {'':>7} {'':>6} {'':>6} "
                         f"{np.mean([own[i][2] for i in labelled]):6.3f}   "
                         f"{np.mean([single[i][2] for i in labelled]):6.3f}")
        return "\n".join(lines)


def calibrate(curves: list[ClassCurve], names: list[str], target: Target, floor: float) -> Calibration:
    fallback = global_threshold(curves, target, floor)
    return Calibration(names, [class_threshold(c, target, floor, fallback) for c in curves], fallback, curves,
                       target)
