"""Network outputs -> detections in original-image pixels (the official test_cfg semantics).

sigmoid scores, synonyms merged (best score wins), padding prompt dropped, multi-label candidates above
`conf`, top `nms_pre`, boxes un-letterboxed, class-aware NMS (`class_aware_nms`: one torchvision NMS call),
`max_det` kept, boxes clipped.
Segmentation models also output mask coefficients per prior and prototypes; `select` keeps the prior index of
every detection so `yoloworld.masks` can gather its coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from yoloworld.masks import attach_masks
from yoloworld.models.boxes import decode_boxes, dfl_integral, flatten_levels
from yoloworld.transforms import LetterboxInfo, boxes_to_original, clip_boxes


@dataclass
class Detections:
    boxes: torch.Tensor  # (K, 4) xyxy, original pixels
    scores: torch.Tensor  # (K,)
    labels: torch.Tensor  # (K,) class index
    priors: torch.Tensor | None = None  # (K,) the prior (row of the network outputs) each detection came from
    masks: torch.Tensor | None = None  # (K, H0, W0) bool, segmentation models only


def merge_synonyms(scores: torch.Tensor, groups: torch.Tensor | None) -> torch.Tensor:
    """(P, T) text scores -> (P, C) class scores; `groups` (C, S) holds text indices, -1 = unused slot."""
    if groups is None:
        return scores
    if groups.shape[1] == 1:
        return scores[:, groups[:, 0]]
    padded = torch.cat([scores, scores.new_full((scores.shape[0], 1), -1.0)], dim=1)
    index = torch.where(groups < 0, scores.shape[1], groups)
    return padded[:, index].amax(dim=-1)


def decode_outputs(cls_logits: list[torch.Tensor], reg_logits: list[torch.Tensor], coeffs: list | None = None,
                   protos: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Per-level logits (B, T, H, W) and raw box logits (B, 64, H, W) -> scores (B, P, T) in [0, 1] and boxes
    (B, P, 4) xyxy in network-input pixels: what an exported graph outputs too. A segmentation model's per-level
    coefficients (B, M, H, W) and prototypes (B, M, h, w) are passed on as (B, P, M) and (B, M, h, w)."""
    scores = flatten_levels(cls_logits).float().sigmoid()
    boxes = decode_boxes([dfl_integral(r.float()) for r in reg_logits])
    if coeffs is None:
        return scores, boxes
    return scores, boxes, flatten_levels(coeffs).float(), protos.float()


def postprocess(cls_logits: list[torch.Tensor], reg_logits: list[torch.Tensor], infos: list[LetterboxInfo],
                conf: float = 0.001, iou: float = 0.7, max_det: int = 300, nms_pre: int = 30000,
                groups: list[torch.Tensor | None] | None = None, masks: tuple | list | None = None,
                official_masks: bool = False) -> list[Detections]:
    """Per-image detections from per-level logits (B, T, H, W) and raw box logits (B, 64, H, W). `masks`: a
    segmentation model's (per-level coefficients, prototypes): the detections then carry their masks."""
    return detections_from(decode_outputs(cls_logits, reg_logits, *(masks or ())), infos, conf, iou, max_det,
                           nms_pre, groups, official_masks)


def detections_from(outputs: tuple, infos: list[LetterboxInfo], conf: float, iou: float, max_det: int, nms_pre: int,
                    groups: list[torch.Tensor | None] | None = None, official_masks: bool = False) -> list[Detections]:
    """Decoded outputs (scores (B, P, T), boxes (B, P, 4)[, coefficients, prototypes]) -> per-image detections:
    `select` per image, then the masks of the kept detections. The one selection of `predict`, `val` (any runtime)
    and validation during training."""
    scores, boxes, *seg = outputs
    groups = groups or [None] * len(infos)
    detections = [select(scores[i], boxes[i], infos[i], conf, iou, max_det, nms_pre, groups[i])
                  for i in range(len(infos))]
    if seg:
        attach_masks(detections, boxes, *seg, infos, official_masks)
    return detections


def select(scores: torch.Tensor, boxes: torch.Tensor, info: LetterboxInfo, conf: float, iou: float, max_det: int,
           nms_pre: int, groups: torch.Tensor | None = None) -> Detections:
    """One image: (P, T) scores and (P, 4) input-pixel boxes -> final detections in original pixels.

    Greedy NMS never lets a box suppress a better one, so the first `max_det` boxes it keeps among the best
    candidates are final: NMS runs on the best few first, and on all of them only when fewer than `max_det`
    survive."""
    scores, boxes = torch.as_tensor(scores), torch.as_tensor(boxes)
    scores = merge_synonyms(scores, None if groups is None else groups.to(scores.device))
    flat = scores.flatten()  # (prior, class) candidates: multi-label
    count = min(int((flat > conf).sum()), nms_pre)
    limit = min(count, max(8 * max_det, 2048))
    while True:
        # the best `limit` candidates, all above `conf` (`count` of them are), best first
        candidate_scores, index = flat.topk(limit)
        prior_index, labels = index // scores.shape[1], index % scores.shape[1]
        # NMS on the unclipped boxes in original pixels, like the official post-processing; clipped afterwards
        candidate_boxes = boxes_to_original(boxes[prior_index], info, clip=False)
        kept = class_aware_nms(candidate_boxes, candidate_scores, labels, iou)
        if len(kept) >= max_det or limit == count:
            break
        limit = count  # too few survived among the best: all of them (at most two NMS runs)
    kept = kept[:max_det]
    return Detections(clip_boxes(candidate_boxes[kept], info.orig_hw), candidate_scores[kept], labels[kept],
                      prior_index[kept])


def class_aware_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices of the (K, 4) boxes that greedy NMS within each class keeps, best first: one NMS call over boxes
    shifted apart by class (torchvision's `batched_nms` loops over the classes above 1000 boxes instead), in
    float64 so that the shift costs no precision."""
    from torchvision.ops import nms  # imported here: torchvision.ops loads torch's compiler stack (~1 s)

    if scores.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    if labels.min() == labels.max():  # one class: nothing to shift apart
        return nms(boxes, scores, iou)
    low, high = boxes.min().double(), boxes.max().double()
    shifted = boxes.double() - low + (labels.double() * (high - low + 1))[:, None]
    return nms(shifted, scores.double(), iou)
