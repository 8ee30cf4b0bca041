"""IoU and Complete-IoU of xyxy boxes, shared by the label assigner and the box loss."""

from __future__ import annotations

import math

import torch


def bbox_iou(box1: torch.Tensor, box2: torch.Tensor, ciou: bool = True, eps: float = 1e-7) -> torch.Tensor:
    """IoU (or CIoU) of xyxy boxes box1 (..., 4) and box2 (..., 4), broadcast over the leading dims -> (...).

    CIoU = IoU - rho^2 / c^2 - alpha * v (Zheng et al., 2020) with the YOLOv5 / mmyolo alpha
    v / (v - IoU + 1 + eps), treated as a constant for the gradient; the result is clamped to [-1, 1].
    The eps placements follow mmyolo's `bbox_overlaps(iou_mode='ciou')` so the numbers match the official loss.
    """
    ax1, ay1, ax2, ay2 = box1.unbind(-1)
    bx1, by1, bx2, by2 = box2.unbind(-1)
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0) * \
            (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    w1, h1 = ax2 - ax1, ay2 - ay1
    w2, h2 = bx2 - bx1, by2 - by1
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    if not ciou:
        return iou

    enclose_w = (torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)).clamp(min=0)
    enclose_h = (torch.maximum(ay2, by2) - torch.minimum(ay1, by1)).clamp(min=0)
    diagonal2 = enclose_w ** 2 + enclose_h ** 2 + eps
    centre_distance2 = ((bx1 + bx2) - (ax1 + ax2)) ** 2 / 4 + ((by1 + by2) - (ay1 + ay2)) ** 2 / 4
    # Aspect terms are computed per box before broadcasting: cheap when box1/box2 are (B,1,P)/(B,G,1).
    aspect1 = torch.atan(w1 / (h1 + eps))
    aspect2 = torch.atan(w2 / (h2 + eps))
    v = (4 / math.pi ** 2) * (aspect2 - aspect1) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return (iou - (centre_distance2 / diagonal2 + alpha * v)).clamp(min=-1.0, max=1.0)


__all__ = ["bbox_iou"]
