"""Safe checkpoint loading: official mmengine `.pth` files, ours and Ultralytics' `.pt`, no pickled code, strict keys.

The model config is read from our files' metadata or inferred from the tensor shapes of an official file,
so an official checkpoint loads into a freshly built detector with no key remapping.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from yoloworld.config import ModelConfig, from_dict, to_dict
from yoloworld.errors import CheckpointError, YOLOWorldError
from yoloworld.files import atomic_save
from yoloworld.models.detector import YOLOWorldDetector
from yoloworld.models.image_prompt import (
    ImagePromptEncoder,
    vision_config_from_meta,
    vision_config_from_state,
    vision_config_meta,
)
from yoloworld.models.text import TextEncoder, clip_text_config, config_from_meta, text_config_meta
from yoloworld.models.weights import resolve_weights

TEXT_PREFIX = "backbone.text_model."
IMAGE_PROMPT_PREFIX = "image_prompt_encoder."
VISION_PREFIX = IMAGE_PROMPT_PREFIX + "image_encoder."
PROJECTOR_PREFIX = IMAGE_PROMPT_PREFIX + "projector."
BENIGN_SUFFIXES = ("position_ids", "num_batches_tracked")


def load_file(path: str | os.PathLike, what: str = "checkpoint"):
    """torch.load without executing pickled code (weights_only); every failure is one CheckpointError line."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a {what} file"
                              + (" (a training run? use its best.pth)" if (path / "best.pth").exists() else ""))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except Exception as exc:
        text = str(exc)
        if not _looks_like_torch_file(path):
            raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch file; expected .pth/.pt weights)") from None
        if "weights_only" in text or "Unsupported global" in text:
            raise CheckpointError(f"{path}: not a YOLO-World {what} (it holds pickled objects, which are never "
                                  "executed)") from None
        raise CheckpointError(f"{path}: not a YOLO-World {what} (not a PyTorch file, or truncated)") from None


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (or, before 1.6, a pickle): anything else is not a checkpoint at all."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read_checkpoint(path: str | os.PathLike) -> dict:
    """{'state_dict': ..., 'meta': ..., ...} from an official, yoloworld or Ultralytics file, never executing
    pickled code (Ultralytics files come back in the official key layout, their vocabulary in meta and
    class_embeddings)."""
    path = Path(path)
    try:
        raw = load_file(path)
    except CheckpointError:
        from yoloworld.models.ultralytics import read_ultralytics

        converted = read_ultralytics(path) if path.is_file() else None  # pickled modules read as inert data
        if converted is None:
            raise
        return converted
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: not a YOLO-World checkpoint (holds a {type(raw).__name__})")
    state = raw.get("state_dict", raw)
    if not isinstance(state, dict) or not any(str(k).startswith("backbone.image_model.") for k in state):
        raise CheckpointError(f"{path}: not a YOLO-World checkpoint (no backbone.image_model.* weights)")
    bad = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"{path}: not a YOLO-World checkpoint ({bad} is a {type(state[bad]).__name__}, "
                              "not a tensor)")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    meta = raw.get("meta") if isinstance(raw.get("meta"), dict) else {}
    if not isinstance(meta.get("yoloworld", {}), dict):
        raise CheckpointError(f"{path}: malformed yoloworld metadata")
    return {**raw, "state_dict": state, "meta": meta}


@dataclass
class Checkpoint:
    """An opened checkpoint: where it came from, its contents and the architecture they describe."""

    path: Path
    data: dict  # {'state_dict', 'meta', ...}
    config: ModelConfig

    @property
    def state(self) -> dict:
        return self.data["state_dict"]

    @property
    def stored(self) -> dict:
        """Our metadata (`meta.yoloworld`): classes, padding, image size, text config, ..."""
        return self.data["meta"].get("yoloworld", {})

    @property
    def has_text(self) -> bool:
        return any(k.startswith(TEXT_PREFIX) for k in self.state)


def open_checkpoint(name_or_path: str | os.PathLike) -> Checkpoint:
    """Resolve (file or short name), read safely and read the architecture: the one way a checkpoint is opened."""
    path = resolve_weights(name_or_path)
    data = read_checkpoint(path)
    return Checkpoint(path, data, config_from_checkpoint(data, str(path)))


def _count(state: dict, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.match(k))})


