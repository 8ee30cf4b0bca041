"""Ultralytics YOLO-World checkpoints (`yolov8s-worldv2.pt`, their fine-tunes) as official-layout weights.

Ultralytics pickles whole modules. The file is read as inert data (`safe_pickle`), the model is taken from where
Ultralytics put it (`ema` in trainer checkpoints, else `model`), its modules are flattened into `model.N.*` keys
and renamed to the official layout (Ultralytics module indexes -> official names, measured by loading both).
Its class names and text embeddings (`names`, `txt_feats`) become the stored vocabulary. Ultralytics never
appends a padding prompt, so neither does this vocabulary.
"""

from __future__ import annotations

import os
import re

import torch

from yoloworld.config import MODEL_BOUNDS
from yoloworld.errors import CheckpointError
from yoloworld.models.safe_pickle import HostileFile, Record, UnreadableFile, load_inert

MAX_MODULE_DEPTH = 32  # Ultralytics nests its modules about 5 deep
_BACKBONE = "backbone.image_model."
# Ultralytics v2 layer index -> (official prefix, Ultralytics class); Upsample/Concat layers carry no weights
V2_LAYERS = {
    0: (_BACKBONE + "stem", "Conv"),
    1: (_BACKBONE + "stage1.0", "Conv"), 2: (_BACKBONE + "stage1.1", "C2f"),
    3: (_BACKBONE + "stage2.0", "Conv"), 4: (_BACKBONE + "stage2.1", "C2f"),
    5: (_BACKBONE + "stage3.0", "Conv"), 6: (_BACKBONE + "stage3.1", "C2f"),
    7: (_BACKBONE + "stage4.0", "Conv"), 8: (_BACKBONE + "stage4.1", "C2f"), 9: (_BACKBONE + "stage4.2", "SPPF"),
    12: ("neck.top_down_layers.0", "C2fAttn"), 15: ("neck.top_down_layers.1", "C2fAttn"),
    16: ("neck.downsample_layers.0", "Conv"), 18: ("neck.bottom_up_layers.0", "C2fAttn"),
    19: ("neck.downsample_layers.1", "Conv"), 21: ("neck.bottom_up_layers.1", "C2fAttn"),
    22: ("bbox_head.head_module", "WorldDetect"),
}
# v1 inserts the image-pooling attention at index 16; every later layer moves up by one
V1_LAYERS = {**{i + (i >= 16): entry for i, entry in V2_LAYERS.items()},
             16: ("neck.text_enhancer", "ImagePoolingAttn")}

_CSP = [(r"cv1\.", "main_conv."), (r"cv2\.", "final_conv."), (r"m\.(\d+)\.cv(\d)\.", r"blocks.\1.conv\2.")]
# per Ultralytics class: (pattern at the start of a key inside the layer, replacement; None = no counterpart)
RENAMES = {
    "Conv": [],
    "C2f": _CSP,
    "C2fAttn": _CSP + [(r"attn\.gl\.", "attn_block.guide_fc."), (r"attn\.bias$", "attn_block.bias"),
                       (r"attn\.proj_conv\.", "attn_block.project_conv.")],
    "SPPF": [(r"cv(\d)\.", r"conv\1.")],
    "ImagePoolingAttn": [(r"projections\.(\d+)\.", r"projections.\1.conv.")],
    # cv2 = box branch, cv3 = region embeddings (mmyolo's converter swaps them); the DFL conv is
    # the fixed arange(16) our decoder computes
    "WorldDetect": [(r"cv2\.", "reg_preds."), (r"cv3\.", "cls_preds."), (r"cv4\.", "cls_contrasts."), (r"dfl\.", None)],
}


def read_ultralytics(path: str | os.PathLike) -> dict | None:
    """{'state_dict', 'meta', 'class_embeddings'} of an Ultralytics YOLO-World file; None if not an Ultralytics file.

    Never runs pickled code. A file Ultralytics wrote for another model, or one whose tensors do not have the shapes
    the model they describe needs (checked before any tensor is copied), raises one `CheckpointError` line.
    """
    try:
        raw = load_inert(path)
    except HostileFile as exc:
        raise CheckpointError(f"{path}: refused, not a usable checkpoint: {exc}") from None
    except UnreadableFile:
        return None
    model = _pickled_model(raw)
    if model is None:
        return None
    if model.name != "WorldModel":
        raise CheckpointError(f"{path}: an Ultralytics {model.name}, not a YOLO-World model (WorldModel)")
    layers = _submodules(model).get("model")
    if not isinstance(layers, Record):
        raise CheckpointError(f"{path}: Ultralytics WorldModel without its layers")
    state = official_state(list(_submodules(layers).values()), path)
    config = _checked_config(state, path)
    classes, embeddings = _vocabulary(model, path, config.embed_dims)
    meta = {"classes": [[name] for name in classes], "padded": False, "source": "ultralytics",
            "imgsz": _imgsz(model, raw)}
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    return {"state_dict": state, "meta": {"yoloworld": meta}, "class_embeddings": embeddings}


def _checked_config(state: dict, path):
    """The architecture the (not yet copied) weights describe, every weight checked against it."""
    from yoloworld.models.checkpoint import config_from_checkpoint
    from yoloworld.models.checkpoint_checks import check_settings_against_shapes

    config = config_from_checkpoint({"state_dict": state}, str(path))
    check_settings_against_shapes(config, state, str(path))
    return config


def _pickled_model(raw) -> Record | None:
    """Where Ultralytics stores the weights: `ema` (trainer checkpoints, `model` None), else `model`."""
    if not isinstance(raw, dict):
        return None
    for key in ("ema", "model"):
        value = raw.get(key)
        if isinstance(value, Record) and value.qualname.startswith("ultralytics."):
            return value
    return None


