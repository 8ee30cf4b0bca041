"""Convolution building blocks of YOLOv8 / YOLO-World (names follow the official checkpoint keys)."""

from __future__ import annotations

import math

import torch
from torch import nn

BN_MOMENTUM = 0.03
BN_EPS = 0.001


def make_divisible(channels: float, widen: float, divisor: int = 8) -> int:
    """Width scaling of the official models: ceil(c * widen / 8) * 8."""
    return math.ceil(channels * widen / divisor) * divisor


def make_round(count: float, factor: float) -> int:
    """Depth (and head-count) scaling of the official models: max(round(n * factor), 1) for n > 1."""
    return max(round(count * factor), 1) if count > 1 else int(count)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class ConvModule(nn.Module):
    """Conv2d + BatchNorm2d + SiLU. `act=False` drops the activation, `norm=False` the norm (conv gets a bias)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, act: bool = True, norm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=not norm)
        self.bn = batch_norm(c_out) if norm else None
        self.act = nn.SiLU(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x) if self.act is not None else x

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (inference only)."""
        if self.bn is None:
            return
        conv, bn = self.conv, self.bn
        std = (bn.running_var + bn.eps).sqrt()
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          groups=conv.groups, bias=True).to(conv.weight)
        fused.weight.copy_(conv.weight * (bn.weight / std).reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * bn.weight / std + bn.bias)
        self.conv, self.bn = fused, None


class DarknetBottleneck(nn.Module):
    """Two 3x3 ConvModules with an optional residual."""

    def __init__(self, channels: int, add_identity: bool):
        super().__init__()
        self.conv1 = ConvModule(channels, channels, 3)
        self.conv2 = ConvModule(channels, channels, 3)
        self.add_identity = add_identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.add_identity else y


class CSPLayerWithTwoConv(nn.Module):
    """YOLOv8 C2f: 1x1 conv, split in two, chain bottlenecks on the last chunk, concat all, 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, num_blocks: int, add_identity: bool = True, num_extra_chunks: int = 0):
        super().__init__()
        self.mid_channels = c_out // 2
        self.main_conv = ConvModule(c_in, 2 * self.mid_channels, 1)
        self.final_conv = ConvModule((2 + num_blocks + num_extra_chunks) * self.mid_channels, c_out, 1)
        self.blocks = nn.ModuleList(DarknetBottleneck(self.mid_channels, add_identity) for _ in range(num_blocks))

    def _chunks(self, x: torch.Tensor) -> list[torch.Tensor]:
        chunks = list(self.main_conv(x).split((self.mid_channels, self.mid_channels), dim=1))
        for block in self.blocks:
            chunks.append(block(chunks[-1]))
        return chunks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(torch.cat(self._chunks(x), dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained 5x5 max pools, concatenated with the input."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5):
        super().__init__()
        self.conv1 = ConvModule(c_in, c_in // 2, 1)
        self.poolings = nn.MaxPool2d(kernel, 1, kernel // 2)
        self.conv2 = ConvModule(c_in // 2 * 4, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        y1 = self.poolings(x)
        y2 = self.poolings(y1)
        return self.conv2(torch.cat([x, y1, y2, self.poolings(y2)], dim=1))
