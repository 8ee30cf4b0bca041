"""Safe checkpoint loading: official mmengine `.pth` files, ours and Ultralytics' `.pt`, no pickled code, strict keys.

The model config is read from our files' metadata or inferred from the tensor shapes of an official file,
so an official checkpoint loads into a freshly built detector with no key remapping.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from yoloworld.config import ModelConfig, from_dict, to_dict
from yoloworld.errors import CheckpointError
from yoloworld.models.detector import YOLOWorldDetector
from yoloworld.models.text import TextEncoder, clip_text_config
from yoloworld.models.weights import resolve_weights

TEXT_PREFIX = "backbone.text_model."
BENIGN_SUFFIXES = ("position_ids", "num_batches_tracked")


def read_checkpoint(path: str | os.PathLike) -> dict:
    """{'state_dict': ..., 'meta': ..., ...} from an official, yoloworld or Ultralytics file, never executing pickled
    code (Ultralytics files come back in the official key layout, their vocabulary in meta and class_embeddings)."""
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except Exception as exc:
        from yoloworld.models.ultralytics import read_ultralytics

        text = str(exc)
        converted = read_ultralytics(path)  # Ultralytics' pickled modules, read as inert data; None if not one
        if converted is not None:
            return converted
        reason = "it contains pickled objects" if "weights_only" in text or "Unsupported global" in text else "unreadable"
        raise CheckpointError(f"{path}: not a YOLO-World checkpoint ({reason})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: not a YOLO-World checkpoint (holds a {type(raw).__name__})")
    state = raw.get("state_dict", raw)
    if not isinstance(state, dict) or not any(k.startswith("backbone.image_model.") for k in state):
        raise CheckpointError(f"{path}: not a YOLO-World checkpoint (no backbone.image_model.* weights)")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return {**raw, "state_dict": state, "meta": raw.get("meta") or {}}


def _count(state: dict, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.match(k))})


def infer_config(state: dict) -> ModelConfig:
    """Read sizes and variants off the tensor shapes of a state_dict."""
    try:
        widen = state["backbone.image_model.stem.conv.weight"].shape[0] / 64
        last = state["backbone.image_model.stage4.0.conv.weight"].shape[0] / widen
        blocks = _count(state, r"backbone\.image_model\.stage1\.1\.blocks\.(\d+)\.")
        deepen = next(d for d in (0.33, 0.67, 1.0, 1.33) if max(round(3 * d), 1) == blocks)
        cls_width = state["bbox_head.head_module.cls_preds.0.0.conv.weight"].shape[0]
        in0 = int(256 * widen)
    except (KeyError, StopIteration) as exc:
        raise CheckpointError(f"not a YOLO-World state_dict (cannot infer the architecture: {exc})") from None
    rep_head = "bbox_head.head_module.cls_contrasts.0.conv.weight" in state
    rep_neck = any(".attn_block.guide_convs." in k for k in state)
    rep_linear = any(k.endswith(".attn_block.guide_weight") for k in state)  # ours: per-head split, not official
    efficient = not (rep_neck or rep_linear) and not any(".attn_block.guide_fc." in k for k in state)
    text_key = TEXT_PREFIX + "model.text_projection.weight"
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
    )
    return config


def is_fused(state: dict) -> bool:
    return "backbone.image_model.stem.conv.bias" in state and "backbone.image_model.stem.bn.weight" not in state


def config_from_checkpoint(checkpoint: dict) -> ModelConfig:
    stored = (checkpoint.get("meta") or {}).get("yoloworld", {}).get("model")
    return from_dict(ModelConfig, stored) if stored else infer_config(checkpoint["state_dict"])


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


def load_detector(path: str | os.PathLike, text_model: str | os.PathLike | None = None,
                  config: ModelConfig | None = None) -> tuple[YOLOWorldDetector, dict]:
    """Build the detector a checkpoint describes and load it strictly. Returns (model in eval mode, checkpoint).

    `text_model`: a Hugging Face CLIP folder; it supplies the tokenizer, and the text weights when the file
    has none (or a text config the built-in ones do not cover).
    """
    path = resolve_weights(path)
    checkpoint = read_checkpoint(path)
    state = checkpoint["state_dict"]
    config = config or config_from_checkpoint(checkpoint)
    has_text = any(k.startswith(TEXT_PREFIX) for k in state)
    encoder = None
    if text_model is not None and (config.text_hidden or not has_text) and config.contrastive != "rep" and not config.num_prompts:
        encoder = TextEncoder.from_dir(text_model)
        config.text_hidden = encoder.model.config.hidden_size
    elif has_text:
        encoder = TextEncoder.from_config(clip_text_config(config.text_hidden))
    model = YOLOWorldDetector(config, encoder)
    if is_fused(state):  # BatchNorms folded into the convs (ours after fuse(), Ultralytics' fused files)
        model.fuse()
    ignore = (TEXT_PREFIX,) if (encoder is not None and not has_text) else ()
    check_state_dict(model, state, str(path), ignore)
    model.load_state_dict(state, strict=False)
    if model.text_model is not None:
        model.text_model.forget_fingerprint()
    return model.eval(), checkpoint


def save_checkpoint(path: str | os.PathLike, model: YOLOWorldDetector, extra_meta: dict | None = None,
                    **entries) -> None:
    """Write {'meta', 'state_dict', ...} atomically (temp file + rename): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"yoloworld": {"model": to_dict(model.config), **(extra_meta or {})}}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"meta": meta, "state_dict": state, **entries}, tmp)
    os.replace(tmp, path)
