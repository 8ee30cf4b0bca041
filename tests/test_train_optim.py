"""Optimiser groups, effective weight decay, warmup/decay schedule and the exp-momentum EMA."""

from __future__ import annotations

import math

import pytest
import torch

from yoloworld.config import ModelConfig
from yoloworld.engine.ema import ModelEMA
from yoloworld.engine.modes import random_text_encoder
from yoloworld.engine.optim import (
    LRSchedule,
    build_optimizer,
    clip_gradients,
    effective_weight_decay,
)
from yoloworld.engine.train_config import (
    OptimSection,
    RandomTextConfig,
    ScheduleSection,
)
from yoloworld.models.detector import YOLOWorldDetector

TINY = dict(deepen=0.33, widen=0.125, last_stage_channels=1024, min_cls_channels=16, text_hidden=32)


def tiny_detector(frozen_text: bool = True, **overrides) -> YOLOWorldDetector:
    torch.manual_seed(0)
    encoder = random_text_encoder(RandomTextConfig(hidden=32, layers=1, heads=2))
    model = YOLOWorldDetector(ModelConfig(**{**TINY, **overrides}), encoder)
    encoder.requires_grad_(not frozen_text)
    return model


def group_of(optimizer, parameter):
    return next(g for g in optimizer.param_groups if any(p is parameter for p in g["params"]))


def test_official_parameter_groups():
    model = tiny_detector(frozen_text=False)
    optimizer = build_optimizer(model, OptimSection(lr=1e-3, weight_decay=0.05, batch_size=16), world_size=2)
    decay = 0.05 * 32 / 64
    head = model.bbox_head.head_module
    conv_weight = model.backbone.image_model.stem.conv.weight
    assert group_of(optimizer, conv_weight)["weight_decay"] == pytest.approx(decay)
    assert group_of(optimizer, conv_weight)["lr"] == pytest.approx(1e-3)
    for no_decay in (model.backbone.image_model.stem.bn.weight, model.backbone.image_model.stem.bn.bias,
                     head.cls_contrasts[0].logit_scale, head.cls_contrasts[0].bias, head.reg_preds[0][2].bias,
                     model.neck.top_down_layers[0].attn_block.bias):
        assert group_of(optimizer, no_decay)["weight_decay"] == 0.0
    text_weight = model.backbone.text_model.model.text_projection.weight
    assert group_of(optimizer, text_weight)["lr"] == pytest.approx(1e-5)  # text model at lr x 0.01
    assert group_of(optimizer, text_weight)["weight_decay"] == pytest.approx(decay)
    layer_norm = model.backbone.text_model.model.text_model.final_layer_norm.weight
    assert group_of(optimizer, layer_norm)["weight_decay"] == 0.0
    counted = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert counted == sum(p.numel() for p in model.parameters())


def test_frozen_text_and_prompt_embeddings():
    model = tiny_detector(frozen_text=True)
    optimizer = build_optimizer(model, OptimSection(optimizer="sgd"))
    names = {g["name"] for g in optimizer.param_groups}
    assert names == {"detector_decay", "detector_no_decay"}
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]
    prompt = YOLOWorldDetector(ModelConfig(**{**TINY, "text_hidden": None, "num_prompts": 5}), None)
    optimizer = build_optimizer(prompt, OptimSection())
    assert group_of(optimizer, prompt.embeddings)["weight_decay"] == 0.0


def test_effective_weight_decay_is_explicit():
    assert effective_weight_decay(OptimSection(weight_decay=0.025, batch_size=16), 32) == pytest.approx(0.2)
    unscaled = OptimSection(weight_decay=0.025, batch_size=16, scale_weight_decay=False)
    assert effective_weight_decay(unscaled, 32) == 0.025


def test_warmup_then_linear_decay():
    schedule = LRSchedule.from_config(OptimSection(lr=1e-3), ScheduleSection(epochs=10, warmup_epochs=3,
                                                                             warmup_min_iters=50), 20)
    assert schedule.warmup_iters == 60  # max(3 epochs x 20, 50)
    assert schedule.lr_at(0, 0) == 0.0
    assert schedule.lr_at(30, 1) == pytest.approx(0.5 * 1e-3 * ((1 - 0.1) * 0.99 + 0.01))
    assert schedule.lr_at(100, 5) == pytest.approx(1e-3 * (0.5 * 0.99 + 0.01))
    assert schedule.lr_at(199, 9) == pytest.approx(1e-3 * (0.1 * 0.99 + 0.01))
    sgd = LRSchedule.from_config(OptimSection(optimizer="sgd", lr=1e-2), ScheduleSection(epochs=2, warmup_epochs=0,
                                                                                      warmup_min_iters=10), 100)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD([{"params": model.parameters(), "lr_mult": 0.5}], lr=1e-2, momentum=0.937)
    sgd.apply(optimizer, 150, 1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 1e-2 * (0.5 * 0.99 + 0.01))
    sgd.apply(optimizer, 0, 0)
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.8)
    assert LRSchedule.from_config(OptimSection(), ScheduleSection(epochs=2), 10).warmup_note() is not None


def test_clip_reports_non_finite_norms():
    layer = torch.nn.Linear(3, 1)
    layer(torch.ones(1, 3)).sum().backward()
    assert clip_gradients(layer.parameters(), 10.0) == pytest.approx(2.0)  # sqrt(3 * 1 + 1)
    layer.weight.grad[0, 0] = float("nan")
    assert not math.isfinite(clip_gradients(layer.parameters(), 10.0))
    assert not math.isfinite(clip_gradients(layer.parameters(), 0.0))


def test_ema_follows_the_official_momentum_and_shares_the_frozen_text_model():
    model = tiny_detector()
    ema = ModelEMA(model, momentum=1e-4, gamma=2000)
    assert ema.module.backbone.text_model is model.backbone.text_model
    weight = model.backbone.image_model.stem.conv.weight
    with torch.no_grad():
        weight.add_(1.0)
    ema.update(model)  # first update copies
    assert torch.equal(ema.module.backbone.image_model.stem.conv.weight, weight)
    before = ema.module.backbone.image_model.stem.conv.weight.clone()
    with torch.no_grad():
        weight.add_(1.0)
        model.backbone.image_model.stem.bn.running_mean.add_(2.0)
    ema.update(model)
    m = (1 - 1e-4) * math.exp(-2 / 2000) + 1e-4
    expected = before * (1 - m) + weight * m
    assert torch.allclose(ema.module.backbone.image_model.stem.conv.weight, expected, atol=1e-6)
    running = ema.module.backbone.image_model.stem.bn.running_mean
    assert torch.allclose(running, model.backbone.image_model.stem.bn.running_mean * m, atol=1e-5)  # buffers too
    state = ema.state_dict()
    assert not any(k.startswith("backbone.text_model.") for k in state["weights"])
    again = ModelEMA(tiny_detector())
    again.load_state_dict(state)
    assert again.steps == 2 and torch.equal(again.module.backbone.image_model.stem.conv.weight,
                                            ema.module.backbone.image_model.stem.conv.weight)
