"""Sliced inference for small objects (the idea of SAHI, Akyon et al. 2022): a large image is cut into overlapping
square tiles, each tile is run at the network's input size (so a 12-px object stays 12 px instead of shrinking
with the whole image), the tiles' boxes are moved back to the image and merged with one class-aware NMS, optionally
together with a pass over the whole image for the large objects.

Merging: an object cut by a tile's inner edge gives a partial box there; with the whole-image pass on, boxes that
touch an inner edge are dropped (the object is whole in a neighbouring tile, the overlap sees to that for objects
smaller than it, or in the whole-image pass), so NMS never has to choose between a partial and a whole box.

The tiles go through `Predictor.detect` in batches, so every runtime (PyTorch, ONNX Runtime, OpenVINO) slices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from yoloworld.errors import InputError
from yoloworld.postprocess import Detections

TILE_BATCH = 8  # tiles per forward pass
EDGE = 2.0  # pixels: a box this close to a tile's inner edge was cut by it


@dataclass(frozen=True)
class Slicing:
    """Tiles of `size` pixels overlapping by `overlap` of their side; `full`: also run the whole image."""

    size: int
    overlap: float = 0.2
    full: bool = True

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 32:
            raise InputError(f"slice {self.size!r}: must be a tile side of 32 pixels or more (e.g. 640)")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, float)) \
                or not math.isfinite(self.overlap) or not 0 <= self.overlap < 1:
            raise InputError(f"slice overlap {self.overlap!r}: must be in [0, 1) (e.g. 0.2)")


def tile_starts(length: int, size: int, overlap: float) -> list[int]:
    """Tile offsets along one side: a step of size x (1 - overlap), the last tile flush with the end."""
    if length <= size:
        return [0]
    step = max(1, int(size * (1 - overlap)))
    return list(range(0, length - size, step)) + [length - size]


def tile_windows(image_hw: tuple[int, int], slicing: Slicing) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of every tile of an image of `image_hw`."""
    height, width = image_hw
    return [(x, y, min(x + slicing.size, width), min(y + slicing.size, height))
            for y in tile_starts(height, slicing.size, slicing.overlap)
            for x in tile_starts(width, slicing.size, slicing.overlap)]


def detect_sliced(predictor, image: np.ndarray, vocabulary: tuple, settings, rect: bool, slicing: Slicing) -> Detections:
    """Detections of one BGR image in original pixels, from its tiles (and the whole image if `slicing.full`)."""
    from yoloworld.transforms import letterbox_batch

    windows = tile_windows(image.shape[:2], slicing)
    full = slicing.full and len(windows) > 1  # one tile is the whole image already
    crops = [image[y0:y1, x0:x1] for x0, y0, x1, y1 in windows] + ([image] if full else [])
    found: list[Detections] = []
    for start in range(0, len(crops), TILE_BATCH):
        chunk = crops[start:start + TILE_BATCH]
        batch, infos = letterbox_batch(chunk, predictor.imgsz, rect)
        found += predictor.detect(batch, infos, [vocabulary] * len(chunk), settings)
    if any(detections.masks is not None for detections in found):
        raise InputError("--slice: masks are not merged across tiles; leave out --slice for a segmentation model")
    return merge_tiles(found, windows, image.shape[:2], settings.iou, settings.max_det, full)


def merge_tiles(found: list[Detections], windows: list[tuple], image_hw: tuple[int, int], iou: float, max_det: int,
                full: bool) -> Detections:
    """Tile detections (tile pixels; the whole image's last when `full`) -> one set in image pixels."""
    from torchvision.ops import batched_nms

    height, width = image_hw
    boxes, scores, labels = [], [], []
    for detections, (x0, y0, x1, y1) in zip(found, windows):
        shifted = detections.boxes + detections.boxes.new_tensor([x0, y0, x0, y0])
        keep = ~_cut(shifted, (x0, y0, x1, y1), width, height) if full else torch.ones_like(detections.scores, dtype=bool)
        boxes.append(shifted[keep])
        scores.append(detections.scores[keep])
        labels.append(detections.labels[keep])
    if full:
        boxes.append(found[-1].boxes)
        scores.append(found[-1].scores)
        labels.append(found[-1].labels)
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    kept = batched_nms(boxes.float(), scores.float(), labels, iou)[:max_det]
    return Detections(boxes[kept], scores[kept], labels[kept])


def _cut(boxes: torch.Tensor, window: tuple, width: int, height: int) -> torch.Tensor:
    """Boxes touching an edge of `window` that lies inside the image (not the image's own border)."""
    x0, y0, x1, y1 = window
    return (((boxes[:, 0] <= x0 + EDGE) & (x0 > 0)) | ((boxes[:, 1] <= y0 + EDGE) & (y0 > 0))
            | ((boxes[:, 2] >= x1 - EDGE) & (x1 < width)) | ((boxes[:, 3] >= y1 - EDGE) & (y1 < height)))


__all__ = ["Slicing", "detect_sliced", "merge_tiles", "tile_windows"]
