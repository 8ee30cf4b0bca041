"""RepVL-PAN neck: a YOLOv8 PAFPN whose CSP layers are guided by text (`neck.*` keys).

Variants, chosen by `block` ("text" | "rep" | "efficient"):
  text       MaxSigmoidCSPLayerWithTwoConv, guide = text embeddings (B, N, 512)
  rep        the same with the text folded into 1x1 convs (`guide_convs`), no text input
  rep_linear the same folded texts stored as one `guide_weight` (N, hc, heads) tensor, split per head
  efficient  no text path at all (the attention block is just its projection conv)
v1 adds the image-pooling attention (`text_enhancer`) that updates the text for the bottom-up path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from yoloworld.models.blocks import (
    ConvModule,
    CSPLayerWithTwoConv,
    make_divisible,
    make_round,
)

HEAD_CHANNELS = 32


class MaxSigmoidAttnBlock(nn.Module):
    """Per head: sigmoid(max over texts of <x, guide_fc(text)> / sqrt(hc) + bias) gates project_conv(x)."""

    def __init__(self, channels: int, embed_channels: int, num_heads: int, guide_channels: int = 512):
        super().__init__()
        if embed_channels != channels:
            raise ValueError("embed_channels must equal the block's channels (true for every official size)")
        self.num_heads = num_heads
        self.head_channels = embed_channels // num_heads
        self.bias = nn.Parameter(torch.zeros(num_heads))
        self.guide_fc = nn.Linear(guide_channels, embed_channels)
        self.project_conv = ConvModule(channels, channels, 3, act=False)

    def attention(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        guide = self.guide_fc(text).reshape(b, -1, self.num_heads, self.head_channels)
        embed = x.reshape(b, self.num_heads, self.head_channels, h, w)
        logits = torch.einsum("bmchw,bnmc->bmhwn", embed, guide).amax(dim=-1)
        return logits / self.head_channels ** 0.5 + self.bias[None, :, None, None]

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return gate_heads(self.project_conv(x), self.attention(x, text).sigmoid())


class RepMaxSigmoidAttnBlock(nn.Module):
    """Reparameterized attention: the per-head text guides are 1x1 convs (`guide_convs.h`), no text input."""

    def __init__(self, channels: int, embed_channels: int, num_heads: int, num_guides: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_channels = embed_channels // num_heads
        self.bias = nn.Parameter(torch.zeros(num_heads))
        self.guide_convs = nn.ModuleList(nn.Conv2d(self.head_channels, num_guides, 1, bias=False)
                                         for _ in range(num_heads))
        self.project_conv = ConvModule(channels, channels, 3, act=False)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        heads = x.split(self.head_channels, dim=1)
        logits = torch.stack([conv(part).amax(dim=1) for conv, part in zip(self.guide_convs, heads)], dim=1)
        return logits / self.head_channels ** 0.5 + self.bias[None, :, None, None]

    def forward(self, x: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        return gate_heads(self.project_conv(x), self.attention(x).sigmoid())


class RepLinearMaxSigmoidAttnBlock(nn.Module):
    """Reparameterized attention, linear layout: `guide_weight[n, c, m]` = guide of text n, channel c of head m.

    The official linear mode writes a plain view of the guides (heads interleaved) and cannot run; here the
    per-head split matches the text block, and the heads run as one grouped 1x1 convolution.
    """

    def __init__(self, channels: int, embed_channels: int, num_heads: int, num_guides: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_channels = embed_channels // num_heads
        self.bias = nn.Parameter(torch.zeros(num_heads))
        self.guide_weight = nn.Parameter(torch.zeros(num_guides, self.head_channels, num_heads))
        self.project_conv = ConvModule(channels, channels, 3, act=False)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        num_guides = self.guide_weight.shape[0]
        # (N, hc, M) -> (M * N, hc, 1, 1): output group m holds head m's N guides
        weight = self.guide_weight.permute(2, 0, 1).reshape(self.num_heads * num_guides, self.head_channels, 1, 1)
        logits = F.conv2d(x, weight, groups=self.num_heads).reshape(b, self.num_heads, num_guides, h, w).amax(dim=2)
        return logits / self.head_channels ** 0.5 + self.bias[None, :, None, None]

    def forward(self, x: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        return gate_heads(self.project_conv(x), self.attention(x).sigmoid())


class ProjectOnlyBlock(nn.Module):
    """Efficient neck: the attention block reduced to its projection conv (no text path)."""

    def __init__(self, channels: int):
        super().__init__()
        self.project_conv = ConvModule(channels, channels, 3, act=False)

    def forward(self, x: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        return self.project_conv(x)


def gate_heads(features: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Multiply each head's channel group of `features` (B, C, H, W) by its gate (B, M, H, W)."""
    b, c, h, w = features.shape
    m = gates.shape[1]
    return (features.reshape(b, m, c // m, h, w) * gates.unsqueeze(2)).reshape(b, c, h, w)


class TextGuidedCSPLayer(CSPLayerWithTwoConv):
    """C2f whose concatenation also receives attn_block(last chunk, text) (official MaxSigmoidCSPLayerWithTwoConv)."""

    def __init__(self, c_in: int, c_out: int, num_blocks: int, embed_channels: int, num_heads: int,
                 block: str = "text", num_guides: int = 0, guide_channels: int = 512):
        super().__init__(c_in, c_out, num_blocks, add_identity=False, num_extra_chunks=1)
        mid = self.mid_channels
        if block == "text":
            self.attn_block = MaxSigmoidAttnBlock(mid, embed_channels, num_heads, guide_channels)
        elif block == "rep":
            self.attn_block = RepMaxSigmoidAttnBlock(mid, embed_channels, num_heads, num_guides)
        elif block == "rep_linear":
            self.attn_block = RepLinearMaxSigmoidAttnBlock(mid, embed_channels, num_heads, num_guides)
        elif block == "efficient":
            self.attn_block = ProjectOnlyBlock(mid)
        else:
            raise ValueError(f"unknown neck block {block!r}: use 'text', 'rep', 'rep_linear' or 'efficient'")

    def forward(self, x: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        chunks = self._chunks(x)
        chunks.append(self.attn_block(chunks[-1], text))
        return self.final_conv(torch.cat(chunks, dim=1))


class ImagePoolingAttention(nn.Module):
    """v1 text enhancer: texts attend to 3x3 max-pooled tokens of every level; residual update of the text."""

    def __init__(self, image_channels: list[int], text_channels: int = 512, embed_channels: int = 256,
                 num_heads: int = 8, pool_size: int = 3):
        super().__init__()
        self.num_heads, self.embed_channels, self.pool_size = num_heads, embed_channels, pool_size
        self.projections = nn.ModuleList(ConvModule(c, embed_channels, 1, act=False, norm=False) for c in image_channels)
        self.query = nn.Sequential(nn.LayerNorm(text_channels), nn.Linear(text_channels, embed_channels))
        self.key = nn.Sequential(nn.LayerNorm(embed_channels), nn.Linear(embed_channels, embed_channels))
        self.value = nn.Sequential(nn.LayerNorm(embed_channels), nn.Linear(embed_channels, embed_channels))
        self.proj = nn.Linear(embed_channels, text_channels)

    def forward(self, text: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        b = text.shape[0]
        tokens = torch.cat([adaptive_max_pool(proj(x), self.pool_size).flatten(2)
                            for proj, x in zip(self.projections, features)], dim=-1).transpose(1, 2)
        hc = self.embed_channels // self.num_heads
        q = self.query(text).reshape(b, -1, self.num_heads, hc)
        k = self.key(tokens).reshape(b, -1, self.num_heads, hc)
        v = self.value(tokens).reshape(b, -1, self.num_heads, hc)
        attn = (torch.einsum("bnmc,bkmc->bmnk", q, k) / hc ** 0.5).softmax(dim=-1)
        out = torch.einsum("bmnk,bkmc->bnmc", attn, v).reshape(b, -1, self.embed_channels)
        return self.proj(out) + text


def adaptive_max_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """AdaptiveMaxPool2d(size) written as explicit slices with PyTorch's bins (floor start, ceil end): the same
    values, and it exports to ONNX at any input size (the exporter refuses sizes not divisible by `size`)."""
    h, w = x.shape[-2:]
    rows = []
    for i in range(size):
        top, bottom = (i * h) // size, math.ceil((i + 1) * h / size)
        cells = [x[..., top:bottom, (j * w) // size:math.ceil((j + 1) * w / size)].amax(dim=(-2, -1))
                 for j in range(size)]
        rows.append(torch.stack(cells, dim=-1))
    return torch.stack(rows, dim=-2)


class YOLOWorldPAFPN(nn.Module):
    """Top-down then bottom-up fusion of C3, C4, C5 with text-guided CSP layers; outputs P3, P4, P5."""

    def __init__(self, deepen: float, widen: float, last_stage_channels: int = 1024, block: str = "text",
                 num_guides: int = 0, image_pooling: bool = False, guide_channels: int = 512):
        super().__init__()
        channels = [256, 512, last_stage_channels]
        embeds = [128, 256, last_stage_channels // 2]
        heads = [4, 8, last_stage_channels // 2 // HEAD_CHANNELS]
        num_blocks = make_round(3, deepen)
        scaled = [make_divisible(c, widen) for c in channels]

        def layer(c_in: int, c_out: int, level: int) -> TextGuidedCSPLayer:
            return TextGuidedCSPLayer(make_divisible(c_in, widen), make_divisible(c_out, widen), num_blocks,
                                      make_round(embeds[level], widen), make_round(heads[level], widen),
                                      block, num_guides, guide_channels)

        self.top_down_layers = nn.ModuleList([layer(channels[1] + channels[2], channels[1], 1),
                                              layer(channels[0] + channels[1], channels[0], 0)])
        self.downsample_layers = nn.ModuleList(ConvModule(c, c, 3, stride=2) for c in scaled[:2])
        self.bottom_up_layers = nn.ModuleList([layer(channels[0] + channels[1], channels[1], 1),
                                               layer(channels[1] + channels[2], channels[2], 2)])
        self.text_enhancer = None
        if image_pooling:
            self.text_enhancer = ImagePoolingAttention([int(c * widen) for c in channels], guide_channels)
        self.out_channels = scaled

    def forward(self, feats: list[torch.Tensor], text: torch.Tensor | None = None) -> list[torch.Tensor]:
        c3, c4, c5 = feats
        p4 = self.top_down_layers[0](torch.cat([upsample(c5), c4], dim=1), text)
        p3 = self.top_down_layers[1](torch.cat([upsample(p4), c3], dim=1), text)
        if self.text_enhancer is not None:
            text = self.text_enhancer(text, [p3, p4, c5])
        n4 = self.bottom_up_layers[0](torch.cat([self.downsample_layers[0](p3), p4], dim=1), text)
        n5 = self.bottom_up_layers[1](torch.cat([self.downsample_layers[1](n4), c5], dim=1), text)
        return [p3, n4, n5]


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")
