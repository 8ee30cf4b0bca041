"""Typed configuration: dataclasses, presets for the official sizes, YAML files and `key=value` overrides."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields, is_dataclass

import yaml

from yoloworld.errors import ConfigError

DEFAULT_TEXT_MODEL = "openai/clip-vit-base-patch32"  # the CLIP text tower of the released models
NECK_MODES = ("conv", "linear")  # layouts of reparameterized neck guides (yoloworld.models.reparam)

MODEL_CHOICES = {"contrastive": ("bn", "l2", "rep"), "neck_block": ("text", "rep", "rep_linear", "efficient")}

# size -> (deepen, widen, last stage channels before widening), as in the official configs
SIZES = {
    "n": (0.33, 0.25, 1024),
    "s": (0.33, 0.50, 1024),
    "m": (0.67, 0.75, 768),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.25, 512),
    "xl": (1.00, 1.50, 512),
}


# Upper bounds of the model settings, so that a checkpoint's metadata cannot ask for an absurd model: each covers
# every released model (largest released value in the comment) with a wide margin.
MODEL_BOUNDS = {
    "deepen": 2.0,  # 1.0 (L, X, XL)
    "widen": 2.0,  # 1.5 (XL)
    "last_stage_channels": 2048,  # 1024 (N, S)
    "min_cls_channels": 16384,  # max(in_channels[0], classes): 1203 for LVIS heads
    "embed_dims": 2048,  # 768 (CLIP L/14)
    "reg_max": 64,  # 16
    "text_hidden": 2048,  # 768 (CLIP L/14)
    "num_guides": 16384,  # 1204 (LVIS vocabulary + padding, reparameterized)
    "num_prompts": 16384,  # 1203 (LVIS prompt tuning)
    "mask_channels": 256,  # 32 (YOLO-World-Seg)
    "proto_channels": 1024,  # 256
}


@dataclass
class ModelConfig:
    """Everything needed to build a detector; every official size and variant is a value of this."""

    deepen: float = 0.33
    widen: float = 0.50
    last_stage_channels: int = 1024
    image_pooling: bool = False  # v1: image-pooling attention updates the text for the bottom-up path
    contrastive: str = "bn"  # "bn" (v2), "l2" (v1), "rep" (texts folded into 1x1 convs)
    neck_block: str = "text"  # "text", "rep" / "rep_linear" (texts folded into the neck), "efficient" (no text path)
    num_guides: int = 0  # rep models: number of folded texts
    min_cls_channels: int = 80  # official head width: max(in_channels[0], num_classes)
    embed_dims: int = 512
    reg_max: int = 16
    text_hidden: int | None = 512  # CLIP text tower width; None = detector without a text model
    num_prompts: int = 0  # prompt-tuning detector: learnable prompt embeddings
    prompt_adapter: bool = False  # residual MLP on the prompt embeddings
    mask_channels: int = 0  # segmentation head: mask coefficients per prior (official YOLO-World-Seg: 32); 0 = none
    proto_channels: int = 256  # segmentation head: width of the prototype branch (official: 256, not widened)

    def __post_init__(self):
        for name, allowed in MODEL_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        for name in ("deepen", "widen", "last_stage_channels", "min_cls_channels", "embed_dims", "reg_max"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} {getattr(self, name)!r}: must be positive")
        if self.num_guides < 0 or self.num_prompts < 0 or (self.text_hidden is not None and self.text_hidden < 1):
            raise ConfigError("num_guides, num_prompts and text_hidden cannot be negative")
        if self.mask_channels < 0 or self.proto_channels < 1:
            raise ConfigError(f"mask_channels {self.mask_channels} / proto_channels {self.proto_channels}: "
                              "mask_channels is 0 (detection) or positive, proto_channels positive")
        for name, bound in MODEL_BOUNDS.items():
            value = getattr(self, name)
            if value is not None and not value <= bound:  # `not <=` also refuses NaN
                raise ConfigError(f"{name} {value!r}: at most {bound} (documented bound; the released models use "
                                  "far less)")

    @classmethod
    def preset(cls, size: str, version: str = "v2", **overrides) -> "ModelConfig":
        if size not in SIZES:
            raise ConfigError(f"unknown model size {size!r}: choose one of {', '.join(SIZES)}")
        if version not in ("v1", "v2"):
            raise ConfigError(f"unknown model version {version!r}: choose v1 or v2")
        deepen, widen, last = SIZES[size]
        v1 = version == "v1"
        values = dict(deepen=deepen, widen=widen, last_stage_channels=last, image_pooling=v1,
                      contrastive="l2" if v1 else "bn")
        return cls(**{**values, **overrides})

    @property
    def version(self) -> str:
        return "v1" if self.image_pooling else "v2"

    @property
    def segments(self) -> bool:
        """True for an instance-segmentation model (a mask head next to the detection head)."""
        return self.mask_channels > 0


# ---------------------------------------------------------------- dataclasses <-> dicts, YAML, overrides

def from_dict(cls, data: dict | None, where: str = ""):
    """Build dataclass `cls` from a dict, recursively; an unknown key is an error listing the valid ones."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    valid = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in valid:
            raise ConfigError(f"unknown key {where}{key!r}; valid keys: {', '.join(valid)}")
        values[key] = _coerce(hints[key], value, f"{where}{key}.")
    try:
        return cls(**values)
    except ConfigError as exc:  # a value the dataclass itself rejects: name it with its full key
        raise ConfigError(f"{where}{exc}") from None


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where[:-1]}: {value!r} does not fit {hint}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where[:-1]}: expected a list, got {value!r}")
        inner = args[0] if args else typing.Any
        items = [_coerce(inner, v, where) for v in value]
        return items if origin is list else tuple(items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where[:-1]}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where[:-1]}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where[:-1]}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where[:-1]}: expected a string, got {value!r}")
    return value


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def parse_overrides(pairs: list[str]) -> dict:
    """["train.lr=0.001", "model.size=s"] -> nested dict with YAML-typed values."""
    nested: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not key=value")
        key, raw = pair.split("=", 1)
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            raise ConfigError(f"override {pair!r}: {raw!r} is not a valid YAML value (quote text, e.g. "
                              f"{key}='\"{raw}\"')") from None
    return nested


def merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


__all__ = ["SIZES", "ModelConfig", "from_dict", "to_dict", "parse_overrides", "merge", "field"]
