"""Checks of an opened checkpoint before anything is built from it, each failure one `CheckpointError` line naming
the file: its settings against its tensor shapes (so settings cannot ask for more memory than the weights hold),
its vocabulary metadata against its class embeddings, and finite weights (a NaN weight would silently detect
nothing). The model settings themselves are bounded in `yoloworld.config.MODEL_BOUNDS`.
"""

from __future__ import annotations

import re

import torch

from yoloworld.config import ModelConfig
from yoloworld.errors import CheckpointError

_LAYER_INDEX = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)\.")


def check_before_building(config: ModelConfig, data: dict, source: str) -> None:
    """Every check an opened checkpoint passes before a detector is built from it."""
    check_settings_against_shapes(config, data["state_dict"], source)
    check_vocabulary(config, data, source)
    check_finite(data, source)


def check_settings_against_shapes(config: ModelConfig, state: dict, source: str) -> None:
    """The detector the settings describe, built on the meta device (no memory), must find every one of its
    weights in the file with the same shape; the text and image-prompt towers are checked when built."""
    from yoloworld.models.checkpoint import IMAGE_PROMPT_PREFIX, TEXT_PREFIX, is_fused
    from yoloworld.models.detector import YOLOWorldDetector

    with torch.device("meta"):
        skeleton = YOLOWorldDetector(config)
        if is_fused(state):
            skeleton.fuse()
    check_shapes(skeleton.state_dict(), state, "", source, ignore=(TEXT_PREFIX, IMAGE_PROMPT_PREFIX))


def check_shapes(expected: dict, state: dict, prefix: str, source: str, ignore: tuple[str, ...] = ()) -> None:
    """Every key of `expected` (a module's state_dict) is in `state` under `prefix`, with the same shape (the same
    messages as `checkpoint.check_state_dict`, which later also refuses unexpected keys)."""
    from yoloworld.models.checkpoint import BENIGN_SUFFIXES

    keys = [key for key in expected if not key.endswith(BENIGN_SUFFIXES) and not key.startswith(ignore)]
    for key in keys:
        stored = state.get(prefix + key)
        if stored is not None and tuple(stored.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{source}: {prefix + key} has shape {tuple(stored.shape)}, the model expects "
                                  f"{tuple(expected[key].shape)}")
    missing = [prefix + key for key in keys if prefix + key not in state]
    if missing:
        raise CheckpointError(f"{source}: weights do not fit this model: {len(missing)} missing keys (e.g. "
                              f"{', '.join(missing[:3])}; the file's settings describe a model it holds no weights for)")


def check_tower(model_class, tower_config, state: dict, prefix: str, source: str, what: str) -> None:
    """A Hugging Face CLIP tower config (from the file's metadata) against the tower's weights in the file: the
    layer count first (a cheap look at the keys), then every shape on a meta-device build."""
    layers = {int(m.group(1)) for key in state if key.startswith(prefix) and (m := _LAYER_INDEX.search(key))}
    if tower_config.num_hidden_layers != len(layers):
        raise CheckpointError(f"{source}: the {what} config has {tower_config.num_hidden_layers} layers, the file's "
                              f"weights {len(layers)}")
    try:
        with torch.device("meta"):
            tower = model_class(tower_config)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: malformed {what} config in the metadata ({type(exc).__name__})") from None
    check_shapes(tower.state_dict(), state, prefix, source)


def check_vocabulary(config: ModelConfig, data: dict, source: str) -> None:
    """`meta.yoloworld.classes`: a list of classes, each a non-empty list of names; with `class_embeddings`, one
    (D,) row per name (then one per negative prompt, and the padding row when `padded`)."""
    stored = data["meta"].get("yoloworld", {})
    classes, embeddings = stored.get("classes"), data.get("class_embeddings")
    if classes is None:
        return
    if not isinstance(classes, list) or not classes or not all(
            isinstance(group, list) and group and all(isinstance(name, str) for name in group) for group in classes):
        raise CheckpointError(f"{source}: malformed class list in the metadata (meta.yoloworld.classes must be a "
                              f"list of lists of names, not {_describe(classes)})")
    if not isinstance(stored.get("padded", False), bool):
        raise CheckpointError(f"{source}: malformed metadata (meta.yoloworld.padded must be true or false)")
    if embeddings is None:
        return
    negatives = stored.get("negatives") or []
    rows = sum(len(group) for group in classes) + len(negatives if isinstance(negatives, list) else []) \
        + stored.get("padded", False)
    if not isinstance(embeddings, torch.Tensor) or tuple(embeddings.shape) != (rows, config.embed_dims):
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else _describe(embeddings)
        raise CheckpointError(f"{source}: its metadata names {rows} class texts (padding included) but its "
                              f"class_embeddings have shape {shape}; expected ({rows}, {config.embed_dims})")


def check_finite(data: dict, source: str) -> None:
    """Refuse NaN or infinite weights: they make every score NaN, so the model would silently detect nothing."""
    tensors = {**data["state_dict"], "class_embeddings": data.get("class_embeddings")}
    for key, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: {key} holds NaN or infinite values (damaged weights, e.g. a diverged "
                                  "training run): this model cannot detect anything")


def _describe(value) -> str:
    text = repr(value) if isinstance(value, (int, float, str, bool)) else f"a {type(value).__name__}"
    return text[:40]
