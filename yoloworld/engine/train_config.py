"""Training configuration: typed sections, YAML recipes (with `base:` inheritance) and `key=value` overrides.

    yoloworld train finetune_coco data.train.0.ann=... optim.lr=1e-4

A recipe is a built-in name (yoloworld/configs/NAME.yaml) or a YAML path. Every key is checked against the
dataclasses below; an unknown key is an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from yoloworld.config import (
    SIZES,
    ModelConfig,
    from_dict,
    merge,
    parse_overrides,
    to_dict,
)
from yoloworld.data.augment import AugmentConfig
from yoloworld.data.sources import DatasetConfig
from yoloworld.errors import ConfigError
from yoloworld.readers import read_yaml

RECIPES_DIR = Path(__file__).resolve().parents[1] / "configs"
MODES = ("normal", "efficient", "prompt", "rep", "image_prompt")
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "segm_AP", "segm_AP50", "segm_AP75")


@dataclass
class RandomTextConfig:
    """A small CLIP-shaped text encoder with seeded random weights, frozen like CLIP (offline experiments)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 2
    seed: int = 0


@dataclass
class RandomVisionConfig:
    """A small CLIP-shaped vision tower with seeded random weights, frozen like CLIP (offline image-prompt runs)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 2
    image_size: int = 224
    patch: int = 32
    init_scale: float = 1.0  # x CLIP's initialisation scale (Hugging Face `initializer_factor`)
    seed: int = 0


@dataclass
class ModelSection:
    size: str = "s"  # n, s, m, l, x, xl
    version: str = "v2"
    mode: str = "normal"  # normal | efficient | prompt | rep | image_prompt (engine/modes.py says what each is)
    weights: str | None = None  # start from this checkpoint (official .pth or ours); None: random init
    text_model: str | None = None  # Hugging Face CLIP folder (text weights / tokenizer)
    random_text: RandomTextConfig | None = None  # instead of CLIP: a seeded random text encoder
    freeze_text: bool = True  # official: the text encoder is frozen; unfrozen it trains at lr x text_lr_mult
    embeddings: str | None = None  # prompt / rep: (N, 512) .npy, one row per class (yoloworld embed)
    rep_neck: str = "conv"  # rep: conv (official) or linear
    prompt_adapter: bool = False  # prompt: residual MLP on the prompts
    segment: bool = False  # instance segmentation: a mask head (added to a detection checkpoint), masks from polygons
    freeze_detector: bool = False  # segment: train only the mask head; detection outputs stay exactly as loaded
    vision_model: str | None = None  # image_prompt: Hugging Face CLIP folder or id (vision tower)
    random_vision: RandomVisionConfig | None = None  # image_prompt: instead of CLIP, a seeded random vision tower
    image_prompt_min_side: float = 64.0  # image_prompt: boxes of area >= side^2 (input pixels) become prompts
    arch: dict = field(default_factory=dict)  # ModelConfig overrides (deepen, widen, min_cls_channels, ...)


@dataclass
class DataSection:
    train: list[DatasetConfig] = field(default_factory=list)
    val: list[DatasetConfig] = field(default_factory=list)  # the first one is scored
    dataset: str | None = None  # alternatively: a dataset YAML with train/val lists
    num_texts: int = 80  # texts per training image (positives + negatives, '' padded)
    workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OptimSection:
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-4
    weight_decay: float = 0.05
    scale_weight_decay: bool = True  # official: weight decay x (total batch / 64); the effective value is logged
    momentum: float = 0.937  # sgd
    nesterov: bool = True  # sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adamw
    batch_size: int = 16  # per process (official batch_size_per_gpu)
    text_lr_mult: float = 0.01
    grad_clip: float = 10.0  # max gradient norm; 0 = off


@dataclass
class ScheduleSection:
    epochs: int = 80
    warmup_epochs: float = 3.0  # warmup lasts max(warmup_epochs, warmup_min_iters)
    warmup_min_iters: int = 1000
    warmup_momentum: float = 0.8  # sgd: momentum rises from this to optim.momentum during warmup
    final_lr_factor: float = 0.01  # linear decay to lr x this at the last epoch


@dataclass
class EMASection:
    enabled: bool = True
    momentum: float = 1e-4
    gamma: float = 2000.0


@dataclass
class EvalSection:
    interval: int = 5  # validate every k epochs (and after the last)
    interval_last: int = 1  # ... every k epochs once mosaic is off (official dynamic interval)
    metric: str = "AP"  # best.pth is chosen by this (bbox mAP by default)
    batch_size: int = 8
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300


@dataclass
class CheckpointSection:
    every_iters: int = 0  # also save the resume state every N iterations (0 = off)
    every_minutes: float = 10.0  # ... and at least this often (0 = off); always at the end of an epoch
    every_epochs: int = 0  # keep epoch_N.pth every N epochs (0 = only last.pth and best.pth)
    deploy: str | None = None  # at the end, also write best.pth with its vocabulary baked in, text tower dropped
    deploy_half: bool = True  # ... in fp16 (the built-in demo model is made this way)


@dataclass
class KeepSection:
    """Fine-tuning without forgetting: measure the zero-shot vocabulary a run keeps, and methods that keep more."""

    retain: DatasetConfig | None = None  # held-out set of classes NOT in the fine-tuning data: AP logged as retain/*
    mix: DatasetConfig | None = None  # (a) other detection / grounding data, with its own texts, mixed into training
    mix_ratio: float = 0.5  # ... images drawn from it per fine-tuning image, a fresh random subset every epoch
    distill: float = 0.0  # (b) weight of self-distillation from the frozen starting model (0 = off)
    distill_classes: str | None = None  # ... class-text JSON of the vocabulary distilled (default: keep.retain's)
    l2sp: float = 0.0  # (d) decay toward the starting weights instead of toward 0 (L2-SP, decoupled); 0 = off
    wise_ft: bool = False  # (c) at the end, interpolate with the starting weights (WiSE-FT) and write wise_ft.pth
    wise_min_target: float = 0.95  # ... the alpha kept: most retained AP with target AP >= this x fine-tuned's
    compare_to: str | None = None  # a finished plain run on the same data: the summary gives this run's share of its AP


# keep.* keys that only act with another one: set alone (away from their default) they would do nothing
# (keep.wise_min_target is not one: `yoloworld wise-ft` reads it for a run trained without keep.wise_ft)
KEEP_DEPENDENT_KEYS = {"mix_ratio": "mix", "distill_classes": "distill"}


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    ema: EMASection = field(default_factory=EMASection)
    eval: EvalSection = field(default_factory=EvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    keep: KeepSection = field(default_factory=KeepSection)
    out: str = "runs/train/exp"
    device: str = "auto"  # auto, cpu, cuda, cuda:N (DDP: cuda:LOCAL_RANK)
    amp: str = "none"  # none | bf16 | fp16 (fp16 only on CUDA)
    seed: int = 0
    sync_bn: bool = False  # DDP: synchronise BatchNorm statistics across processes
    max_bad_steps: int = 20  # stop after this many consecutive steps with NaN/inf loss or gradients
    log_every: int = 10  # iterations between scalars.jsonl lines
    tensorboard: bool = True

    def validate(self) -> "TrainConfig":
        _check_finite(to_dict(self))
        checks = [
            (self.model.size in SIZES, f"model.size {self.model.size!r}: choose one of {', '.join(SIZES)}"),
            (self.model.version in ("v1", "v2"), f"model.version {self.model.version!r}: choose v1 or v2"),
            (self.model.mode in MODES, f"model.mode {self.model.mode!r}: choose one of {', '.join(MODES)}"),
            (self.model.rep_neck in ("conv", "linear"), "model.rep_neck: choose conv or linear"),
            (self.optim.optimizer in ("adamw", "sgd"),
             f"optim.optimizer {self.optim.optimizer!r}: choose adamw or sgd"),
            (self.optim.lr > 0 and self.optim.weight_decay >= 0, "optim.lr must be > 0 and optim.weight_decay >= 0"),
            (self.optim.batch_size >= 1, "optim.batch_size must be >= 1"),
            (self.schedule.epochs >= 1, "schedule.epochs must be >= 1"),
            (0 < self.schedule.final_lr_factor <= 1, "schedule.final_lr_factor must be in (0, 1]"),
            (self.eval.metric in METRICS, f"eval.metric {self.eval.metric!r}: choose one of {', '.join(METRICS)}"),
            (self.eval.interval >= 1 and self.eval.interval_last >= 1, "eval.interval values must be >= 1"),
            (self.eval.batch_size >= 1 and self.eval.max_det >= 1, "eval.batch_size and eval.max_det must be >= 1"),
            (0 <= self.eval.conf <= 1 and 0 < self.eval.iou <= 1, "eval.conf must be in [0, 1], eval.iou in (0, 1]"),
            (self.amp in ("none", "bf16", "fp16"), f"amp {self.amp!r}: choose none, bf16 or fp16"),
            (re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device)) is not None,
             f"device {self.device!r}: choose auto, cpu, cuda or cuda:N"),
            (self.data.num_texts >= 1 and self.data.workers >= 0, "data.num_texts must be >= 1, data.workers >= 0"),
            (self.model.image_prompt_min_side >= 0, "model.image_prompt_min_side must be >= 0"),
            (self.max_bad_steps >= 1 and self.log_every >= 1, "max_bad_steps and log_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.model.mode in ("prompt", "rep", "image_prompt") and not self.model.weights:
            raise ConfigError(f"model.mode={self.model.mode} starts from a checkpoint: set model.weights=FILE")
        if (self.model.segment or self.model.freeze_detector) and self.model.mode not in ("normal", "efficient"):
            raise ConfigError(f"model.segment / model.freeze_detector: segmentation trains in model.mode=normal or "
                              f"efficient, not {self.model.mode}")
        if self.eval.metric.startswith("segm_") and not self.model.segment:
            raise ConfigError(f"eval.metric={self.eval.metric} is a mask metric: set model.segment=true")
        if self.model.arch.get("mask_channels") and not self.model.segment:
            raise ConfigError("model.arch.mask_channels builds a mask head: set model.segment=true to train it")
        if self.model.freeze_detector and not self.model.segment:
            raise ConfigError("model.freeze_detector trains only the mask head: set model.segment=true")
        if self.model.freeze_detector and not self.model.weights:
            raise ConfigError("model.freeze_detector keeps the detector as loaded, but model.weights is not set: the "
                              "detector would stay random; set model.weights=FILE (a trained detector)")
        _check_random_tower(self.model.random_text, "model.random_text")
        _check_random_tower(self.model.random_vision, "model.random_vision")
        if self.checkpoint.deploy and self.model.mode in ("prompt", "rep"):
            raise ConfigError("checkpoint.deploy bakes text embeddings; prompt and rep models carry their classes "
                              "already: use best.pth as it is")
        from_dict(ModelConfig, self.model.arch, "model.arch.")  # unknown architecture keys fail here
        self._validate_keep()
        return self

    def _validate_keep(self) -> None:
        keep = self.keep
        methods = [name for name, on in (("keep.distill", keep.distill > 0), ("keep.l2sp", keep.l2sp > 0),
                                         ("keep.wise_ft", keep.wise_ft)) if on]
        used = methods + [name for name, on in (("keep.retain", keep.retain), ("keep.mix", keep.mix),
                                                ("keep.compare_to", keep.compare_to)) if on]
        checks = [
            (keep.mix_ratio > 0, f"keep.mix_ratio {keep.mix_ratio}: must be > 0"),
            (keep.distill >= 0, f"keep.distill {keep.distill}: must be >= 0 (0 = off)"),
            (keep.l2sp >= 0, f"keep.l2sp {keep.l2sp}: must be >= 0 (0 = off)"),
            (0 < keep.wise_min_target <= 1, f"keep.wise_min_target {keep.wise_min_target}: must be in (0, 1]"),
        ]
        checks += [(getattr(keep, key) == getattr(KeepSection, key) or getattr(keep, needed),
                    f"keep.{key} is set but keep.{needed} is not: it only acts with keep.{needed} (set it, or drop "
                    f"keep.{key})") for key, needed in KEEP_DEPENDENT_KEYS.items()]
        if used:
            checks += self._keep_needs(used, methods)
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def _keep_needs(self, used: list[str], methods: list[str]) -> list[tuple[bool, str]]:
        keep = self.keep
        return [
            (self.model.mode in ("normal", "efficient"),
             f"{used[0]}: keeping the open vocabulary applies to text models (model.mode=normal or efficient), "
             f"not {self.model.mode}"),
            (not methods or self.model.weights, f"{methods[0] if methods else ''}: needs the starting model: set "
                                                "model.weights=FILE"),
            (not keep.retain or self.data.val or self.data.dataset,
             "keep.retain is scored beside the fine-tuning classes: set data.val too"),
            (not keep.distill or keep.retain or keep.distill_classes,
             "keep.distill: name the vocabulary to keep with keep.distill_classes=FILE (a class-text JSON) or "
             "keep.retain"),
            (not keep.wise_ft or keep.retain, "keep.wise_ft chooses alpha on the retained vocabulary: set keep.retain"),
            (not keep.compare_to or keep.retain, "keep.compare_to is reported beside the retained vocabulary: set "
                                                 "keep.retain"),
        ]

    def model_config(self) -> ModelConfig:
        """The architecture of a freshly built model: the size preset, the mode's neck, then `model.arch`."""
        config = ModelConfig.preset(self.model.size, self.model.version)
        values = to_dict(config)
        if self.model.mode == "efficient":
            values["neck_block"] = "efficient"
        if self.model.random_text is not None:
            values["text_hidden"] = self.model.random_text.hidden
        if self.model.segment:
            values["mask_channels"] = 32  # the official YOLO-World-Seg head
        return from_dict(ModelConfig, {**values, **self.model.arch}, "model.arch.")


