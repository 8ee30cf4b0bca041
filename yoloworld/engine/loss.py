"""YOLO-World training loss: the YOLOv8 loss (task-aligned assignment, BCE + CIoU + DFL) over text logits.

Numbers follow the official head (YOLOWorldHead.loss_by_feat, mmyolo YOLOv8 settings): with
S = max(sum of soft targets, 1),
  loss_cls  = 0.5 * sum BCE-with-logits(cls, soft targets) over all priors and texts / S
  loss_bbox = 7.5 * sum over positives (1 - CIoU) * w / S, boxes in stride units
  loss_dfl  = 0.375 * sum over positives and sides DFL * w / (S + float32 eps)
where w is a positive's summed soft target; each loss is then scaled by num_images * world_size.
Segmentation models add `loss_mask` (yoloworld.engine.mask_loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yoloworld.engine.assigner import TaskAlignedAssigner
from yoloworld.engine.iou import bbox_iou
from yoloworld.engine.mask_loss import batch_masks, mask_loss
from yoloworld.models.boxes import (
    STRIDES,
    bbox_to_distance,
    decode_boxes,
    dfl_integral,
    flatten_levels,
    make_priors,
)

FLOAT32_EPS = torch.finfo(torch.float32).eps  # mmdet's avg_factor guard in the DFL mean
DFL_TARGET_MARGIN = 0.01  # targets stay below the last bin so floor(t) + 1 is a valid bin


def per_image_slots(image_index: torch.Tensor, batch_size: int):
    """Where each gt row goes in per-image padded tables: (row order, image, slot) and the padded width G.
    Rows keep their order within an image."""
    if image_index.numel() and (image_index.min() < 0 or image_index.max() >= batch_size):
        raise ValueError(f"bboxes_labels image indexes must lie in [0, {batch_size})")
    counts = torch.bincount(image_index, minlength=batch_size)
    num_gts = int(counts.max()) if image_index.numel() else 0
    order = torch.argsort(image_index, stable=True)
    sorted_image = image_index[order]
    first_row_of_image = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(order), device=order.device) - first_row_of_image[sorted_image]
    return order, sorted_image, slot, num_gts


def batch_ground_truth(bboxes_labels: torch.Tensor, batch_size: int):
    """Rows [img_idx, label, x1, y1, x2, y2] (M, 6) -> per-image padded labels (B, G), boxes (B, G, 4), valid (B, G).

    G is the largest per-image count; rows keep their order within an image; padding is zeros and, as in
    the official code, a gt is valid when its coordinates sum to more than 0.
    """
    if bboxes_labels.dim() != 2 or bboxes_labels.shape[1] != 6:
        raise ValueError("bboxes_labels must be (M, 6) rows [img_idx, label, x1, y1, x2, y2], "
                         f"got {tuple(bboxes_labels.shape)}")
    order, sorted_image, slot, num_gts = per_image_slots(bboxes_labels[:, 0].long(), batch_size)
    table = bboxes_labels.new_zeros(batch_size, num_gts, 5)
    table[sorted_image, slot] = bboxes_labels[order, 1:]
    gt_bboxes = table[..., 1:]
    return table[..., 0].long(), gt_bboxes, gt_bboxes.sum(-1) > 0


def distribution_focal_loss(bin_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(n, reg_max) logits and (n,) continuous targets in [0, reg_max - 1) -> (n,) DFL (Li et al., GFL).

    Cross-entropy towards the two bins around the target, weighted by linear interpolation.
    """
    left = targets.long()
    right = left + 1
    weight_left = right.to(targets.dtype) - targets
    weight_right = targets - left.to(targets.dtype)
    return F.cross_entropy(bin_logits, left, reduction="none") * weight_left + \
        F.cross_entropy(bin_logits, right, reduction="none") * weight_right


