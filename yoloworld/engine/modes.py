"""The model a training run starts from, per `model.mode`:

  normal     text-conditioned YOLO-World (RepVL-PAN), from a checkpoint or freshly built; frozen text encoder
  efficient  the same without the text path in the neck (EfficientCSPLayerWithTwoConv); a text-conditioned
             checkpoint loads non-strictly, its neck guide weights left out (as the official `load_from`)
  prompt     prompt tuning: no text model, learnable prompts (from an .npy or random), everything else frozen
  rep        reparameterized fine-tuning: the class embeddings folded into neck and head, no text model
  image_prompt  official YOLO-World-Image: a text-conditioned model plus an image-prompt encoder (a frozen CLIP
             vision tower and the projector); everything but the projector is frozen, and per image one box per
             class becomes a crop whose embedding replaces that class's text (models/image_prompt.py)

prompt and rep models have a fixed vocabulary, so their class count must equal the dataset's.
`model.segment` adds the YOLO-World-Seg mask head (freshly initialised when the checkpoint is a detector, as the
official seg fine-tuning `load_from`s one); `model.freeze_detector` then trains the mask head alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from yoloworld.config import ModelConfig
from yoloworld.errors import CheckpointError, ConfigError
from yoloworld.models.checkpoint import (
    PROJECTOR_PREFIX,
    TEXT_PREFIX,
    Checkpoint,
    image_prompt_encoder_for,
    load_detector,
    load_weights,
    missing_vision_keys,
    open_checkpoint,
    text_encoder_for,
)
from yoloworld.models.detector import YOLOWorldDetector, build_detector
from yoloworld.models.head import MASK_HEAD_PREFIXES
from yoloworld.models.image_prompt import ImagePromptEncoder, clip_vision_config
from yoloworld.models.text import TextEncoder, clip_text_config

from .train_config import RandomTextConfig, RandomVisionConfig, TrainConfig

logger = logging.getLogger(__name__)
NECK_TEXT_PATH = (".attn_block.guide_fc.", ".attn_block.bias")  # what an efficient neck does not have
FROZEN_FOR_IMAGE_PROMPTS = ("backbone", "neck", "bbox_head", "image_prompt_encoder.image_encoder")


@dataclass
class TrainingModel:
    model: YOLOWorldDetector
    classes: list[list[str]]  # the dataset vocabulary (synonym lists)
    padded: bool  # fixed-vocabulary models: one extra padding row after the classes
    fixed_vocabulary: bool  # prompt / rep: labels are class indices, no texts per batch
    source: str  # where the weights came from, for the log


def build_training_model(config: TrainConfig, classes: list[list[str]]) -> TrainingModel:
    mode = config.model.mode
    if mode in ("normal", "efficient"):
        if config.model.weights:
            model, source = _load_text_conditioned(config, efficient=mode == "efficient")
        else:
            model, source = _fresh(config), "random initialisation"
        _freeze_text(model, config.model.freeze_text)
        if config.model.freeze_detector:
            logger.info("segmentation, mask head only: trainable %s", ", ".join(freeze_detector(model)))
        return TrainingModel(model, classes, False, False, source)
    if mode == "prompt":
        return _prompt_model(config, classes)
    if mode == "image_prompt":
        return _image_prompt_model(config, classes)
    return _rep_model(config, classes)


# ---------------------------------------------------------------- text encoders

def random_text_encoder(spec: RandomTextConfig, embed_dims: int = 512) -> TextEncoder:
    """A CLIP-shaped text encoder with weights drawn from `spec.seed` (the global RNG is left untouched)."""
    text_config = clip_text_config(512, hidden_size=spec.hidden, num_hidden_layers=spec.layers,
                                   num_attention_heads=spec.heads, intermediate_size=4 * spec.hidden,
                                   projection_dim=embed_dims)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return TextEncoder.from_config(text_config).eval()


def _text_encoder(config: TrainConfig, checkpoint: Checkpoint | None) -> tuple[TextEncoder, str]:
    """model.text_model (folder or hub id) > the tower stored in the checkpoint > model.random_text."""
    if config.model.text_model:
        return TextEncoder.from_pretrained(config.model.text_model), config.model.text_model
    encoder = text_encoder_for(checkpoint) if checkpoint is not None else None
    if encoder is not None:
        return encoder, "the checkpoint"
    if config.model.random_text is not None:
        return random_text_encoder(config.model.random_text), f"random (seed {config.model.random_text.seed})"
    raise ConfigError("no text encoder: set model.text_model=DIR (a Hugging Face CLIP folder or id such as "
                      "openai/clip-vit-base-patch32), start from weights that hold one, or set model.random_text")


def _freeze_text(model: YOLOWorldDetector, frozen: bool) -> None:
    """Official: the text tower gets no gradients and stays in eval mode."""
    if model.text_model is None:
        return
    model.text_model.requires_grad_(not frozen)
    if frozen:
        model.frozen_modules = tuple(dict.fromkeys((*model.frozen_modules, "backbone.text_model")))
        model.train(model.training)


# ---------------------------------------------------------------- normal / efficient

def _fresh(config: TrainConfig) -> YOLOWorldDetector:
    arch = config.model_config()
    encoder, source = _text_encoder(config, None)
    arch = replace(arch, text_hidden=encoder.model.config.hidden_size, embed_dims=encoder.embed_dim)
    model = build_detector(arch, encoder)
    model.init_weights(config.data.num_texts)
    logger.info("model: %s, random initialisation, text encoder from %s", _describe(arch), source)
    return model


def _load_text_conditioned(config: TrainConfig, efficient: bool, image_prompts: bool = False
                           ) -> tuple[YOLOWorldDetector, str]:
    checkpoint = open_checkpoint(config.model.weights)
    path, source = checkpoint.path, checkpoint.config
    if source.contrastive == "rep" or source.num_prompts:
        kind = "reparameterized" if source.contrastive == "rep" else "prompt-tuned"
        raise ConfigError(f"{path}: a {kind} model has no text path; train it with model.mode="
                          f"{'rep' if source.contrastive == 'rep' else 'prompt'}")
    if source.segments and not config.model.segment:
        raise ConfigError(f"{path}: a segmentation checkpoint; set model.segment=true to train it (with masks)")
    encoder, text_source = _text_encoder(config, checkpoint)
    arch = replace(source, text_hidden=encoder.model.config.hidden_size,
                   neck_block="efficient" if efficient else source.neck_block,
                   mask_channels=source.mask_channels or config.model_config().mask_channels)
    vision = _image_prompt_encoder(config, checkpoint) if image_prompts else None
    model = YOLOWorldDetector(arch, encoder, vision)
    state = checkpoint.state
    if efficient:
        state = {k: v for k, v in state.items() if not (k.startswith("neck.") and any(p in k for p in NECK_TEXT_PATH))}
    ignore = (() if checkpoint.has_text else (TEXT_PREFIX,)) + missing_vision_keys(checkpoint, model)
    if arch.segments and not source.segments:  # a detector checkpoint: the new mask head keeps its initial weights
        ignore += MASK_HEAD_PREFIXES
    if vision is not None and not any(k.startswith(PROJECTOR_PREFIX) for k in state):
        ignore += (PROJECTOR_PREFIX,)  # a first image-prompt run: the projector starts from its initialisation
    load_weights(model, state, str(path), ignore_prefixes=ignore)
    logger.info("model: %s from %s, text encoder from %s", _describe(arch), path, text_source)
    return model, str(path)


def _describe(arch: ModelConfig) -> str:
    return (f"{arch.version} deepen {arch.deepen} widen {arch.widen}, neck {arch.neck_block}, "
            f"head {arch.contrastive}" + (f", mask head ({arch.mask_channels} prototypes)" if arch.segments else ""))


def freeze_detector(model: YOLOWorldDetector) -> list[str]:
    """Seg-head-only fine-tuning (official `seghead` configs): only `seg_preds` and `proto_pred` get gradients,
    and every other module stays in eval mode, so its BatchNorm statistics (and the detections) never change.
    Unlike the official configs, whose `freeze_bbox` also freezes the mask head's BatchNorms by accident
    (yolo_world_seg_head.py:73-77), those train with their convolutions. Returns the trainable names."""
    trainable = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(MASK_HEAD_PREFIXES))
        if parameter.requires_grad:
            trainable.append(name)
    head = "bbox_head.head_module."
    model.frozen_modules = ("backbone", "neck", head + "cls_preds", head + "reg_preds", head + "cls_contrasts")
    model.train(model.training)
    return trainable


# ---------------------------------------------------------------- image prompts

def random_vision_encoder(spec: RandomVisionConfig, embed_dims: int = 512) -> ImagePromptEncoder:
    """An image-prompt encoder around a CLIP-shaped vision tower with weights drawn from `spec.seed` (the global
    RNG is left untouched); the projector is initialised from the same seed."""
    vision_config = clip_vision_config(768, hidden_size=spec.hidden, num_hidden_layers=spec.layers,
                                       num_attention_heads=spec.heads, intermediate_size=4 * spec.hidden,
                                       image_size=spec.image_size, patch_size=spec.patch, projection_dim=embed_dims,
                                       initializer_factor=spec.init_scale)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return ImagePromptEncoder.from_config(vision_config)


def _image_prompt_encoder(config: TrainConfig, checkpoint: Checkpoint) -> ImagePromptEncoder:
    """model.vision_model (folder or hub id) > the tower stored in the checkpoint > model.random_vision; always
    with a projector (the one in the checkpoint, else freshly initialised)."""
    source = str(config.model.vision_model or checkpoint.path)
    encoder = image_prompt_encoder_for(checkpoint, config.model.vision_model)
    if encoder is None and config.model.random_vision is not None:
        encoder, source = random_vision_encoder(config.model.random_vision, checkpoint.config.embed_dims), "random"
    if encoder is None:
        raise ConfigError("model.mode=image_prompt needs a CLIP vision tower: set model.vision_model=DIR (a Hugging "
                          "Face CLIP folder or id such as openai/clip-vit-base-patch32), start from weights that "
                          "hold one, or set model.random_vision")
    if encoder.projector is None:
        encoder = ImagePromptEncoder(encoder.image_encoder, projector=True)
    logger.info("image prompts: CLIP vision tower from %s (%d px crops)", source, encoder.image_size)
    return encoder.check_fits(checkpoint.config.embed_dims, source)


def _image_prompt_model(config: TrainConfig, classes: list[list[str]]) -> TrainingModel:
    model, source = _load_text_conditioned(config, efficient=False, image_prompts=True)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(PROJECTOR_PREFIX))
    model.frozen_modules = FROZEN_FOR_IMAGE_PROMPTS  # official: frozen BatchNorm statistics too
    model.train(model.training)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("image-prompt training: only the projector trains (%d parameters); boxes of side >= %g px become "
                "prompts", trainable, config.model.image_prompt_min_side)
    return TrainingModel(model, classes, False, False, source)


# ---------------------------------------------------------------- prompt / rep (fixed vocabulary)

def _read_class_embeddings(config: TrainConfig) -> tuple[torch.Tensor | None, bool]:
    if not config.model.embeddings:
        return None, False
    from yoloworld.models.prompt import read_embeddings

    embeds, note = read_embeddings(config.model.embeddings)
    return embeds, bool(note.get("padded", False))


def check_embedding_rows(count: int, classes: list[list[str]], padded: bool, what: str) -> None:
    if count != len(classes) + int(padded):
        extra = " + 1 padding row" if padded else ""
        raise CheckpointError(f"{what} holds {count} classes but the training set has {len(classes)}{extra}; "
                              "embed the dataset's class texts (yoloworld embed --classes-file ...) to match")


def _prompt_model(config: TrainConfig, classes: list[list[str]]) -> TrainingModel:
    from yoloworld.models.prompt import build_prompt_detector, freeze_for_prompt_tuning

    embeds, padded = _read_class_embeddings(config)
    if embeds is not None:
        check_embedding_rows(len(embeds), classes, padded, str(config.model.embeddings))
    model, report = build_prompt_detector(config.model.weights, embeds, num_prompts=len(classes),
                                          adapter=config.model.prompt_adapter)
    check_embedding_rows(model.config.num_prompts, classes, padded, str(config.model.weights))
    for line in report.lines():
        logger.info(line)
    trainable = freeze_for_prompt_tuning(model)
    logger.info("prompt tuning: %d prompts, trainable: %s", model.config.num_prompts, ", ".join(trainable))
    return TrainingModel(model, classes, padded, True, str(config.model.weights))


def _rep_model(config: TrainConfig, classes: list[list[str]]) -> TrainingModel:
    from yoloworld.models.reparam import build_rep_model

    checkpoint = open_checkpoint(config.model.weights)
    path, source = checkpoint.path, checkpoint.config
    if source.contrastive == "rep":
        model = load_detector(path)[0]
        padded = checkpoint.info.padded
        check_embedding_rows(source.num_guides, classes, padded, str(path))
    else:
        embeds, padded = _read_class_embeddings(config)
        if embeds is None:
            raise ConfigError(f"{path}: a text-conditioned model; reparameterized fine-tuning needs "
                              "model.embeddings=EMB.npy (yoloworld embed) to fold in")
        check_embedding_rows(len(embeds), classes, padded, str(config.model.embeddings))
        model = build_rep_model(checkpoint.state, source, embeds, config.model.rep_neck, str(path))
    logger.info("reparameterized fine-tuning: %d classes folded into neck and head", model.config.num_guides)
    return TrainingModel(model, classes, padded, True, str(path))


__all__ = ["TrainingModel", "build_training_model", "random_text_encoder", "random_vision_encoder",
           "check_embedding_rows", "freeze_detector"]