def resolve_recipe(name: str | Path) -> Path:
    """A YAML path, or the name of a built-in recipe (with or without .yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    builtin = RECIPES_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if builtin.is_file() and len(path.parts) == 1:
        return builtin
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise ConfigError(f"{name}: no such config file, and not a built-in recipe ({known})")


def load_recipe_dict(name: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The recipe as a dict, its `base:` recipe (a path relative to it, or a built-in name) merged under it."""
    path = resolve_recipe(name).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: `base:` chain loops back to itself")
    data = read_yaml(path, "recipe")
    base = data.pop("base", None)
    if base is None:
        return data
    relative = path.parent / str(base)
    return merge(load_recipe_dict(relative if relative.is_file() else base, _seen + (path,)), data)


def build_train_config(recipe: str | Path | None = None, overrides: list[str] | None = None,
                       data: dict | None = None) -> TrainConfig:
    """Recipe (file or built-in name) + `key=value` overrides (+ an optional dict) -> a validated TrainConfig."""
    values = load_recipe_dict(recipe) if recipe is not None else {}
    values = merge(values, data or {})
    values = merge_overrides(values, overrides or [])
    try:
        return from_dict(TrainConfig, _scientific_numbers(values)).validate()
    except ConfigError as exc:  # the key is named; the recipe it came from (or the overrides on it) too
        if recipe is None:
            raise
        raise ConfigError(f"recipe {resolve_recipe(recipe)}: {exc}") from None


SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _scientific_numbers(value):
    """YAML 1.1 reads `2e-4` (no dot) as a string; every such value is meant as a number."""
    if isinstance(value, dict):
        return {k: _scientific_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scientific_numbers(v) for v in value]
    if isinstance(value, str) and SCIENTIFIC.match(value.strip()):
        return float(value)
    return value


def merge_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply `a.b=1` overrides; a list element is addressed by its index (`data.train.0.ann=...`)."""
    for pair in overrides:
        nested = parse_overrides([pair])
        values = _merge_indexed(values, nested, pair)
    return values


def _merge_indexed(base, update, pair: str):
    if isinstance(base, list) and isinstance(update, dict):
        items = list(base)
        for key, value in update.items():
            if not str(key).isdigit() or int(key) > len(items):
                raise ConfigError(f"override {pair!r}: list index {key!r} out of range (the list has {len(items)})")
            index = int(key)
            current = items[index] if index < len(items) else {}
            if index == len(items):
                items.append(None)
            items[index] = _merge_indexed(current, value, pair) if isinstance(value, dict) else value
        return items
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for key, value in update.items():
            out[key] = _merge_indexed(out.get(key), value, pair) if isinstance(value, dict) else value
        return out
    return update


def config_to_dict(config: TrainConfig) -> dict:
    """Plain YAML-able dict (tuples become lists)."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(config))


