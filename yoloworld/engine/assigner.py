"""Task-aligned label assignment (TOOD / YOLOv8), batched over images and padded ground truth.

For every gt: candidates are the priors whose centre lies strictly inside the box; the alignment
metric score^alpha * CIoU^beta ranks them and the top k become positives. A prior claimed by several
gts keeps the one its predicted box overlaps most. Soft targets are one-hot(label) scaled by
metric / max metric of the gt * max IoU of the gt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from yoloworld.engine.iou import bbox_iou


@dataclass
class Assignment:
    """Per-prior targets. Background priors carry gt 0's label and box, as the official assigner:
    mask them with fg_mask."""

    labels: torch.Tensor  # (B, P) int64 text index
    bboxes: torch.Tensor  # (B, P, 4) xyxy, same units as the gt boxes
    scores: torch.Tensor  # (B, P, C) soft classification targets, zero on background
    fg_mask: torch.Tensor  # (B, P) bool
    gt_index: torch.Tensor | None = None  # (B, P) int64 per-image gt index, 0 on background (official seg assigner)


def centres_inside(points: torch.Tensor, gt_bboxes: torch.Tensor, eps: float) -> torch.Tensor:
    """Points (P, 2) and boxes (B, G, 4) -> (B, G, P) bool: the point is more than eps inside every side."""
    px, py = points[:, 0], points[:, 1]
    x1, y1, x2, y2 = (gt_bboxes[..., i, None] for i in range(4))
    return (px - x1 > eps) & (py - y1 > eps) & (x2 - px > eps) & (y2 - py > eps)


def top_k_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """(..., P) -> bool mask of the k largest entries along the last dim."""
    k = min(k, values.shape[-1])
    indices = values.topk(k, dim=-1).indices
    return torch.zeros_like(values, dtype=torch.bool).scatter_(-1, indices, True)


def keep_best_overlap(positive: torch.Tensor, overlaps: torch.Tensor) -> torch.Tensor:
    """(B, G, P) positives -> each prior claimed by several gts goes to the gt with the highest overlap.

    As the official assigner, the argmax runs over all gts, not only the claiming ones.
    """
    claimed_twice = positive.sum(dim=1, keepdim=True) > 1
    best_gt = overlaps.argmax(dim=1, keepdim=True)
    gt_index = torch.arange(overlaps.shape[1], device=overlaps.device)[None, :, None]
    return torch.where(claimed_twice, gt_index == best_gt, positive)


class TaskAlignedAssigner:
    """Batched TaskAlignedAssigner: topk 10, alpha 0.5, beta 6, eps 1e-9 and CIoU overlaps, as YOLO-World trains."""

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9, use_ciou: bool = True):
        self.topk, self.alpha, self.beta, self.eps, self.use_ciou = topk, alpha, beta, eps, use_ciou

    @torch.no_grad()
    def __call__(self, pred_bboxes: torch.Tensor, pred_scores: torch.Tensor, priors: torch.Tensor,
                 gt_labels: torch.Tensor, gt_bboxes: torch.Tensor, gt_valid: torch.Tensor) -> Assignment:
        """Assign gts to priors.

        pred_bboxes (B, P, 4) decoded xyxy; pred_scores (B, P, C) probabilities; priors (P, 2+) centres
        (extra columns such as stride are ignored); gt_labels (B, G[, 1]); gt_bboxes (B, G, 4) xyxy;
        gt_valid (B, G[, 1]) true for real (non-padding) gts.
        """
        batch, num_priors, num_classes = pred_scores.shape
        num_gts = gt_bboxes.shape[1]
        gt_labels = gt_labels.reshape(batch, num_gts).long().clamp(min=0)
        gt_valid = gt_valid.reshape(batch, num_gts, 1).bool()
        if num_gts == 0:
            return self._empty(pred_bboxes, pred_scores)

        overlaps, metric = self._alignment(pred_bboxes, pred_scores, gt_labels, gt_bboxes)
        inside = centres_inside(priors[:, :2], gt_bboxes, self.eps)
        positive = top_k_mask(metric * inside, self.topk) & inside & gt_valid
        positive = keep_best_overlap(positive, overlaps)

        fg_mask = positive.any(dim=1)
        gt_index = positive.to(overlaps.dtype).argmax(dim=1)  # gt 0 on background, as the official code
        labels = gt_labels.gather(1, gt_index)
        bboxes = gt_bboxes.gather(1, gt_index[..., None].expand(batch, num_priors, 4))
        scores = F.one_hot(labels, num_classes).to(pred_scores.dtype) * fg_mask[..., None]
        scores = scores * self._normalised_metric(metric, overlaps, positive)[..., None]
        return Assignment(labels, bboxes, scores, fg_mask, gt_index)

    def _alignment(self, pred_bboxes, pred_scores, gt_labels, gt_bboxes):
        """(B, G, P) overlaps (CIoU clamped at 0) and alignment metric score^alpha * overlap^beta."""
        batch, num_priors, _ = pred_scores.shape
        overlaps = bbox_iou(pred_bboxes[:, None], gt_bboxes[:, :, None], ciou=self.use_ciou).clamp(min=0)
        index = gt_labels[..., None].expand(batch, gt_labels.shape[1], num_priors)
        gt_class_scores = pred_scores.transpose(1, 2).gather(1, index)
        return overlaps, gt_class_scores.pow(self.alpha) * overlaps.pow(self.beta)

    def _normalised_metric(self, metric, overlaps, positive):
        """(B, P) metric / (max metric of its gt) * (max overlap of its gt) for positive pairs."""
        metric = metric * positive
        max_metric = metric.amax(dim=-1, keepdim=True)
        max_overlap = (overlaps * positive).amax(dim=-1, keepdim=True)
        return (metric * max_overlap / (max_metric + self.eps)).amax(dim=1)

    @staticmethod
    def _empty(pred_bboxes, pred_scores) -> Assignment:
        """No gt in the whole batch: everything is background (label = C, as the official code)."""
        batch, num_priors, num_classes = pred_scores.shape
        return Assignment(
            labels=torch.full((batch, num_priors), num_classes, dtype=torch.long, device=pred_scores.device),
            bboxes=torch.zeros_like(pred_bboxes),
            scores=torch.zeros_like(pred_scores),
            fg_mask=torch.zeros((batch, num_priors), dtype=torch.bool, device=pred_scores.device),
            gt_index=torch.zeros((batch, num_priors), dtype=torch.long, device=pred_scores.device),
        )


__all__ = ["Assignment", "TaskAlignedAssigner", "centres_inside", "top_k_mask", "keep_best_overlap"]
