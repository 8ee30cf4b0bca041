"""Image prompts (official YOLO-World-Image): reference crops -> class embeddings that stand where texts stand.

    crop (RGB in [0, 1]) -> resize to the tower's input (bilinear, aspect not kept, as official) -> CLIP
    normalisation (img_mean, img_std) -> CLIPVisionModelWithProjection -> L2-normalise = e
    -> normalize(projector(e) + e)

Keys under `image_prompt_encoder.` (official): `image_encoder.*` (the Hugging Face CLIP vision tower, frozen),
`projector.0/2.*` (Linear(D, 2D), GELU, Linear(2D, D)) and the buffers `img_mean`, `img_std`. The residual form is
the one official training uses; we apply it at inference too (the official demo feeds `projector(e)` alone, which
the projector was never trained for). No projector weights were released: without one (`projector` None) the
raw CLIP embedding `e` is the class embedding.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from yoloworld.config import DEFAULT_TEXT_MODEL
from yoloworld.errors import CheckpointError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # the official buffers: OpenAI CLIP's normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VISION_CONFIG_KEYS = ("hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers", "num_attention_heads",
                      "num_channels", "image_size", "patch_size", "hidden_act", "layer_norm_eps")

# Vision towers of openai/clip-vit-base-patch32 and openai/clip-vit-large-patch14-336, keyed by hidden size
BUILTIN_VISION_CONFIGS = {
    768: dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224,
              patch_size=32, projection_dim=512),
    1024: dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
               image_size=336, patch_size=14, projection_dim=768),
}
DEFAULT_VISION_MODEL = DEFAULT_TEXT_MODEL  # the CLIP whose text tower the released models use
TRAIN_CROP_SCALE = (0.8, 1.5)  # official: each sampled box is scaled by U[0.8, 1.5] before cropping
OFFICIAL_MIN_SIDE = 64  # official: only boxes of area >= 64^2 (network-input pixels) become prompts


# ---------------------------------------------------------------- configs

def clip_vision_config(base_hidden_size: int = 768, **overrides):
    """The CLIP vision config of the built-in tower with `base_hidden_size` (768: B/32, 1024: L/14-336), any field
    overridden (e.g. a small test tower)."""
    from transformers import CLIPVisionConfig

    if base_hidden_size not in BUILTIN_VISION_CONFIGS:
        raise CheckpointError(f"no built-in CLIP vision config for hidden size {base_hidden_size}: "
                              "pass --vision-model DIR (model.vision_model=DIR for yoloworld train)")
    return CLIPVisionConfig(**{"hidden_act": "quick_gelu", **BUILTIN_VISION_CONFIGS[base_hidden_size], **overrides})


def vision_config_meta(encoder: "ImagePromptEncoder") -> dict:
    """The tower's shape, stored in checkpoint metadata so any tower (not only CLIP B/L) can be rebuilt."""
    values = encoder.image_encoder.config.to_dict()
    return {key: values[key] for key in VISION_CONFIG_KEYS if key in values}


def vision_config_from_meta(stored: dict, source: str):
    from transformers import CLIPVisionConfig

    if not isinstance(stored, dict) or not all(isinstance(stored.get(k), int) for k in ("hidden_size", "image_size")):
        raise CheckpointError(f"{source}: malformed vision_config in the checkpoint metadata")
    return CLIPVisionConfig(**{k: v for k, v in stored.items() if k in VISION_CONFIG_KEYS})


