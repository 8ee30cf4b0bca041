"""Optimiser with the official parameter groups, and the warmup + linear-decay schedule.

Groups (official YOLOWv5OptimizerConstructor semantics): no weight decay on norm layers, biases,
`logit_scale` and prompt `embeddings`; the text model (when it trains at all) at lr x text_lr_mult.
The official constructor multiplies the weight decay by total_batch / 64; with `scale_weight_decay`
we do the same, and the effective value is reported instead of hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from yoloworld.models.checkpoint import TEXT_PREFIX

from .train_config import OptimSection, ScheduleSection

BASE_TOTAL_BATCH = 64  # the official constructor's reference batch for weight-decay scaling
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
NO_DECAY_NAMES = ("bias", "logit_scale", "embeddings")


def effective_weight_decay(optim: OptimSection, world_size: int) -> float:
    if not optim.scale_weight_decay:
        return optim.weight_decay
    return optim.weight_decay * optim.batch_size * world_size / BASE_TOTAL_BATCH


def parameter_groups(model: nn.Module, weight_decay: float, text_lr_mult: float) -> list[dict]:
    """Trainable parameters in up to four groups: (decay | no decay) x (detector | text model)."""
    groups: dict[tuple[bool, bool], list] = {}
    for module_name, module in model.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            full_name = f"{module_name}.{name}" if module_name else name
            decay = not (isinstance(module, NORM_TYPES) or name in NO_DECAY_NAMES)
            text = full_name.startswith(TEXT_PREFIX)
            groups.setdefault((decay, text), []).append(parameter)
    out = []
    for (decay, text), params in sorted(groups.items(), key=lambda item: (item[0][1], not item[0][0])):
        out.append({"params": params, "weight_decay": weight_decay if decay else 0.0,
                    "lr_mult": text_lr_mult if text else 1.0,
                    "name": f"{'text' if text else 'detector'}_{'decay' if decay else 'no_decay'}"})
    if not out:
        raise ValueError("the model has no trainable parameters")
    return out


def build_optimizer(model: nn.Module, optim: OptimSection, world_size: int = 1) -> torch.optim.Optimizer:
    groups = parameter_groups(model, effective_weight_decay(optim, world_size), optim.text_lr_mult)
    for group in groups:
        group["lr"] = optim.lr * group["lr_mult"]
    if optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov)
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas))


def describe_optimizer(optimizer: torch.optim.Optimizer, optim: OptimSection, world_size: int) -> str:
    total = optim.batch_size * world_size
    decay = effective_weight_decay(optim, world_size)
    scaled = (f"{optim.weight_decay:g} x total batch {total} / {BASE_TOTAL_BATCH} = {decay:g} "
              "(official scaling; optim.scale_weight_decay=false keeps the value as given)"
              if optim.scale_weight_decay else f"{decay:g} (not scaled by batch size)")
    sizes = ", ".join(f"{g['name']} {sum(p.numel() for p in g['params']):,}" for g in optimizer.param_groups)
    return (f"optimizer {optim.optimizer} lr {optim.lr:g}, effective weight decay {scaled}; "
            f"parameter groups: {sizes}")


@dataclass
class LRSchedule:
    """Warmup from 0 over max(warmup_epochs, warmup_min_iters) iterations, then the official linear decay
    lr x ((1 - epoch / epochs) * (1 - final) + final), stepped per epoch. SGD momentum warms up too."""

    base_lr: float
    epochs: int
    iters_per_epoch: int
    warmup_iters: int
    final_factor: float
    momentum: float | None = None  # SGD only
    warmup_momentum: float = 0.8

    @classmethod
    def from_config(cls, optim: OptimSection, schedule: ScheduleSection, iters_per_epoch: int) -> "LRSchedule":
        warmup = max(int(round(schedule.warmup_epochs * iters_per_epoch)), schedule.warmup_min_iters)
        return cls(optim.lr, schedule.epochs, iters_per_epoch, warmup, schedule.final_lr_factor,
                   optim.momentum if optim.optimizer == "sgd" else None, schedule.warmup_momentum)

    def epoch_factor(self, epoch: int) -> float:
        return (1 - epoch / self.epochs) * (1.0 - self.final_factor) + self.final_factor

    def lr_at(self, step: int, epoch: int) -> float:
        target = self.base_lr * self.epoch_factor(epoch)
        if step < self.warmup_iters:
            return target * step / self.warmup_iters
        return target

    def apply(self, optimizer: torch.optim.Optimizer, step: int, epoch: int) -> float:
        """Set every group's lr (and SGD momentum) for this iteration; returns the base group's lr."""
        lr = self.lr_at(step, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
            if self.momentum is not None and "momentum" in group:
                progress = min(step / self.warmup_iters, 1.0) if self.warmup_iters else 1.0
                group["momentum"] = self.warmup_momentum + (self.momentum - self.warmup_momentum) * progress
        return lr

    @property
    def total_iters(self) -> int:
        return self.epochs * self.iters_per_epoch

    def warmup_note(self) -> str | None:
        if self.warmup_iters >= self.total_iters:
            return (f"warmup ({self.warmup_iters} iterations) covers the whole run ({self.total_iters}): the lr never "
                    "reaches its base value; lower schedule.warmup_min_iters")
        return None


def clip_gradients(parameters, max_norm: float) -> float:
    """Clip to `max_norm` (0 = no clipping) and return the total norm (inf/NaN when the gradients are)."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    norms = torch.stack([p.grad.detach().float().norm() for p in params])
    return float(norms.norm()) if torch.isfinite(norms).all() else math.inf


__all__ = ["BASE_TOTAL_BATCH", "effective_weight_decay", "parameter_groups", "build_optimizer", "describe_optimizer",
           "LRSchedule", "clip_gradients"]