class YOLOWorldLoss(nn.Module):
    """Detection loss on the head's training outputs; computed in float32 whatever the autocast dtype."""

    def __init__(self, strides=STRIDES, topk: int = 10, alpha: float = 0.5,
                 beta: float = 6.0, cls_weight: float = 0.5, box_weight: float = 7.5, dfl_weight: float = 1.5 / 4,
                 mask_weight: float = 1.0, official_mask_skip: bool = False):
        super().__init__()
        self.strides = tuple(strides)
        self.cls_weight, self.box_weight, self.dfl_weight = cls_weight, box_weight, dfl_weight
        self.mask_weight, self.official_mask_skip = mask_weight, official_mask_skip
        self.assigner = TaskAlignedAssigner(topk=topk, alpha=alpha, beta=beta, eps=1e-9, use_ciou=True)

    def forward(self, cls_logits, reg_logits, bboxes_labels: torch.Tensor, world_size: int = 1, coeffs=None,
                protos: torch.Tensor | None = None, gt_masks: torch.Tensor | None = None) -> dict:
        """cls_logits: per level (B, N, H, W) text logits; reg_logits: per level raw (B, 4*reg_max, H, W) bin logits
        (channel = side * reg_max + bin); bboxes_labels (M, 6) [img_idx, label, x1, y1, x2, y2] in input pixels.
        Segmentation: coeffs per level (B, M, H, W), protos (B, M, h, w), gt_masks (M, h, w) one per gt row.

        Returns {'loss_cls', 'loss_bbox', 'loss_dfl'}, each multiplied by num_images * world_size, and
        'loss_mask' (times world_size only, as official) when coefficients are given.
        """
        batch = cls_logits[0].shape[0]
        device = cls_logits[0].device
        points, point_strides = make_priors([m.shape[-2:] for m in cls_logits], self.strides, device=device)
        cls = flatten_levels([m.float() for m in cls_logits])  # (B, P, N)
        bin_logits = flatten_levels([m.float() for m in reg_logits])  # (B, P, 4 * reg_max)
        reg_max = bin_logits.shape[-1] // 4  # the model's bins per side (ModelConfig.reg_max)
        pred_bboxes = decode_boxes([dfl_integral(m.float()) for m in reg_logits], self.strides)

        gt_labels, gt_bboxes, gt_valid = batch_ground_truth(bboxes_labels.to(device=device, dtype=torch.float32), batch)
        target = self.assigner(pred_bboxes.detach(), cls.detach().sigmoid(), points, gt_labels, gt_bboxes, gt_valid)
        target_sum = target.scores.sum().clamp(min=1)

        loss_cls = self.cls_weight * F.binary_cross_entropy_with_logits(cls, target.scores, reduction="none").sum()
        loss_cls = loss_cls / target_sum

        # Positives only, in stride units: boxes, their weights and the prior centres.
        fg = target.fg_mask
        stride = point_strides.expand(batch, -1)[fg][:, None]
        pred_pos = pred_bboxes[fg] / stride
        target_pos = target.bboxes[fg] / stride
        weight = target.scores.sum(-1)[fg]
        loss_bbox = self.box_weight * ((1.0 - bbox_iou(pred_pos, target_pos, ciou=True)) * weight).sum() / target_sum

        centres = points.expand(batch, -1, -1)[fg] / stride
        distances = bbox_to_distance(centres, target_pos, max_distance=reg_max - 1 - DFL_TARGET_MARGIN)
        dfl = distribution_focal_loss(bin_logits[fg].reshape(-1, reg_max), distances.reshape(-1))
        loss_dfl = self.dfl_weight * (dfl * weight.repeat_interleave(4)).sum() / (target_sum + FLOAT32_EPS)

        scale = batch * world_size
        losses = {"loss_cls": loss_cls * scale, "loss_bbox": loss_bbox * scale, "loss_dfl": loss_dfl * scale}
        if coeffs is not None:
            losses["loss_mask"] = self._mask_loss(coeffs, protos, gt_masks, bboxes_labels, target, gt_valid) \
                * self.mask_weight * world_size
        return losses

    def _mask_loss(self, coeffs, protos, gt_masks, bboxes_labels, target, gt_valid) -> torch.Tensor:
        if gt_masks is None or len(gt_masks) != len(bboxes_labels):
            raise ValueError("a segmentation loss needs gt_masks (M, h, w), one per row of bboxes_labels")
        slots = per_image_slots(bboxes_labels[:, 0].long().to(protos.device), protos.shape[0])
        table = batch_masks(gt_masks.to(protos.device), *slots[:3], protos.shape[0], slots[3])
        return mask_loss(flatten_levels(coeffs), protos, target, table, gt_valid, self.official_mask_skip)


__all__ = ["YOLOWorldLoss", "batch_ground_truth", "per_image_slots", "distribution_focal_loss"]
