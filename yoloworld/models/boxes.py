"""Anchor points and box coding shared by prediction, the loss and export (one implementation)."""

from __future__ import annotations

import torch

STRIDES = (8, 16, 32)


def make_priors(feature_sizes, strides=STRIDES, device=None, dtype=torch.float32):
    """Prior centres ((x + 0.5) * s, (y + 0.5) * s) level by level, row-major, and their strides.

    Returns (points (P, 2), stride_per_point (P,)).
    """
    points, point_strides = [], []
    for (h, w), s in zip(feature_sizes, strides):
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1))
        point_strides.append(torch.full((h * w,), float(s), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(point_strides)


def dfl_integral(reg_logits: torch.Tensor) -> torch.Tensor:
    """Raw box-branch output (B, 4*reg_max, H, W) -> expected distance per side (B, 4, H, W), stride units.
    reg_max (the model's bins per side, `ModelConfig.reg_max`) is read from the channel count."""
    b, c, h, w = reg_logits.shape
    reg_max = c // 4
    probs = reg_logits.reshape(b, 4, reg_max, h * w).softmax(dim=2)
    bins = torch.arange(reg_max, device=reg_logits.device, dtype=probs.dtype)
    return torch.einsum("bksn,s->bkn", probs, bins).reshape(b, 4, h, w)


def flatten_levels(maps) -> torch.Tensor:
    """[(B, C, H, W) per level] -> (B, sum H*W, C), level by level, row-major within a level."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


def distance_to_bbox(points: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """Points (..., 2) and (left, top, right, bottom) distances (..., 4) -> xyxy boxes."""
    return torch.cat([points - distances[..., :2], points + distances[..., 2:]], dim=-1)


def bbox_to_distance(points: torch.Tensor, boxes: torch.Tensor, max_distance: float | None = None) -> torch.Tensor:
    """Inverse of `distance_to_bbox`, optionally clamped to [0, max_distance]."""
    distances = torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)
    if max_distance is not None:
        distances = distances.clamp(min=0, max=max_distance)
    return distances


def decode_boxes(reg_maps, strides=STRIDES) -> torch.Tensor:
    """Per-level distance maps (B, 4, H, W) in stride units -> (B, P, 4) xyxy boxes in input pixels."""
    sizes = [m.shape[-2:] for m in reg_maps]
    points, point_strides = make_priors(sizes, strides, device=reg_maps[0].device, dtype=reg_maps[0].dtype)
    distances = flatten_levels(reg_maps) * point_strides[None, :, None]
    return distance_to_bbox(points[None], distances)


__all__ = ["STRIDES", "make_priors", "dfl_integral", "flatten_levels", "distance_to_bbox",
           "bbox_to_distance", "decode_boxes"]
