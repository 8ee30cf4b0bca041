"""YOLOv8 CSPDarknet (P5) image backbone: `backbone.image_model.*` in official checkpoints."""

from __future__ import annotations

import torch
from torch import nn

from yoloworld.models.blocks import (
    SPPF,
    ConvModule,
    CSPLayerWithTwoConv,
    make_divisible,
    make_round,
)


class CSPDarknet(nn.Module):
    """Stem + four stages (strided conv, C2f, SPPF on the last); returns stage 2, 3, 4 (strides 8, 16, 32)."""

    def __init__(self, deepen: float, widen: float, last_stage_channels: int = 1024):
        super().__init__()
        # (in, out, blocks) per stage before scaling
        stages = [(64, 128, 3), (128, 256, 6), (256, 512, 6), (512, last_stage_channels, 3)]
        self.stem = ConvModule(3, make_divisible(64, widen), 3, stride=2)
        for index, (c_in, c_out, blocks) in enumerate(stages, start=1):
            c_in, c_out = make_divisible(c_in, widen), make_divisible(c_out, widen)
            layers = [ConvModule(c_in, c_out, 3, stride=2),
                      CSPLayerWithTwoConv(c_out, c_out, make_round(blocks, deepen), add_identity=True)]
            if index == len(stages):
                layers.append(SPPF(c_out, c_out))
            self.add_module(f"stage{index}", nn.Sequential(*layers))
        self.out_channels = [make_divisible(c, widen) for c in (256, 512, last_stage_channels)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stage1(self.stem(x))
        c3 = self.stage2(x)
        c4 = self.stage3(c3)
        return [c3, c4, self.stage4(c4)]
