"""The YOLO-World detector: image backbone + (optional) CLIP text encoder + RepVL-PAN neck + contrastive head,
and optionally the image-prompt encoder (`yoloworld.models.image_prompt`).

Data flow: images (B, 3, H, W) RGB in [0, 1] and text embeddings (B, N, 512) -> per-level class logits
(B, N, H, W) and raw box logits (B, 4 * 16, H, W); a segmentation model adds per-level mask coefficients
(B, 32, H, W) and prototypes (B, 32, H0 * 2, W0 * 2). Decoding, NMS and masks live in `yoloworld.postprocess`
and `yoloworld.masks`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yoloworld.config import ModelConfig
from yoloworld.models.backbone import CSPDarknet
from yoloworld.models.blocks import ConvModule
from yoloworld.models.head import YOLOWorldHead
from yoloworld.models.image_prompt import ImagePromptEncoder
from yoloworld.models.neck import YOLOWorldPAFPN
from yoloworld.models.text import TextEncoder, clip_text_config


class MultiModalBackbone(nn.Module):
    """`backbone.image_model` (CSPDarknet) and `backbone.text_model` (CLIP text encoder or None)."""

    def __init__(self, image_model: nn.Module, text_model: TextEncoder | None):
        super().__init__()
        self.image_model = image_model
        self.text_model = text_model


class YOLOWorldDetector(nn.Module):
    def __init__(self, config: ModelConfig, text_model: TextEncoder | None = None,
                 image_prompt_encoder: ImagePromptEncoder | None = None):
        super().__init__()
        self.config = config
        self.frozen_modules: tuple[str, ...] = ()  # submodules kept in eval mode (see models/prompt.py)
        if config.num_prompts:  # prompt tuning: the texts are parameters (official key `embeddings`)
            self.embeddings = nn.Parameter(F.normalize(torch.randn(config.num_prompts, config.embed_dims), dim=-1))
            self.adapter = (nn.Sequential(nn.Linear(config.embed_dims, config.embed_dims * 2), nn.ReLU(True),
                                          nn.Linear(config.embed_dims * 2, config.embed_dims))
                            if config.prompt_adapter else None)
        image_model = CSPDarknet(config.deepen, config.widen, config.last_stage_channels)
        self.backbone = MultiModalBackbone(image_model, text_model)
        self.neck = YOLOWorldPAFPN(config.deepen, config.widen, config.last_stage_channels, config.neck_block,
                                   config.num_guides, config.image_pooling, config.embed_dims)
        self.bbox_head = YOLOWorldHead(in_channels=[int(c * config.widen) for c in (256, 512, config.last_stage_channels)],
                                       contrastive=config.contrastive, embed_dims=config.embed_dims,
                                       reg_max=config.reg_max, min_cls_channels=config.min_cls_channels,
                                       num_guides=config.num_guides, mask_channels=config.mask_channels,
                                       proto_channels=config.proto_channels)
        self.image_prompt_encoder = image_prompt_encoder  # official key prefix `image_prompt_encoder.`

    @property
    def text_model(self) -> TextEncoder | None:
        return self.backbone.text_model

    @property
    def needs_text(self) -> bool:
        """False for reparameterized, prompt-tuned and efficient-neck-with-baked-classes models."""
        return self.config.contrastive != "rep" and not self.config.num_prompts

    def prompt_embeddings(self) -> torch.Tensor:
        """(N, D) text embeddings of a prompt-tuning detector (residual adapter applied, as official)."""
        text = self.embeddings
        if self.adapter is not None:
            text = F.normalize(self.adapter(text) + text, dim=-1)
        return text

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if self.text_model is None:
            raise RuntimeError("this detector has no text model")
        return self.text_model(texts)

    def forward(self, images: torch.Tensor, text_embeds: torch.Tensor | None = None, image_prompts: list | None = None):
        """images (B, 3, H, W) RGB in [0, 1]; text_embeds (B, N, D) L2-normalised (None for rep/prompt models).
        `image_prompts` (training the projector): per image (labels, boxes) whose crops replace those columns."""
        if image_prompts is not None:
            text_embeds = self.image_prompt_encoder.replace_classes(images, text_embeds, image_prompts)
        if text_embeds is None and self.config.num_prompts:
            text_embeds = self.prompt_embeddings()[None].expand(images.shape[0], -1, -1)
        if text_embeds is None and self.needs_text:
            raise ValueError("this detector needs text embeddings (B, N, D)")
        feats = self.backbone.image_model(images)
        feats = self.neck(feats, text_embeds)
        return self.bbox_head(feats, text_embeds)

    def train(self, mode: bool = True) -> "YOLOWorldDetector":
        """As nn.Module.train, but frozen submodules stay in eval mode (official frozen BatchNorm statistics)."""
        super().train(mode)
        for name in self.frozen_modules:
            self.get_submodule(name).eval()
        return self

    @torch.no_grad()
    def fuse(self) -> "YOLOWorldDetector":
        """Fold every BatchNorm that follows a convolution into it (inference speed-up, same outputs)."""
        for module in self.modules():
            if isinstance(module, ConvModule):
                module.fuse()
        return self

    def init_weights(self, num_classes: int = 80) -> None:
        self.bbox_head.head_module.init_weights(num_classes)


def build_detector(config: ModelConfig, text_model: TextEncoder | None = None, with_text: bool = True) -> YOLOWorldDetector:
    """A detector with freshly initialised weights; a CLIP text tower of `config.text_hidden` unless given/disabled."""
    if text_model is None and with_text and config.text_hidden and config.contrastive != "rep" and not config.num_prompts:
        text_model = TextEncoder.from_config(clip_text_config(config.text_hidden))
    return YOLOWorldDetector(config, text_model)
