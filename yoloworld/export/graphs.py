"""The modules that are traced into ONNX graphs: detector (+ box decoding, optional NMS) and text encoder.

Detector graph: images (B, 3, S, S) float32 RGB in [0, 1] (the letterboxed network input), and for a
dynamic vocabulary `text_embeds` (T, D) -> `scores` (B, P, T) sigmoid and `boxes` (B, P, 4) xyxy in
input pixels. Every text column is kept (padding prompt included); the runner merges synonyms and drops
the padding exactly as `yoloworld.postprocess` does. With NMS: `detections` (K, 7) rows
[image index, x1, y1, x2, y2, score, class], class-aware and multi-label, from the `nms_pre` best candidates
(ONNX TopK + one NonMaxSuppression). Height and width may be dynamic (multiples of 32): priors follow the input.
A segmentation detector adds `coeffs` (B, P, 32) and `protos` (B, 32, S / 4, S / 4); the runner selects the
detections and assembles their masks with `yoloworld.masks`, as PyTorch prediction does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms  # here, never first inside a traced forward (its import runs an untraceable op)

from yoloworld.models.boxes import decode_boxes, dfl_integral, flatten_levels
from yoloworld.models.detector import YOLOWorldDetector
from yoloworld.models.text import TextEncoder
from yoloworld.negatives import drop_claimed
from yoloworld.postprocess import merge_synonyms


class DetectorGraph(nn.Module):
    """A detector with box decoding; texts come from the model (reparameterized), a baked buffer, or an input."""

    def __init__(self, detector: YOLOWorldDetector, text_embeds: torch.Tensor | None = None):
        super().__init__()
        self.detector = detector
        self.register_buffer("baked_text", None if text_embeds is None else text_embeds.detach().float().clone())

    def forward(self, images: torch.Tensor, text_embeds: torch.Tensor | None = None):
        text = text_embeds if text_embeds is not None else self.baked_text
        if text is not None:  # one vocabulary for the whole batch
            text = text[None].expand(images.shape[0], -1, -1)
        cls_logits, reg_logits, *seg = self.detector(images, text)
        scores = flatten_levels(cls_logits).sigmoid()
        boxes = decode_boxes([dfl_integral(r) for r in reg_logits])
        if seg:
            return scores, boxes, flatten_levels(seg[0]), seg[1]
        return scores, boxes


class NonMaxSuppression(torch.autograd.Function):
    """ONNX NonMaxSuppression of one class: boxes (B, K, 4), scores (B, 1, K) -> selected (N, 3) [image, 0, k],
    per image in decreasing score order, at most `max_boxes` per image.

    The PyTorch forward (torchvision) gives the same selection, so the traced module also runs eagerly.
    """

    @staticmethod
    def forward(ctx, boxes, scores, max_boxes: int, iou: float, conf: float):
        selected = []
        for b in range(boxes.shape[0]):
            (candidates,) = (scores[b, 0] > conf).nonzero(as_tuple=True)
            keep = candidates[nms(boxes[b, candidates], scores[b, 0, candidates], iou)][:max_boxes]
            selected.append(torch.stack([torch.full_like(keep, b), torch.zeros_like(keep), keep], dim=1))
        return torch.cat(selected)

    @staticmethod
    def symbolic(g, boxes, scores, max_boxes: int, iou: float, conf: float):
        return g.op("NonMaxSuppression", boxes, scores, _constant(g, max_boxes, torch.long),
                    _constant(g, iou, torch.float), _constant(g, conf, torch.float), center_point_box_i=0)


class TopK(torch.autograd.Function):
    """The `k` best of each row of (B, N) scores, k = min(`k`, N): ONNX TopK with k computed in the graph, so
    a graph exported with dynamic height and width keeps `nms_pre` at every input size."""

    @staticmethod
    def forward(ctx, scores, k: int):
        return scores.topk(min(k, scores.shape[1]), dim=1)

    @staticmethod
    def symbolic(g, scores, k: int):
        count = g.op("Gather", g.op("Shape", scores), _constant(g, 1, torch.long), axis_i=0)
        return g.op("TopK", scores, g.op("Min", count, _constant(g, k, torch.long)), axis_i=1, largest_i=1,
                    sorted_i=1, outputs=2)


def _constant(g, value, dtype):
    return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))


class NmsGraph(nn.Module):
    """DetectorGraph + synonym merge / padding drop + NMS -> detections (K, 7), as `yoloworld.postprocess.select`:
    multi-label (prior, class) candidates, the `nms_pre` best scores, class-aware NMS, `max_det` per image.

    Class-aware NMS runs as one NMS over boxes shifted apart by class (torchvision's `batched_nms` trick), so the
    top-k cut, NMS and `max_det` act on one ranked list per image, exactly like PyTorch's `select`.
    """

    def __init__(self, graph: DetectorGraph, groups: torch.Tensor, conf: float, iou: float, max_det: int,
                 nms_pre: int = 30000, negatives: slice | None = None):
        super().__init__()
        self.graph = graph
        self.register_buffer("groups", groups.clone())
        self.conf, self.iou, self.max_det, self.nms_pre = conf, iou, max_det, nms_pre
        self.negatives = negatives  # the negative prompts' text columns (yoloworld.negatives), if any

    def forward(self, images: torch.Tensor, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        scores, boxes = self.graph(images, text_embeds)[:2]
        if self.negatives is not None:
            scores = drop_claimed(scores, self.negatives.start, self.negatives.stop)
        batch, priors = scores.shape[0], scores.shape[1]
        class_scores = merge_synonyms(scores.reshape(batch * priors, -1), self.groups).reshape(batch, priors, -1)
        classes = class_scores.shape[2]
        top_scores, index = TopK.apply(class_scores.flatten(1), self.nms_pre)  # (B, K) over (prior, class) pairs
        prior, label = index // classes, index % classes
        candidates = torch.gather(boxes, 1, prior[..., None].expand(-1, -1, 4))
        shifted = candidates + (label * (boxes.max() + 1))[..., None].to(boxes.dtype)
        selected = NonMaxSuppression.apply(shifted, top_scores[:, None], self.max_det, self.iou, self.conf)
        image, k = selected[:, 0], selected[:, 2]
        return torch.cat([image[:, None].float(), candidates[image, k], top_scores[image, k][:, None],
                          label[image, k][:, None].float()], dim=1)


class TextEncoderGraph(nn.Module):
    """Token ids (T, L) and attention mask (T, L) int64 -> L2-normalised `text_embeds` (T, D)."""

    def __init__(self, encoder: TextEncoder):
        super().__init__()
        self.model = encoder.model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds, dim=-1)


__all__ = ["DetectorGraph", "NonMaxSuppression", "NmsGraph", "TextEncoderGraph"]
