"""A PNG grid of augmented training samples with their boxes and texts, to look at before training."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from yoloworld.errors import InputError

from .sample import Sample

PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
           (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
           (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203)]


def draw_sample(sample: Sample, tile: int) -> np.ndarray:
    """The sample's BGR image resized to `tile` pixels with each box and its text (non-ASCII shown as '?')."""
    scale = tile / max(sample.height, sample.width)
    image = cv2.resize(sample.image, (max(1, round(sample.width * scale)), max(1, round(sample.height * scale))))
    return fit_tile(_draw_boxes(image, sample, scale), tile)


def _draw_boxes(image: np.ndarray, sample: Sample, scale: float) -> np.ndarray:
    texts = sample.texts if sample.texts is not None else [t[0] for t in sample.class_texts]
    for box, label in zip(sample.boxes * scale, sample.labels.tolist()):
        colour = PALETTE[label % len(PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        text = texts[label].encode("ascii", "replace").decode()[:40]
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        y_text = max(y1, th + 4)
        cv2.rectangle(image, (x1, y_text - th - 4), (x1 + tw + 2, y_text), colour, -1)
        cv2.putText(image, text, (x1 + 1, y_text - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return image


def fit_tile(image: np.ndarray, tile: int) -> np.ndarray:
    """`image` scaled to fit a `tile` x `tile` square, on grey."""
    scale = tile / max(image.shape[:2])
    if scale != 1:
        size = (min(tile, max(1, round(image.shape[1] * scale))), min(tile, max(1, round(image.shape[0] * scale))))
        image = cv2.resize(image, size,
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.full((tile, tile, 3), 114, dtype=np.uint8)
    canvas[: image.shape[0], : image.shape[1]] = image
    return canvas


def write_grid(samples: list[Sample], path: str | Path, tile: int = 320) -> Path:
    """Augmented samples with their boxes in a near-square grid, written as PNG."""
    return write_tile_grid([draw_sample(sample, tile) for sample in samples], path, tile)


def write_tile_grid(tiles: list[np.ndarray], path: str | Path, tile: int) -> Path:
    """Images in a near-square grid of `tile` x `tile` cells, written as PNG."""
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    grid = np.full((rows * tile, columns * tile, 3), 255, dtype=np.uint8)
    for i, image in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = fit_tile(image, tile)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), grid):
        raise InputError(f"{path}: could not write the PNG (is the folder writable?)")
    return path