def vision_config_from_state(state: dict, prefix: str, source: str):
    """Read a CLIP vision config off the tower's tensor shapes (official files carry no config): widths, depth,
    patch and image size from the weights, the head count from the built-in tower of that width."""
    try:
        patch = state[prefix + "vision_model.embeddings.patch_embedding.weight"]
        positions = state[prefix + "vision_model.embeddings.position_embedding.weight"].shape[0]
        hidden, patch_size = patch.shape[0], patch.shape[-1]
        layers = len({k[len(prefix):].split(".")[3] for k in state if k.startswith(prefix + "vision_model.encoder.")})
        values = dict(hidden_size=hidden, patch_size=patch_size, num_hidden_layers=layers,
                      image_size=patch_size * math.isqrt(positions - 1),
                      intermediate_size=state[prefix + "vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
                      projection_dim=state[prefix + "visual_projection.weight"].shape[0])
    except (KeyError, IndexError) as exc:
        raise CheckpointError(f"{source}: incomplete CLIP vision tower under {prefix}* ({exc})") from None
    heads = BUILTIN_VISION_CONFIGS.get(hidden, {}).get("num_attention_heads", max(hidden // 64, 1))
    return clip_vision_config(768, num_attention_heads=heads, **values)


# ---------------------------------------------------------------- crops

def scaled_box(box, scale: float) -> list[float]:
    """`box` (x1, y1, x2, y2) scaled by `scale` about its centre (the caller's crop clips it to the image)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
    return [cx - half_w, cy - half_h, cx + half_w, cy + half_h]


def crop_resized(image: torch.Tensor, box, size: int) -> torch.Tensor:
    """(3, H, W) float image, box xyxy in pixels -> (3, size, size): the pixels the box touches (clipped to the
    image, at least one), resized bilinearly to a square like the official crop. Training and inference share it."""
    height, width = image.shape[-2:]
    x1, y1 = min(max(int(math.floor(box[0])), 0), width - 1), min(max(int(math.floor(box[1])), 0), height - 1)
    x2, y2 = max(min(int(math.ceil(box[2])), width), x1 + 1), max(min(int(math.ceil(box[3])), height), y1 + 1)
    region = image[None, :, y1:y2, x1:x2].float()
    return F.interpolate(region, size=(size, size), mode="bilinear", align_corners=False)[0]


def sample_class_boxes(bboxes_labels: torch.Tensor, batch_size: int, min_side: float = OFFICIAL_MIN_SIDE,
                       generator: torch.Generator | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image, one ground-truth box per class present among its boxes of area >= min_side^2, drawn uniformly
    (official `sample_random_class_bboxes`): [(labels (K,), boxes (K, 4))]. Rows: [image, label, x1, y1, x2, y2]."""
    rows = bboxes_labels.detach().cpu().float()
    area = (rows[:, 4] - rows[:, 2]) * (rows[:, 5] - rows[:, 3])
    rows = rows[area >= min_side ** 2]
    picks = []
    for index in range(batch_size):
        mine = rows[rows[:, 0] == index]
        mine = mine[torch.randperm(len(mine), generator=generator)]
        first = {}
        for position, label in enumerate(mine[:, 1].long().tolist()):
            first.setdefault(label, position)
        chosen = mine[list(first.values())]
        picks.append((chosen[:, 1].long(), chosen[:, 2:6]))
    return picks


# ---------------------------------------------------------------- the encoder

class ImagePromptEncoder(nn.Module):
    """Reference crops -> L2-normalised class embeddings (D = the tower's projection size)."""

    def __init__(self, image_encoder, projector: bool = True):
        super().__init__()
        self.image_encoder = image_encoder
        dims = image_encoder.config.projection_dim
        self.projector = (nn.Sequential(nn.Linear(dims, dims * 2), nn.GELU(), nn.Linear(dims * 2, dims))
                          if projector else None)
        self.register_buffer("img_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("img_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1))
        self.image_encoder.requires_grad_(False)  # official: the tower is frozen; only the projector ever trains
        self.image_encoder.eval()

    @classmethod
    def from_config(cls, config, projector: bool = True) -> "ImagePromptEncoder":
        from transformers import CLIPVisionModelWithProjection

        return cls(CLIPVisionModelWithProjection(config), projector)

    @classmethod
    def from_pretrained(cls, name: str | os.PathLike, projector: bool = False) -> "ImagePromptEncoder":
        """The vision tower of a Hugging Face CLIP folder or hub id (a full CLIP or a vision-only model)."""
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        from yoloworld.models.text import check_weight_files, resolve_text_model

        folder = resolve_text_model(name, "vision model", "--vision-model")
        if not (folder / "config.json").exists():
            raise CheckpointError(f"{folder}: not a Hugging Face model folder (no config.json)")
        check_weight_files(folder)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a progress bar on stderr would garble our one-line messages
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a full CLIP folder: its text half is "unexpected", by design
        try:
            config = CLIPVisionConfig.from_pretrained(folder)
            tower, info = CLIPVisionModelWithProjection.from_pretrained(folder, config=config, output_loading_info=True)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{folder}: not a loadable CLIP vision model ({type(exc).__name__})") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        if info["missing_keys"]:  # e.g. a text-only CLIP folder: transformers would fill the tower at random
            raise CheckpointError(f"{folder}: holds no CLIP vision tower ({len(info['missing_keys'])} weights missing, "
                                  "e.g. " + sorted(info["missing_keys"])[0] + "); pass a full CLIP or a vision model")
        return cls(tower, projector)

    @property
    def embed_dim(self) -> int:
        return self.image_encoder.config.projection_dim

    @property
    def image_size(self) -> int:
        return self.image_encoder.config.image_size

    @classmethod
    def default(cls, embed_dims: int | None = None) -> "ImagePromptEncoder":
        """The vision tower of DEFAULT_VISION_MODEL without a projector (raw CLIP embeddings: none was released)."""
        encoder = cls.from_pretrained(DEFAULT_VISION_MODEL, projector=False)
        return encoder if embed_dims is None else encoder.check_fits(embed_dims, DEFAULT_VISION_MODEL)

    def check_fits(self, embed_dims: int, source: str) -> "ImagePromptEncoder":
        """One line when the tower's embeddings cannot stand in the detector's text slots."""
        if self.embed_dim != embed_dims:
            raise CheckpointError(f"{source}: the CLIP vision tower embeds into {self.embed_dim} dimensions but the "
                                  f"detector's classes have {embed_dims}; use the CLIP its texts came from (e.g. "
                                  "openai/clip-vit-base-patch32 for 512)")
        return self

    def train(self, mode: bool = True) -> "ImagePromptEncoder":
        super().train(mode)
        self.image_encoder.eval()  # frozen, as official (CLIP has no dropout here, but keep it explicit)
        return self

    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB in [0, 1] at `image_size` -> (N, D) L2-normalised raw CLIP embeddings (no gradient)."""
        pixels = (crops.to(self.img_mean.dtype) - self.img_mean) / self.img_std
        with torch.no_grad():
            embeds = self.image_encoder(pixel_values=pixels).image_embeds
        return F.normalize(embeds.float(), dim=-1)

    def project(self, embeds: torch.Tensor) -> torch.Tensor:
        """Official training form normalize(projector(e) + e); the raw embeddings when there is no projector."""
        if self.projector is None:
            return embeds
        return F.normalize(self.projector(embeds) + embeds, dim=-1)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.project(self.embed_crops(crops))

    def class_embedding(self, crops: torch.Tensor) -> torch.Tensor:
        """(K, 3, S, S) crops of one class -> (D,): their raw embeddings averaged and renormalised, then projected
        (the official evaluation averages crops, then applies the adapter)."""
        mean = F.normalize(self.embed_crops(crops).mean(dim=0, keepdim=True), dim=-1)
        return self.project(mean)[0]

    def replace_classes(self, images: torch.Tensor, text_embeds: torch.Tensor,
                        picks: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Training (official): per image, the column of every picked class gets the embedding of its box,
        scaled by U[0.8, 1.5], cropped and embedded; other columns keep their texts. `images` (B, 3, H, W) in
        [0, 1], `text_embeds` (B, N, D). Returns the re-normalised (B, N, D) embeddings."""
        crops, where = [], []
        for index, (labels, boxes) in enumerate(picks):
            for label, box in zip(labels.tolist(), boxes.tolist()):
                scale = TRAIN_CROP_SCALE[0] + (TRAIN_CROP_SCALE[1] - TRAIN_CROP_SCALE[0]) * float(torch.rand(()))
                crops.append(crop_resized(images[index], scaled_box(box, scale), self.image_size))
                where.append((index, label))
        if not crops:  # keep the projector in the graph: DDP expects every trainable parameter in every step
            return text_embeds + 0.0 * self.projector(text_embeds) if self.projector is not None else text_embeds
        embeds = self(torch.stack(crops)).to(text_embeds.dtype)
        rows, columns = (torch.tensor(v, device=text_embeds.device) for v in zip(*where))
        return F.normalize(text_embeds.index_put((rows, columns), embeds), dim=-1)


__all__ = ["DEFAULT_VISION_MODEL", "ImagePromptEncoder", "clip_vision_config", "vision_config_meta", "vision_config_from_meta",
           "vision_config_from_state", "crop_resized", "scaled_box", "sample_class_boxes", "OFFICIAL_MIN_SIDE"]