__all__ = ["MODES", "METRICS", "RandomTextConfig", "RandomVisionConfig", "KeepSection", "ModelSection", "DataSection",
           "OptimSection", "ScheduleSection", "EMASection", "EvalSection", "CheckpointSection", "TrainConfig", "resolve_recipe",
           "load_recipe_dict", "build_train_config", "merge_overrides", "config_to_dict"]


def _check_random_tower(tower, key: str) -> None:
    """A seeded random text or vision tower that can be built: positive sizes, whole heads, patches that fit."""
    if tower is None:
        return
    for name in ("hidden", "layers", "heads", *(("image_size", "patch") if hasattr(tower, "patch") else ())):
        if getattr(tower, name) < 1:
            raise ConfigError(f"{key}.{name} {getattr(tower, name)}: must be >= 1")
    if tower.hidden % tower.heads:
        raise ConfigError(f"{key}.hidden {tower.hidden} must be a multiple of {key}.heads {tower.heads}")
    if hasattr(tower, "patch") and tower.patch > tower.image_size:
        raise ConfigError(f"{key}.patch {tower.patch} is larger than {key}.image_size {tower.image_size}: "
                          "a crop must hold at least one patch")


def _check_finite(values, where: str = "") -> None:
    """Every number in the config is finite: `optim.lr=inf` would train NaN weights."""
    if isinstance(values, dict):
        for key, value in values.items():
            _check_finite(value, f"{where}{key}.")
    elif isinstance(values, (list, tuple)):
        for index, value in enumerate(values):
            _check_finite(value, f"{where}{index}.")
    elif isinstance(values, float) and not math.isfinite(values):
        raise ConfigError(f"{where[:-1]} {values}: must be a finite number")

