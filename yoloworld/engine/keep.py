"""Fine-tuning without forgetting, inside the training step.

- keep.distill (self-distillation): the frozen starting model scores a vocabulary outside the fine-tuning classes on
  every training batch, and the model's scores for those texts are pulled toward the starting model's (soft targets,
  as in learning without forgetting, Li & Hoiem, ECCV 2016). The texts ride along as extra columns: the detection loss
  never sees them, so an unlabelled object of a kept class is not taught to be background.
- keep.l2sp (L2-SP, Li, Grandvalet & Davoine, ICML 2018): after every step the weights decay toward their starting
  values instead of toward 0, decoupled from the gradient as AdamW decouples weight decay.

Scoring the kept vocabulary is in validate.py (keep.retain), mixing other data in batches.py (keep.mix), weight-space
ensembling after training in wise_ft.py (keep.wise_ft).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

import torch
import torch.nn.functional as F

from yoloworld.data.class_texts import load_class_texts
from yoloworld.errors import ConfigError
from yoloworld.models.boxes import flatten_levels

from .train_config import TrainConfig

logger = logging.getLogger(__name__)


def distilled_texts(config: TrainConfig, retain_texts: list[list[str]] | None, taught: set[str]) -> list[str]:
    """Every synonym of keep.distill_classes (default: the retained vocabulary), less the fine-tuning classes'
    texts: those are taught by the labels, and a teacher target on them would fight the detection loss."""
    classes = load_class_texts(config.keep.distill_classes) if config.keep.distill_classes else retain_texts or []
    texts = list(dict.fromkeys(text for synonyms in classes for text in synonyms if text not in taught))
    if not texts:
        where = config.keep.distill_classes or "the keep.retain set"
        raise ConfigError(f"{where}: keep.distill has no text left once the fine-tuning classes are taken out")
    return texts


class SelfDistillation:
    """Soft targets from the frozen starting model for `texts`, added to every batch as extra text columns."""

    def __init__(self, teacher: torch.nn.Module, texts: list[str], weight: float):
        self.teacher = teacher.eval().requires_grad_(False)
        self.texts = texts
        self.weight = weight

    @classmethod
    def build(cls, config: TrainConfig, student: torch.nn.Module, classes: list[list[str]], texts: list[str],
              device: torch.device) -> "SelfDistillation":
        """The teacher is the starting model as loaded (an efficient-neck run keeps the original text-guided neck)."""
        if config.model.mode == "normal" and not config.model.segment:
            teacher = copy.deepcopy(student, {id(student.text_model): None})  # the text tower is not copied
        else:
            from .modes import build_training_model  # the checkpoint again, in plain detection form

            as_loaded = replace(config, model=replace(config.model, mode="normal", freeze_detector=False))
            teacher = build_training_model(as_loaded, classes).model
        teacher.backbone.text_model = None  # the student's frozen text embeddings are reused: no second text tower
        teacher.frozen_modules = tuple(m for m in teacher.frozen_modules if not m.startswith("backbone.text_model"))
        logger.info("keep.distill: the starting model scores %d texts (%s) on every batch, weight %g", len(texts),
                    ", ".join(texts[:6]) + (", ..." if len(texts) > 6 else ""), config.keep.distill)
        return cls(teacher.to(device), texts, config.keep.distill)

    def extend(self, text: torch.Tensor, encode) -> torch.Tensor:
        """(B, T, D) batch texts -> (B, T + K, D): the distilled texts appended to every image's list."""
        extra = encode(self.texts).to(text.dtype)
        return torch.cat([text, extra[None].expand(len(text), -1, -1)], dim=1)

    def loss(self, images: torch.Tensor, text: torch.Tensor, cls_logits: list[torch.Tensor], world_size: int = 1
             ) -> torch.Tensor:
        """BCE between the model's logits and the teacher's probabilities on the last K columns, summed and
        normalised by the teacher's total score, scaled like the detection losses (x images x processes)."""
        count = len(self.texts)
        with torch.no_grad():
            target = flatten_levels([m[:, -count:] for m in self.teacher(images, text)[0]]).float().sigmoid()
        logits = flatten_levels([m[:, -count:] for m in cls_logits]).float()
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
        return self.weight * bce / target.sum().clamp(min=1) * len(images) * world_size


class AnchorDecay:
    """Decoupled L2-SP: w <- w - lr * strength * (w - w_start) after each optimiser step, per parameter group lr."""

    def __init__(self, optimizer: torch.optim.Optimizer, strength: float):
        self.optimizer, self.strength = optimizer, strength
        self.starts = [[p.detach().clone() for p in group["params"]] for group in optimizer.param_groups]
        count = sum(p.numel() for starts in self.starts for p in starts)
        logger.info("keep.l2sp: %d weights decay toward their starting values, strength %g", count, strength)

    @torch.no_grad()
    def step(self) -> None:
        # the groups are looked up at every step: loading a resume state replaces the optimiser's group dicts
        for group, starts in zip(self.optimizer.param_groups, self.starts):
            fraction = min(1.0, group["lr"] * self.strength)
            for param, start in zip(group["params"], starts):
                param.lerp_(start, fraction)


__all__ = ["SelfDistillation", "AnchorDecay", "distilled_texts"]
