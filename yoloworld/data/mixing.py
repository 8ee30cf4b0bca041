"""Transforms that combine images: multimodal mosaic, mixup, copy-paste. Texts are merged and labels remapped."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np

from .augment import AugmentConfig
from .records import ClassTexts
from .sample import Sample

LOCATIONS = ("top_left", "top_right", "bottom_left", "bottom_right")


def merge_texts(samples: list[Sample]) -> ClassTexts:
    """Union of the samples' class texts (a class = its synonym list); each sample's labels are remapped into it.

    Samples of one detection dataset share one vocabulary object, which is kept as is (no remapping).
    """
    first = samples[0].class_texts
    if all(s.class_texts is first for s in samples):
        return first
    index: dict[tuple[str, ...], int] = {}
    merged: ClassTexts = []
    for sample in samples:
        remap = np.empty(len(sample.class_texts), dtype=np.int64)
        for label, synonyms in enumerate(sample.class_texts):
            key = tuple(synonyms)
            if key not in index:
                index[key] = len(merged)
                merged.append(synonyms)
            remap[label] = index[key]
        sample.labels = remap[sample.labels] if len(sample.labels) else sample.labels
        sample.class_texts = merged
    return merged


def _concat(samples: list[Sample], image: np.ndarray, texts: ClassTexts) -> Sample:
    with_masks = all(s.polygons is not None for s in samples)
    counts = Counter()
    for s in samples:
        counts.update(s.counts)
    return Sample(image=image, boxes=np.concatenate([s.boxes for s in samples]).astype(np.float32),
                  labels=np.concatenate([s.labels for s in samples]).astype(np.int64), class_texts=texts,
                  polygons=[p for s in samples for p in s.polygons] if with_masks else None,
                  ids=np.concatenate([s.ids for s in samples]).astype(np.int64), counts=counts)


def _placement(location: str, cx: int, cy: int, w: int, h: int, limit: int):
    """Paste (x1, y1, x2, y2) on the 2S canvas and crop of the resized image, official Mosaic geometry."""
    if location == "top_left":
        paste = max(cx - w, 0), max(cy - h, 0), cx, cy
        crop = w - (paste[2] - paste[0]), h - (paste[3] - paste[1]), w, h
    elif location == "top_right":
        paste = cx, max(cy - h, 0), min(cx + w, limit), cy
        crop = 0, h - (paste[3] - paste[1]), min(w, paste[2] - paste[0]), h
    elif location == "bottom_left":
        paste = max(cx - w, 0), cy, cx, min(limit, cy + h)
        crop = w - (paste[2] - paste[0]), 0, w, min(paste[3] - paste[1], h)
    else:
        paste = cx, cy, min(cx + w, limit), min(limit, cy + h)
        crop = 0, 0, min(w, paste[2] - paste[0]), min(paste[3] - paste[1], h)
    return paste, crop


def mosaic(samples: list[Sample], config: AugmentConfig, rng: np.random.Generator) -> Sample:
    """Four images around a random centre of a 2S x 2S canvas (pad 114); boxes clipped to the canvas."""
    size = config.image_size
    limit = 2 * size
    canvas = np.full((limit, limit, 3), config.pad_value, dtype=np.uint8)
    cx = int(rng.uniform(*config.mosaic_center) * size)
    cy = int(rng.uniform(*config.mosaic_center) * size)
    texts = merge_texts(samples)
    for sample, location in zip(samples, LOCATIONS):
        h, w = sample.height, sample.width
        ratio = min(size / h, size / w)
        new_w, new_h = max(1, int(w * ratio)), max(1, int(h * ratio))
        image = sample.image if (new_w, new_h) == (w, h) else cv2.resize(sample.image, (new_w, new_h),
                                                                          interpolation=cv2.INTER_LINEAR)
        (px1, py1, px2, py2), (cx1, cy1, cx2, cy2) = _placement(location, cx, cy, new_w, new_h, limit)
        canvas[py1:py2, px1:px2] = image[cy1:cy2, cx1:cx2]
        sample.map_points((ratio, ratio), (px1 - cx1, py1 - cy1))
    merged = _concat(samples, canvas, texts)
    merged.boxes = np.clip(merged.boxes, 0, limit)
    return merged


def mixup(first: Sample, second: Sample, config: AugmentConfig, rng: np.random.Generator) -> Sample:
    """Blend two same-size samples with ratio ~ Beta(32, 32); boxes of both are kept."""
    ratio = float(rng.beta(config.mixup_beta, config.mixup_beta))
    image = cv2.addWeighted(first.image, ratio, second.image, 1.0 - ratio, 0.0)
    texts = merge_texts([first, second])
    return _concat([first, second], image, texts)


def _ioa(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection of each a with each b, over the area of b: (len(a), len(b))."""
    low = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    high = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    inter = np.clip(high - low, 0, None).prod(axis=2)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).prod(axis=1)
    return inter / (area_b[None, :] + 1e-7)


def copy_paste(sample: Sample, config: AugmentConfig, rng: np.random.Generator) -> Sample:
    """Paste mirrored copies of a fraction of the instances that have polygons (official YOLOv5CopyPaste).

    A copy is only made where it would cover less than `copy_paste_ioa` of every existing box.
    """
    if sample.polygons is None or not len(sample.boxes) or config.copy_paste_prob <= 0:
        return sample
    width = sample.width
    flipped = np.stack([width - sample.boxes[:, 2], sample.boxes[:, 1], width - sample.boxes[:, 0],
                        sample.boxes[:, 3]], axis=1)
    has_polygon = np.array([len(p) > 0 for p in sample.polygons])
    candidates = np.flatnonzero((_ioa(flipped, sample.boxes) < config.copy_paste_ioa).all(axis=1) & has_polygon)
    chosen = rng.choice(candidates, size=round(config.copy_paste_prob * len(candidates)), replace=False)
    if not len(chosen):
        return sample
    flipped_polygons = [[np.stack([width - p[:, 0], p[:, 1]], axis=1) for p in sample.polygons[i]] for i in chosen]
    mask = np.zeros(sample.image.shape[:2], dtype=np.uint8)
    for polys in flipped_polygons:
        cv2.drawContours(mask, [p.reshape(-1, 1, 2).astype(np.int32) for p in polys], -1, 1, cv2.FILLED)
    region = mask.astype(bool)
    sample.image[region] = cv2.flip(sample.image, 1)[region]
    sample.boxes = np.concatenate([sample.boxes, flipped[chosen]]).astype(np.float32)
    sample.labels = np.concatenate([sample.labels, sample.labels[chosen]])
    sample.ids = np.concatenate([sample.ids, sample.ids[chosen]])
    sample.polygons = sample.polygons + flipped_polygons
    sample.counts["copy_paste"] += len(chosen)
    return sample