def _submodules(module: Record) -> dict:
    return {name: child for name, child in _mapping(module, "_modules").items() if isinstance(child, Record)}


def _mapping(module: Record, name: str) -> dict:
    """A dict attribute of a pickled module (`_modules`, `_parameters`, ...); anything else counts as empty."""
    value = module.attributes.get(name)
    return value if isinstance(value, dict) else {}


def module_state(module: Record, prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    """nn.Module.state_dict() of a pickled module record: parameters, persistent buffers, then children."""
    if depth > MAX_MODULE_DEPTH:
        raise CheckpointError(f"modules nested more than {MAX_MODULE_DEPTH} deep")
    attributes = module.attributes
    eps = attributes.get("eps", 1e-3)
    if module.name.startswith("BatchNorm") and not (isinstance(eps, float) and abs(eps - 1e-3) <= 1e-9):
        # our BatchNorms use the official eps; any other value would silently shift every output
        raise CheckpointError(f"BatchNorm at {prefix or 'top level'} has eps {attributes.get('eps')}, expected 0.001")
    state = {}
    transient = attributes.get("_non_persistent_buffers_set")
    transient = transient if isinstance(transient, (set, frozenset)) else set()
    for name, value in _mapping(module, "_parameters").items():
        if isinstance(value, torch.Tensor):
            state[prefix + name] = value
    for name, value in _mapping(module, "_buffers").items():
        if isinstance(value, torch.Tensor) and name not in transient:
            state[prefix + name] = value
    for name, child in _submodules(module).items():
        state.update(module_state(child, f"{prefix}{name}.", depth + 1))
    return state


def official_state(layers: list[Record], path) -> dict[str, torch.Tensor]:
    """Ultralytics layers (model.model) -> official-layout state_dict (tensors as stored: no copy yet)."""
    table = V1_LAYERS if any(layer.name == "ImagePoolingAttn" for layer in layers) else V2_LAYERS
    if len(layers) != max(table) + 1:
        raise CheckpointError(f"{path}: an Ultralytics WorldModel with {len(layers)} layers; the YOLO-World "
                              f"layouts have {max(V2_LAYERS) + 1} (v2) or {max(V1_LAYERS) + 1} (v1)")
    state = {}
    for index, layer in enumerate(layers):
        try:
            weights = module_state(layer)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: layer {index}: {exc}") from None
        if index not in table:
            if weights:
                raise CheckpointError(f"{path}: layer {index} ({layer.name}) has weights where YOLO-World has none")
            continue
        prefix, kind = table[index]
        if layer.name != kind:
            raise CheckpointError(f"{path}: layer {index} is {layer.name}, YOLO-World has {kind} there")
        for key, value in weights.items():
            renamed = _rename(key, RENAMES[kind])
            if renamed is not None:
                state[f"{prefix}.{renamed}"] = value
    for key in [k for k in state if re.search(r"cls_contrasts\.\d+\.bias$", k)]:
        state[key] = state[key].reshape(())  # (1,) in Ultralytics, a scalar officially
    return state


def _rename(key: str, rules: list) -> str | None:
    for pattern, replacement in rules:
        match = re.match(pattern, key)
        if match:
            return None if replacement is None else match.expand(replacement) + key[match.end():]
    return key


def _vocabulary(model: Record, path, embed_dims: int) -> tuple[list[str], torch.Tensor]:
    """Class names and their (N, D) text embeddings, as Ultralytics predicts with them (no padding prompt)."""
    attributes = model.attributes
    embeddings = attributes.get("txt_feats")
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 3 or embeddings.shape[0] != 1 \
            or embeddings.shape[2] != embed_dims or embeddings.shape[1] > MODEL_BOUNDS["num_guides"]:
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else None
        raise CheckpointError(f"{path}: Ultralytics WorldModel without usable text embeddings (txt_feats of shape "
                              f"{shape}; expected (1, N, {embed_dims}), N at most {MODEL_BOUNDS['num_guides']})")
    embeddings = embeddings[0].float().clone()
    names = attributes.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        names = [str(i) for i in range(len(embeddings))]
    if len(names) != len(embeddings):
        raise CheckpointError(f"{path}: {len(names)} class names but {len(embeddings)} text embeddings (txt_feats)")
    return list(names), embeddings


def _imgsz(model: Record, raw: dict) -> int:
    """The training input size Ultralytics recorded (train_args, else model.args), else its default 640."""
    for args in (raw.get("train_args"), model.attributes.get("args")):
        if isinstance(args, Record):
            args = args.attributes
        if isinstance(args, dict) and isinstance(args.get("imgsz"), int) and args["imgsz"] > 0:
            return args["imgsz"]
    return 640


def unfused_state(model: torch.nn.Module, state: dict) -> dict:
    """Fused weights (conv bias, no BatchNorm) in the unfused layout of `model`, for files the official tools load:
    each folded BatchNorm returns as an identity one holding the conv bias. running_var = 1 - eps makes
    var + eps exactly 1.0 in float32, so the BatchNorm only adds the bias."""
    state = dict(state)
    for name, module in model.named_modules():
        bn = getattr(module, "bn", None)
        if not isinstance(bn, torch.nn.BatchNorm2d) or f"{name}.bn.weight" in state or f"{name}.conv.bias" not in state:
            continue
        bias = state.pop(f"{name}.conv.bias")
        state.update({f"{name}.bn.weight": torch.ones_like(bias), f"{name}.bn.bias": bias,
                      f"{name}.bn.running_mean": torch.zeros_like(bias),
                      f"{name}.bn.running_var": torch.full_like(bias, 1 - bn.eps)})
    return state
