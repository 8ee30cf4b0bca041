"""Mask loss of YOLO-World-Seg (official `YOLOWorldSegHead.loss_by_feat`, yolo_world_seg_head.py:489-550).

For image b with positives p (each assigned a gt g with box B_g and mask M_g on the prototype grid, stride 4):
    L_p   = BCE-with-logits(coeff_p @ proto_b, M_g) per grid pixel
    l_p   = mean over the whole grid of L_p cropped to B_g / 4, divided by area(B_g) / input area
    t_b   = mean of l_p over the image's positives
    loss_mask = weight * sum_b t_b * world_size   (no num_images factor, unlike the other three losses)

The official code skips an image when all its positives map to *global* gt index 0 (`if not
mask_match_inds.any()`, :527), i.e. image 0 of a batch when all its positives belong to its first gt, such as an
image with a single object. We skip only images without positives; `official_skip=True` reproduces the bug.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from yoloworld.masks import crop_mask

from .assigner import Assignment

PROTO_STRIDE = 4  # prototypes and gt masks are at 1/4 of the input (official Polygon2Mask downsample_ratio=4)


def batch_masks(gt_masks: torch.Tensor, order: torch.Tensor, image: torch.Tensor, slot: torch.Tensor,
                batch_size: int, num_gts: int) -> torch.Tensor:
    """(M, h, w) masks, one per gt row -> (B, G, h, w) per-image padded, laid out like `batch_ground_truth`."""
    table = gt_masks.new_zeros(batch_size, num_gts, *gt_masks.shape[1:])
    table[image, slot] = gt_masks[order]
    return table


def mask_loss(coeffs: torch.Tensor, protos: torch.Tensor, target: Assignment, gt_masks: torch.Tensor,
              gt_valid: torch.Tensor, official_skip: bool = False) -> torch.Tensor:
    """coeffs (B, P, M) raw coefficients per prior; protos (B, M, h, w); `target` with fg_mask, gt_index and the
    assigned boxes (B, P, 4) in input pixels; gt_masks (B, G, h, w) in {0, 1}; gt_valid (B, G).
    Returns sum_b t_b (a scalar; 0, still connected to the graph, when nothing is positive)."""
    batch, _, height, width = protos.shape
    if gt_masks.shape[-2:] != (height, width):
        raise ValueError(f"gt masks are {tuple(gt_masks.shape[-2:])}, the prototypes {(height, width)}: "
                         f"rasterise masks at 1/{PROTO_STRIDE} of the input size")
    input_area = height * width * PROTO_STRIDE ** 2  # official: a hard-coded 640 x 640, the same at 640
    valid_count = gt_valid.reshape(batch, -1).sum(1)
    first_global_index = torch.cumsum(valid_count, 0) - valid_count  # official offset: real gts of earlier images
    total = (coeffs.sum() + protos.sum()) * 0.0
    for b in range(batch):
        fg = target.fg_mask[b]
        gt = target.gt_index[b][fg]
        skipped = not bool((gt + first_global_index[b]).any()) if official_skip else not bool(fg.any())
        if skipped:
            continue
        logits = (coeffs[b][fg].float() @ protos[b].float().flatten(1)).reshape(-1, height, width)
        loss = F.binary_cross_entropy_with_logits(logits, gt_masks[b][gt].to(logits.dtype), reduction="none")
        boxes = target.bboxes[b][fg].float()
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / input_area
        total = total + (crop_mask(loss, boxes / PROTO_STRIDE).mean(dim=(1, 2)) / area).mean()
    return total


__all__ = ["PROTO_STRIDE", "batch_masks", "mask_loss"]
