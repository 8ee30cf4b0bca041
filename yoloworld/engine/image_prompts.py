"""Training the image-prompt projector (`model.mode=image_prompt`): which boxes become prompts in a batch, and
the class embeddings validation uses.

Validation scores the model prompted by images, not texts: every class gets the average of up to `per_class`
crops of its training boxes (as the official evaluation averages crops per class), then the current projector.
The vision tower is frozen, so those crops are embedded once, at the start of the run.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from yoloworld.data.records import DatasetSource
from yoloworld.errors import ConfigError
from yoloworld.images import load_image
from yoloworld.models.image_prompt import ImagePromptEncoder, crop_resized, sample_class_boxes

logger = logging.getLogger(__name__)


def image_prompt_parts(config, dataset, validator, model) -> tuple["PromptBoxes | None", "ReferenceBank | None"]:
    """What an image-prompt run adds to the trainer: the prompt boxes of each batch and, where it validates, the
    reference crops; (None, None) for the other modes."""
    if config.model.mode != "image_prompt":
        return None, None
    min_side = config.model.image_prompt_min_side
    _check_prompt_boxes(dataset.sources, min_side, config.data.augment)
    references = None
    if validator is not None:
        references = ReferenceBank(dataset.sources, validator.source.class_texts, model.image_prompt_encoder, min_side)
    return PromptBoxes(min_side), references


def _check_prompt_boxes(sources: list[DatasetSource], min_side: float, augment) -> None:
    """Some training box can become a prompt: at the training size (the long side at augment.image_size, the
    largest affine zoom) its area reaches min_side^2. Otherwise every batch would train the projector on nothing."""
    if min_side <= 0:
        return
    zoom = augment.image_size * (1 + augment.affine_scale)
    largest = 0.0
    for record in (r for source in sources for r in source.records if len(r.boxes)):
        sides = record.boxes[:, 2:] - record.boxes[:, :2]
        area = float(sides.prod(axis=1).max()) * (zoom / max(record.width, record.height, 1)) ** 2
        largest = max(largest, area)
        if largest >= min_side ** 2:
            return  # found one: no need to read the rest of a large dataset
    raise ConfigError(f"model.image_prompt_min_side {min_side:g}: no training box reaches {min_side:g} x {min_side:g} "
                      f"pixels at the training size (the largest: about {largest ** 0.5:.0f} px on a side), so no "
                      "box would ever become an image prompt; lower model.image_prompt_min_side")


class PromptBoxes:
    """Per batch, the ground-truth boxes whose crops stand in for their class texts (one per class and image)."""

    def __init__(self, min_side: float):
        self.min_side = min_side

    def __call__(self, bboxes_labels: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return sample_class_boxes(bboxes_labels, batch_size, self.min_side)


class ReferenceBank:
    """Per class, the mean raw CLIP embedding of crops of its training boxes (area >= min_side^2 original pixels)."""

    def __init__(self, sources: list[DatasetSource], classes: list[list[str]], encoder: ImagePromptEncoder,
                 min_side: float, per_class: int = 16):
        self.class_of_text = {text: index for index, synonyms in enumerate(classes) for text in synonyms}
        crops = _class_crops(sources, classes, encoder.image_size, min_side, per_class)
        device = encoder.img_mean.device
        self.raw = {index: F.normalize(encoder.embed_crops(torch.stack(rows[:per_class]).to(device)).mean(0), dim=-1)
                    for index, rows in crops.items()}
        missing = [classes[i][0] for i in range(len(classes)) if i not in self.raw]
        logger.info("image-prompt validation: classes prompted by the mean of up to %d training crops each%s",
                    per_class, f"; no crop for {', '.join(missing)} (they keep their texts)" if missing else "")

    def encoder(self, model, encode_text):
        """`encode(texts)` for the validator: texts of classes with crops get their image-prompt embedding from
        `model`'s projector, the rest (the padding prompt) their text embedding."""
        def encode(texts: list[str]) -> torch.Tensor:
            rows = encode_text(texts).clone()
            for position, text in enumerate(texts):
                index = self.class_of_text.get(text)
                if index in self.raw:
                    raw = self.raw[index].to(rows.device)[None]
                    rows[position] = model.image_prompt_encoder.project(raw)[0].to(rows.dtype)
            return rows
        return encode


def _class_crops(sources: list[DatasetSource], classes: list[list[str]], size: int, min_side: float,
                 per_class: int) -> dict[int, list[torch.Tensor]]:
    """Up to `per_class` crops per class, in record order (deterministic), from detection sources whose
    vocabulary is `classes`."""
    crops: dict[int, list[torch.Tensor]] = {}
    for source in sources:
        if source.class_texts != classes:
            continue
        for record in source.records:
            areas = (record.boxes[:, 2:] - record.boxes[:, :2]).prod(axis=1)
            wanted = [i for i, area in enumerate(areas.tolist())
                      if area >= min_side ** 2 and len(crops.get(int(record.labels[i]), [])) < per_class]
            image = load_image(record.file) if wanted else None
            if image is None:
                continue
            rgb = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float().div_(255)
            for i in wanted:
                crops.setdefault(int(record.labels[i]), []).append(crop_resized(rgb, record.boxes[i].tolist(), size))
            if len(crops) == len(classes) and all(len(v) >= per_class for v in crops.values()):
                return crops
    return crops


__all__ = ["image_prompt_parts", "PromptBoxes", "ReferenceBank"]
