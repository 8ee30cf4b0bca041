"""Detection head: a box branch and a region-embedding branch per level, scored against text embeddings.
Segmentation models (YOLO-World-Seg) add a mask-coefficient branch per level and one prototype branch.

Keys: `bbox_head.head_module.{cls_preds,reg_preds,cls_contrasts}.<level>.*`; segmentation adds
`seg_preds.<level>.*` (between `reg_preds` and `cls_contrasts`, the official order) and `proto_pred.*` (last).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from yoloworld.models.blocks import ConvModule, batch_norm

CONTRASTIVE_KINDS = ("l2", "bn", "rep")
MASK_HEAD_PREFIXES = ("bbox_head.head_module.seg_preds.", "bbox_head.head_module.proto_pred.")  # the seg-only keys


class ContrastiveHead(nn.Module):
    """v1: logit = <L2(region), L2(text)> * exp(logit_scale) + bias."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros([]))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return region_text_logits(F.normalize(x, dim=1), text, self.logit_scale, self.bias)


class BNContrastiveHead(nn.Module):
    """v2: logit = <BN(region), L2(text)> * exp(logit_scale) + bias."""

    def __init__(self, embed_dims: int = 512):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros([]))
        self.logit_scale = nn.Parameter(torch.tensor(-1.0))
        self.norm = batch_norm(embed_dims)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return region_text_logits(self.norm(x), text, self.logit_scale, self.bias)


class RepBNContrastiveHead(nn.Module):
    """Reparameterized v2 head: the scaled text embeddings are the weights of a 1x1 conv."""

    def __init__(self, embed_dims: int, num_guides: int):
        super().__init__()
        self.norm = batch_norm(embed_dims)
        self.conv = nn.Conv2d(embed_dims, num_guides, 1)

    def forward(self, x: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(self.norm(x))


def region_text_logits(regions: torch.Tensor, text: torch.Tensor, logit_scale, bias) -> torch.Tensor:
    """(B, C, H, W) region embeddings x (B, N, C) texts -> (B, N, H, W) logits."""
    text = F.normalize(text, dim=-1)
    return torch.einsum("bchw,bnc->bnhw", regions, text) * logit_scale.exp() + bias


def _branch(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(ConvModule(c_in, c_mid, 3), ConvModule(c_mid, c_mid, 3), nn.Conv2d(c_mid, c_out, 1))


class ProtoModule(nn.Module):
    """Mask prototypes from the stride-8 features, at stride 4 (mmyolo ProtoModule). The last conv keeps its
    BatchNorm and SiLU, so prototypes are >= -0.2785."""

    def __init__(self, c_in: int, proto_channels: int = 256, mask_channels: int = 32):
        super().__init__()
        self.conv1 = ConvModule(c_in, proto_channels, 3)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv2 = ConvModule(proto_channels, proto_channels, 3)
        self.conv3 = ConvModule(proto_channels, mask_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.upsample(self.conv1(x))))


class YOLOWorldHeadModule(nn.Module):
    """Per level: `cls_preds` -> 512-d region embeddings -> `cls_contrasts` logits; `reg_preds` -> 4 x reg_max bins
    (reg_max distance bins per box side; decoding and the loss read it from the channel count).
    With `mask_channels`: `seg_preds` -> raw mask coefficients per level, `proto_pred` -> prototypes."""

    def __init__(self, in_channels: list[int], contrastive: str = "bn", embed_dims: int = 512, reg_max: int = 16,
                 min_cls_channels: int = 80, num_guides: int = 0, mask_channels: int = 0, proto_channels: int = 256):
        super().__init__()
        if contrastive not in CONTRASTIVE_KINDS:
            raise ValueError(f"contrastive must be one of {CONTRASTIVE_KINDS}")
        reg_channels = max(16, in_channels[0] // 4, reg_max * 4)
        cls_channels = max(in_channels[0], min_cls_channels)  # official: max(in0, num_classes)
        self.reg_max = reg_max
        self.cls_preds = nn.ModuleList(_branch(c, cls_channels, embed_dims) for c in in_channels)
        self.reg_preds = nn.ModuleList(_branch(c, reg_channels, 4 * reg_max) for c in in_channels)
        self.seg_preds = None
        if mask_channels:  # registered here so the keys follow the official order
            seg_channels = max(in_channels[0] // 4, mask_channels)  # official yolo_world_seg_head.py:70
            self.seg_preds = nn.ModuleList(_branch(c, seg_channels, mask_channels) for c in in_channels)

        def contrast() -> nn.Module:
            if contrastive == "l2":
                return ContrastiveHead()
            if contrastive == "bn":
                return BNContrastiveHead(embed_dims)
            return RepBNContrastiveHead(embed_dims, num_guides)

        self.cls_contrasts = nn.ModuleList(contrast() for _ in in_channels)
        self.proto_pred = ProtoModule(in_channels[0], proto_channels, mask_channels) if mask_channels else None

    def forward(self, feats: list[torch.Tensor], text: torch.Tensor | None):
        """Returns (cls_logits [(B, N, H, W)], reg_logits [(B, 4 * reg_max, H, W)]) per level; a segmentation
        head adds (mask coefficients [(B, M, H, W)] per level, prototypes (B, M, 2 H0, 2 W0) from level 0)."""
        cls_logits, reg_logits = [], []
        for x, cls_pred, reg_pred, contrast in zip(feats, self.cls_preds, self.reg_preds, self.cls_contrasts):
            cls_logits.append(contrast(cls_pred(x), text))
            reg_logits.append(reg_pred(x))
        if self.seg_preds is None:
            return cls_logits, reg_logits
        coeffs = [seg_pred(x) for x, seg_pred in zip(feats, self.seg_preds)]
        return cls_logits, reg_logits, coeffs, self.proto_pred(feats[0])

    @torch.no_grad()
    def init_weights(self, num_classes: int = 80, strides=(8, 16, 32)) -> None:
        """Official initial biases: box bins 1.0, region embeddings 0, contrastive prior log(5/C/(640/s)^2)."""
        for cls_pred, reg_pred, contrast, s in zip(self.cls_preds, self.reg_preds, self.cls_contrasts, strides):
            reg_pred[-1].bias.fill_(1.0)
            cls_pred[-1].bias.zero_()
            prior = math.log(5 / num_classes / (640 / s) ** 2)
            if isinstance(contrast, RepBNContrastiveHead):
                contrast.conv.bias.fill_(prior)
            else:
                contrast.bias.fill_(prior)


class YOLOWorldHead(nn.Module):
    """Holds `head_module` so checkpoint keys read `bbox_head.head_module.*`."""

    def __init__(self, **kwargs):
        super().__init__()
        self.head_module = YOLOWorldHeadModule(**kwargs)

    def forward(self, feats, text):
        return self.head_module(feats, text)
