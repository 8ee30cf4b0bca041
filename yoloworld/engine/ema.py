"""Exponential-momentum EMA of the detector weights (official ExpMomentumEMA, buffers included).

momentum_t = (1 - m) * exp(-(1 + t) / gamma) + m, ema = ema * (1 - momentum_t) + model * momentum_t;
the first update copies the model. A frozen text model is shared with the EMA copy, not duplicated.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, momentum: float = 1e-4, gamma: float = 2000.0):
        self.momentum = momentum
        self.gamma = gamma
        self.steps = 0
        self.module = _copy_sharing_frozen_text(model).eval()
        self.module.requires_grad_(False)
        self._skip = _frozen_text_keys(model)

    def momentum_at(self, steps: int) -> float:
        return (1 - self.momentum) * math.exp(-float(1 + steps) / self.gamma) + self.momentum

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        source = model.state_dict()
        averaged, current, copied = [], [], []
        for key, value in self.module.state_dict().items():
            if key in self._skip:
                continue
            if value.dtype.is_floating_point and self.steps > 0:
                averaged.append(value)
                current.append(source[key].detach().to(value.dtype))
            else:
                copied.append((value, source[key]))
        if averaged:
            weight = self.momentum_at(self.steps)
            # ema + w (x - ema), the official (1 - w) ema + w x rearranged: a weight that does not change (frozen)
            # keeps its exact value on every CPU, where the product form can round differently per kernel
            torch._foreach_lerp_(averaged, current, weight)
        for target, value in copied:
            target.copy_(value)
        self.steps += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps, "weights": {k: v for k, v in self.module.state_dict().items()
                                                 if k not in self._skip}}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        missing = set(self.module.state_dict()) - set(state["weights"]) - self._skip
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} keys (e.g. {sorted(missing)[0]})")
        self.module.load_state_dict(state["weights"], strict=False)


def _text_model(model: nn.Module):
    backbone = getattr(model, "backbone", None)
    return getattr(backbone, "text_model", None)


def _text_is_frozen(model: nn.Module) -> bool:
    text = _text_model(model)
    return text is not None and not any(p.requires_grad for p in text.parameters())


def _frozen_text_keys(model: nn.Module) -> set[str]:
    if not _text_is_frozen(model):
        return set()
    return {k for k in model.state_dict() if k.startswith("backbone.text_model.")}


def _copy_sharing_frozen_text(model: nn.Module) -> nn.Module:
    if not _text_is_frozen(model):
        return copy.deepcopy(model)
    text = model.backbone.text_model
    model.backbone.text_model = None
    try:
        ema = copy.deepcopy(model)
    finally:
        model.backbone.text_model = text
    ema.backbone.text_model = text
    return ema


__all__ = ["ModelEMA"]
