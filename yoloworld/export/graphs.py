"""The modules that are traced into ONNX graphs: detector (+ box decoding, optional NMS) and text encoder.

Detector graph: images (B, 3, S, S) float32 RGB in [0, 1] (the letterboxed network input), and for a
dynamic vocabulary `text_embeds` (T, D) -> `scores` (B, P, T) sigmoid and `boxes` (B, P, 4) xyxy in
input pixels. Every text column is kept (padding prompt included); the runner merges synonyms and drops
the padding exactly as `yoloworld.postprocess` does. With NMS: `detections` (K, 7) rows
[image index, x1, y1, x2, y2, score, class], class-aware and multi-label (one ONNX NonMaxSuppression).
A segmentation detector adds `coeffs` (B, P, 32) and `protos` (B, 32, S / 4, S / 4); the runner selects the
detections and assembles their masks with `yoloworld.masks`, as PyTorch prediction does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from yoloworld.models.boxes import decode_boxes, dfl_integral, flatten_levels
from yoloworld.models.detector import YOLOWorldDetector
from yoloworld.models.text import TextEncoder
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
    """ONNX NonMaxSuppression: boxes (B, P, 4), scores (B, C, P) -> selected (K, 3) [image, class, prior].

    Per image and class, like the official class-aware NMS with multi_label=True. The PyTorch forward
    (torchvision) gives the same selection, so the traced module also runs eagerly.
    """

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou: float, conf: float):
        selected = []
        for b in range(boxes.shape[0]):
            classes, priors = (scores[b] > conf).nonzero(as_tuple=True)
            keep = batched_nms(boxes[b, priors], scores[b, classes, priors], classes, iou)
            classes, priors = classes[keep], priors[keep]
            rank = torch.zeros_like(classes)  # keep the best `max_per_class` of each class
            for c in classes.unique():
                rank[classes == c] = torch.arange(int((classes == c).sum()))
            mask = rank < max_per_class
            image = torch.full_like(classes[mask], b)
            selected.append(torch.stack([image, classes[mask], priors[mask]], dim=1))
        return torch.cat(selected) if selected else boxes.new_zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou: float, conf: float):
        def constant(value, dtype):
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))

        return g.op("NonMaxSuppression", boxes, scores, constant(max_per_class, torch.long),
                    constant(iou, torch.float), constant(conf, torch.float), center_point_box_i=0)


class NmsGraph(nn.Module):
    """DetectorGraph + synonym merge / padding drop + NMS -> detections (K, 7)."""

    def __init__(self, graph: DetectorGraph, groups: torch.Tensor, conf: float, iou: float, max_det: int):
        super().__init__()
        self.graph = graph
        self.register_buffer("groups", groups.clone())
        self.conf, self.iou, self.max_det = conf, iou, max_det

    def forward(self, images: torch.Tensor, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        scores, boxes = self.graph(images, text_embeds)[:2]
        batch, priors = scores.shape[0], scores.shape[1]
        class_scores = merge_synonyms(scores.reshape(batch * priors, -1), self.groups).reshape(batch, priors, -1)
        selected = NonMaxSuppression.apply(boxes, class_scores.transpose(1, 2), self.max_det, self.iou, self.conf)
        image, label, prior = selected[:, 0], selected[:, 1], selected[:, 2]
        return torch.cat([image[:, None].float(), boxes[image, prior], class_scores[image, prior, label][:, None],
                          label[:, None].float()], dim=1)


class TextEncoderGraph(nn.Module):
    """Token ids (T, L) and attention mask (T, L) int64 -> L2-normalised `text_embeds` (T, D)."""

    def __init__(self, encoder: TextEncoder):
        super().__init__()
        self.model = encoder.model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds, dim=-1)


__all__ = ["DetectorGraph", "NonMaxSuppression", "NmsGraph", "TextEncoderGraph"]