def infer_config(state: dict, source: str = "checkpoint") -> ModelConfig:
    """Read sizes and variants off the tensor shapes of a state_dict."""
    try:
        widen = state["backbone.image_model.stem.conv.weight"].shape[0] / 64
        last = state["backbone.image_model.stage4.0.conv.weight"].shape[0] / widen
        blocks = _count(state, r"backbone\.image_model\.stage1\.1\.blocks\.(\d+)\.")
        deepen = next(d for d in (0.33, 0.67, 1.0, 1.33) if max(round(3 * d), 1) == blocks)
        cls_width = state["bbox_head.head_module.cls_preds.0.0.conv.weight"].shape[0]
        in0 = int(256 * widen)
    except (KeyError, StopIteration) as exc:
        raise CheckpointError(f"{source}: not a YOLO-World state_dict (cannot infer the architecture: "
                              f"{type(exc).__name__} {exc})") from None
    rep_head = "bbox_head.head_module.cls_contrasts.0.conv.weight" in state
    rep_neck = any(".attn_block.guide_convs." in k for k in state)
    rep_linear = any(k.endswith(".attn_block.guide_weight") for k in state)  # ours: per-head split, not official
    efficient = not (rep_neck or rep_linear) and not any(".attn_block.guide_fc." in k for k in state)
    text_key = TEXT_PREFIX + "model.text_projection.weight"
    mask_key, proto_key = (f"bbox_head.head_module.{k}" for k in ("seg_preds.0.2.weight", "proto_pred.conv1.conv.weight"))
    config = ModelConfig(
        deepen=deepen, widen=widen, last_stage_channels=int(round(last)),
        image_pooling=any(k.startswith("neck.text_enhancer.") for k in state),
        contrastive="rep" if rep_head else ("bn" if "bbox_head.head_module.cls_contrasts.0.norm.weight" in state else "l2"),
        neck_block="rep" if rep_neck else "rep_linear" if rep_linear else "efficient" if efficient else "text",
        num_guides=state["bbox_head.head_module.cls_contrasts.0.conv.weight"].shape[0] if rep_head else 0,
        min_cls_channels=cls_width if cls_width > in0 else 80,
        embed_dims=state["bbox_head.head_module.cls_preds.0.2.weight"].shape[0],
        text_hidden=state[text_key].shape[1] if text_key in state else None,
        num_prompts=state["embeddings"].shape[0] if "embeddings" in state else 0,
        prompt_adapter="adapter.0.weight" in state,
        mask_channels=state[mask_key].shape[0] if mask_key in state else 0,
        proto_channels=state[proto_key].shape[0] if proto_key in state else 256,
    )
    return config


def is_fused(state: dict) -> bool:
    """Conv biases and no BatchNorm: weights saved after `fuse()` (ours, or Ultralytics' fused files)."""
    return "backbone.image_model.stem.conv.bias" in state and "backbone.image_model.stem.bn.weight" not in state


