"""Reparameterization (as the official tools/reparameterize_yoloworld.py): fold a fixed vocabulary into the neck and the head.

With text embeddings E (N x D, L2-normalised) the text-dependent parts become plain weights:
  head  `cls_contrasts.i.conv.weight` = E * exp(logit_scale_i), `conv.bias` = bias_i (N copies); `norm.*` stays
  neck  G = guide_fc(E) (N x embed) per attention block, stored either as one 1x1 conv per head
        (`guide_convs.h.weight` = G[:, h*hc:(h+1)*hc], the official conv mode) or as one tensor
        (`guide_weight[n, c, m]` = G[n, m*hc + c], our linear mode; the official one interleaves heads)
Every `text_model` and `image_prompt_encoder` key is dropped. The resulting detector needs no text model and gives
the original model's outputs for those texts.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from yoloworld.config import NECK_MODES, ModelConfig
from yoloworld.errors import CheckpointError, ConfigError, InputError
from yoloworld.models.blocks import ConvModule
from yoloworld.models.checkpoint import (
    load_detector,
    load_weights,
    open_checkpoint,
    save_checkpoint,
)
from yoloworld.models.detector import YOLOWorldDetector
from yoloworld.models.neck import RepMaxSigmoidAttnBlock

HEAD_PREFIX = "bbox_head.head_module.cls_contrasts."


def fold_texts(state: dict[str, torch.Tensor], text_embeds: torch.Tensor, neck: str = "conv",
               source: str = "weights") -> dict[str, torch.Tensor]:
    """A text-conditioned (or prompt) state_dict -> the reparameterized state_dict for `text_embeds` (N, D)."""
    if neck not in NECK_MODES:
        raise ConfigError(f"unknown neck mode {neck!r}: use conv or linear")
    _check_foldable(state, source)
    embeds = text_embeds.detach().float().cpu()
    folded = {k: v for k, v in state.items()  # a folded vocabulary leaves nothing to prompt: no text, no images
              if "text_model" not in k and k != "embeddings" and not k.startswith(("adapter.", "image_prompt_encoder."))}
    for prefix in _prefixes(folded, HEAD_PREFIX, ".logit_scale"):
        _fold_head(folded, prefix, embeds)
    for prefix in _prefixes(folded, "neck.", ".guide_fc.weight"):
        _fold_guides(folded, prefix, embeds, neck)
    return folded


def _check_foldable(state: dict, source: str) -> None:
    if any(k.startswith("neck.text_enhancer.") for k in state):
        raise CheckpointError(f"{source}: a v1 model cannot be reparameterized: its image-pooling attention makes "
                              "the texts depend on the image; use a v2 model")
    if f"{HEAD_PREFIX}0.conv.weight" in state:
        raise CheckpointError(f"{source}: already reparameterized; reparameterize the text-conditioned original")
    if f"{HEAD_PREFIX}0.logit_scale" in state and f"{HEAD_PREFIX}0.norm.weight" not in state:
        raise CheckpointError(f"{source}: only the BatchNorm contrastive head (v2) can be folded into a convolution")


def _prefixes(state: dict, start: str, end: str) -> list[str]:
    return [k[: -len(end) + 1] for k in state if k.startswith(start) and k.endswith(end)]


def _fold_head(state: dict, prefix: str, embeds: torch.Tensor) -> None:
    scale, bias = state.pop(prefix + "logit_scale"), state.pop(prefix + "bias")
    num_texts, dims = embeds.shape
    state[prefix + "conv.weight"] = (embeds * scale.exp()).reshape(num_texts, dims, 1, 1)
    state[prefix + "conv.bias"] = torch.ones(num_texts) * bias


def _fold_guides(state: dict, prefix: str, embeds: torch.Tensor, neck: str) -> None:
    weight, bias = state.pop(prefix + "guide_fc.weight"), state.pop(prefix + "guide_fc.bias")
    # (N, embed) = the text block's guide_fc(E); float64 so the stored guides carry only the final rounding
    guides = (embeds.double() @ weight.double().T + bias.double()).to(weight.dtype)
    heads = state[prefix + "bias"].numel()
    head_channels = guides.shape[1] // heads
    per_head = guides.reshape(len(guides), heads, head_channels)  # head m = channels [m*hc, (m+1)*hc)
    if neck == "conv":
        for h in range(heads):
            state[f"{prefix}guide_convs.{h}.weight"] = per_head[:, h, :, None, None].clone()
    else:
        state[prefix + "guide_weight"] = per_head.permute(0, 2, 1).contiguous()  # (N, hc, heads)


def rep_config(config: ModelConfig, num_texts: int, neck: str = "conv") -> ModelConfig:
    """The config of the reparameterized model: rep head, rep neck (efficient necks stay efficient), no text."""
    block = config.neck_block if config.neck_block == "efficient" else ("rep" if neck == "conv" else "rep_linear")
    return replace(config, contrastive="rep", neck_block=block, num_guides=num_texts, text_hidden=None,
                   num_prompts=0, prompt_adapter=False)


def build_rep_model(state: dict, config: ModelConfig, text_embeds: torch.Tensor, neck: str = "conv",
                    source: str = "weights") -> YOLOWorldDetector:
    """Fold `text_embeds` into `state` (of a model built from `config`) and load the result strictly."""
    folded = fold_texts(state, text_embeds, neck, source)
    model = YOLOWorldDetector(rep_config(config, len(text_embeds), neck), None)
    load_weights(model, folded, source)  # only benign keys (num_batches_tracked) may be absent
    return model.eval()


@torch.no_grad()
def reparameterize(model: YOLOWorldDetector, text_embeds: torch.Tensor | None = None,
                   neck: str = "conv") -> YOLOWorldDetector:
    """A new detector with `text_embeds` (N, D) folded in; a prompt detector folds its own prompts."""
    if text_embeds is None:
        if not model.config.num_prompts:
            raise ValueError("reparameterize needs text embeddings (N, D) for a text-conditioned model")
        text_embeds = model.prompt_embeddings()
    device = next(model.parameters()).device
    return build_rep_model(model.state_dict(), model.config, text_embeds, neck, "model").to(device)


@torch.no_grad()
def fold_vocabulary(model: YOLOWorldDetector, text_embeds: torch.Tensor) -> YOLOWorldDetector:
    """A prediction copy of the text-conditioned `model` with the vocabulary `text_embeds` (N, D) folded in. It
    shares every weight the texts leave unchanged (its extra memory is the folded guides and head weights only)
    and the model's layout (fused or not). A v2 model folds fully and the copy takes no texts; v1's image-pooling
    attention makes the texts depend on the image after the top-down path (and its L2 head cannot become a
    convolution), so only the guides of the layers that see the given texts fold and the copy still takes them."""
    state = model.state_dict()
    fully = model.neck.text_enhancer is None and model.config.contrastive == "bn"
    if fully:
        folded, config = fold_texts(state, text_embeds, "conv", "model"), rep_config(model.config, len(text_embeds))
    else:
        folded, config = {k: v for k, v in state.items() if "text_model" not in k}, model.config
        layers = "neck.top_down_layers." if model.neck.text_enhancer is not None else "neck."
        for prefix in _prefixes(folded, layers, ".guide_fc.weight"):
            _fold_guides(folded, prefix, text_embeds.detach().float().cpu(), "conv")
    folded = {k: v for k, v in folded.items() if not k.startswith("image_prompt_encoder.")}
    with torch.device("meta"):  # no weights allocated: load_state_dict(assign=True) takes the shared tensors
        copy = YOLOWorldDetector(config, None)
        if not fully:
            _use_rep_guides(copy, folded, len(text_embeds))
        if not any(".bn." in k for k in folded):  # the model was fused (every ConvModule's BatchNorm folded)
            _fused_layout(copy)
    copy.load_state_dict(folded, strict=True, assign=True)
    device = next(model.parameters()).device
    return copy.to(device, memory_format=torch.channels_last).eval()


def _fused_layout(model: YOLOWorldDetector) -> None:
    """Give a weightless (meta) model the modules `fuse()` leaves: convolutions with a bias, no BatchNorm. Only
    the layout: the fused weights arrive by `load_state_dict` (computing a fuse on meta tensors costs more)."""
    for module in model.modules():
        if isinstance(module, ConvModule) and module.bn is not None:
            module.conv.bias = torch.nn.Parameter(torch.empty_like(module.bn.bias))
            module.bn = None


def _use_rep_guides(model: YOLOWorldDetector, folded: dict, num_texts: int) -> None:
    """Swap the text attention blocks whose guides were folded for reparameterized ones."""
    for name, module in list(model.named_modules()):
        block = getattr(module, "attn_block", None)
        if block is not None and f"{name}.attn_block.guide_convs.0.weight" in folded:
            channels = block.project_conv.conv.in_channels
            module.attn_block = RepMaxSigmoidAttnBlock(channels, channels, block.num_heads, num_texts)


@torch.no_grad()
def reparameterize_checkpoint(weights: str | os.PathLike, out: str | os.PathLike, text_embeds: torch.Tensor | None,
                              neck: str = "conv", classes: list[list[str]] | None = None,
                              padded: bool = False) -> YOLOWorldDetector:
    """Write the reparameterized checkpoint of `weights` to `out` (folders created). No text model is needed:
    the texts arrive as embeddings, or are the prompts of a prompt-tuned checkpoint. `classes` (one synonym
    list per row of `text_embeds`, padding row excluded) and `padded` are recorded for prediction."""
    checkpoint = open_checkpoint(weights)
    path, config = checkpoint.path, checkpoint.config
    if text_embeds is None:
        if not config.num_prompts:
            raise InputError(f"{path}: a text-conditioned model needs --embeddings EMB.npy (yoloworld embed)")
        text_embeds = load_detector(path)[0].prompt_embeddings()
        info = checkpoint.info  # a prompt-tuned file may name its prompts
        classes, padded = classes or info.classes, padded or info.padded
    if text_embeds.shape[1] != config.embed_dims:
        raise InputError(f"embeddings have {text_embeds.shape[1]} dims, {path.name} expects {config.embed_dims}")
    model = build_rep_model(checkpoint.state, config, text_embeds, neck, str(path))
    num_classes = len(text_embeds) - int(padded)
    if classes is None or len(classes) != num_classes:
        classes = [[f"class{i}"] for i in range(num_classes)]
    # one embedding row per class (synonyms already averaged or first-only): one text per class
    classes = [[group[0]] for group in classes]
    meta = {"classes": classes, "padded": padded, "imgsz": checkpoint.info.imgsz,
            "reparameterized": {"neck": neck, "source": Path(path).name}}
    save_checkpoint(out, model, meta)
    return model


__all__ = ["NECK_MODES", "fold_texts", "fold_vocabulary", "rep_config",
           "build_rep_model", "reparameterize", "reparameterize_checkpoint"]