def config_from_checkpoint(checkpoint: dict, source: str = "checkpoint") -> ModelConfig:
    stored = (checkpoint.get("meta") or {}).get("yoloworld", {}).get("model")
    if not stored:
        return infer_config(checkpoint["state_dict"], source)
    try:
        return from_dict(ModelConfig, stored)
    except (YOLOWorldError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{source}: malformed model config in the metadata ({exc})") from None


def check_state_dict(model: torch.nn.Module, state: dict, source: str, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Raise one line naming missing / unexpected keys or a shape mismatch; only benign keys are tolerated."""
    expected = model.state_dict()

    def relevant(key: str) -> bool:
        return not key.endswith(BENIGN_SUFFIXES) and not key.startswith(ignore_prefixes)

    missing = [k for k in expected if k not in state and relevant(k)]
    unexpected = [k for k in state if k not in expected and relevant(k)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(f"{source}: weights do not fit this model: {'; '.join(parts)}")
    for key, value in state.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(expected[key].shape)}")


def load_weights(model: torch.nn.Module, state: dict, source: str, ignore_prefixes: tuple[str, ...] = ()):
    """Check `state` against `model` (only benign keys and `ignore_prefixes` may differ), then load it.
    Returns torch's (missing, unexpected) key lists, for callers that report what was left out."""
    check_state_dict(model, state, source, ignore_prefixes)
    result = model.load_state_dict(state, strict=False)
    text_model = getattr(model, "text_model", None)
    if text_model is not None:
        text_model.forget_fingerprint()
    return result


def text_encoder_for(checkpoint: Checkpoint, text_model: str | os.PathLike | None = None) -> TextEncoder | None:
    """The text tower a text-conditioned checkpoint needs: `text_model` (a Hugging Face folder or id, for the
    tokenizer and the weights a file lacks), else the tower stored in the file, built from the config in its
    metadata or a built-in CLIP config. None for models without a text path (reparameterized, prompt-tuned)."""
    config = checkpoint.config
    if config.contrastive == "rep" or config.num_prompts:
        return None
    if text_model is not None:
        return TextEncoder.from_pretrained(text_model)
    if not checkpoint.has_text:
        return None
    stored = checkpoint.stored.get("text_config")
    try:
        text_config = config_from_meta(stored, str(checkpoint.path)) if stored else clip_text_config(config.text_hidden)
    except CheckpointError as exc:  # the file's text tower has no stored config: name the file the tower is in
        raise CheckpointError(exc if str(exc).startswith(str(checkpoint.path)) else f"{checkpoint.path}: {exc}") \
            from None
    return TextEncoder.from_config(text_config)


def image_prompt_encoder_for(checkpoint: Checkpoint, vision_model: str | os.PathLike | None = None
                             ) -> ImagePromptEncoder | None:
    """The image-prompt encoder of a checkpoint: the CLIP vision tower of `vision_model` (a Hugging Face folder or
    id), else the one stored in the file (config from its metadata or its tensor shapes); with a projector when the
    file has one. None when the file has no encoder and no `vision_model` is given."""
    state, source = checkpoint.state, str(checkpoint.path)
    has_projector = any(k.startswith(PROJECTOR_PREFIX) for k in state)
    if vision_model is not None:
        encoder = ImagePromptEncoder.from_pretrained(vision_model, projector=has_projector)
    elif any(k.startswith(VISION_PREFIX) for k in state):
        stored = checkpoint.stored.get("vision_config")
        config = vision_config_from_meta(stored, source) if stored else vision_config_from_state(state, VISION_PREFIX,
                                                                                                 source)
        encoder = ImagePromptEncoder.from_config(config, projector=has_projector)
    elif has_projector:
        raise CheckpointError(f"{source}: holds an image-prompt projector but no CLIP vision tower: pass "
                              "--vision-model (the CLIP it was trained with, e.g. openai/clip-vit-base-patch32)")
    else:
        return None
    return encoder.check_fits(checkpoint.config.embed_dims, source)


def load_detector(path: str | os.PathLike, text_model: str | os.PathLike | None = None,
                  config: ModelConfig | None = None, vision_model: str | os.PathLike | None = None
                  ) -> tuple[YOLOWorldDetector, dict]:
    """Build the detector a checkpoint describes and load it strictly. Returns (model in eval mode, checkpoint).

    `text_model`: a Hugging Face CLIP folder or id; it supplies the tokenizer, and the text weights when the
    file has none. `vision_model`: the same for the image-prompt encoder's vision tower.
    """
    checkpoint = open_checkpoint(path)
    config = replace(config or checkpoint.config)
    encoder = text_encoder_for(checkpoint, text_model)
    if encoder is not None:
        config.text_hidden = encoder.model.config.hidden_size
    model = YOLOWorldDetector(config, encoder, image_prompt_encoder_for(checkpoint, vision_model))
    if is_fused(checkpoint.state):  # BatchNorms folded into the convs (ours after fuse(), Ultralytics' fused files)
        model.fuse()
    ignore = (TEXT_PREFIX,) if (encoder is not None and not checkpoint.has_text) else ()
    load_weights(model, checkpoint.state, str(checkpoint.path), ignore + missing_vision_keys(checkpoint, model))
    return model.eval(), checkpoint.data


def missing_vision_keys(checkpoint: Checkpoint, model: YOLOWorldDetector) -> tuple[str, ...]:
    """Key prefixes of an image-prompt encoder the file lacks (its tower came from --vision-model)."""
    if model.image_prompt_encoder is None or any(k.startswith(VISION_PREFIX) for k in checkpoint.state):
        return ()
    return VISION_PREFIX, IMAGE_PROMPT_PREFIX + "img_"


def save_checkpoint(path: str | os.PathLike, model: YOLOWorldDetector, extra_meta: dict | None = None,
                    keep_text_model: bool = True, half: bool = False, **entries) -> None:
    """Write {'meta', 'state_dict', ...} atomically (a crash never leaves half a file). The metadata holds the
    architecture and, with a text tower, its config, so the file loads with no --text-model. Without
    `keep_text_model` the text tower is left out (a model with a stored vocabulary needs none); `half` stores
    floating-point tensors in fp16. The live model is never changed."""
    config, text_model = model.config, model.text_model
    if not keep_text_model:
        config, text_model = replace(config, text_hidden=None), None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()
             if keep_text_model or not k.startswith(TEXT_PREFIX)}
    entries = {k: v.detach().cpu().float() if isinstance(v, torch.Tensor) else v for k, v in entries.items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        entries = {k: v.half() if isinstance(v, torch.Tensor) else v for k, v in entries.items()}
    stored = {"model": to_dict(config), **(extra_meta or {})}
    if text_model is not None:
        stored["text_config"] = text_config_meta(text_model)
    if model.image_prompt_encoder is not None:
        stored["vision_config"] = vision_config_meta(model.image_prompt_encoder)
    atomic_save({"meta": {"yoloworld": stored}, "state_dict": state, **entries}, path)
