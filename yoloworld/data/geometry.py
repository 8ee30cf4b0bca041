"""Geometric transforms that move boxes (and polygons) with the pixels: letterbox, random affine, flip."""

from __future__ import annotations

import math

import cv2
import numpy as np

from yoloworld.transforms import letterbox

from .augment import AugmentConfig
from .sample import Sample


def letterbox_sample(sample: Sample, size: int, allow_scale_up: bool = True) -> Sample:
    """THE letterbox (keep-ratio resize + centred 114 padding) applied to a sample.

    Training's no-mosaic stage enlarges small images (official LetterResize(allow_scale_up=True));
    test-time loading does not.
    """
    sample.image, info = letterbox(sample.image, size, allow_scale_up=allow_scale_up)
    top, _, left, _ = info.pad_tblr
    sample.map_points(info.scale_xy, (left, top))
    return sample


def affine_matrix(in_w: int, in_h: int, out_w: int, out_h: int, config: AugmentConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Official YOLOv5RandomAffine matrix: centre the input, rotate, scale, shear, translate to the output."""
    center = np.array([[1, 0, -in_w / 2], [0, 1, -in_h / 2], [0, 0, 1]], dtype=np.float64)
    angle = math.radians(rng.uniform(-config.rotate_degrees, config.rotate_degrees))
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    scale = rng.uniform(1 - config.affine_scale, 1 + config.affine_scale)
    scaling = np.diag([scale, scale, 1.0])
    shear_x, shear_y = (math.tan(math.radians(rng.uniform(-config.shear_degrees, config.shear_degrees)))
                        for _ in range(2))
    shear = np.array([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]])
    tx = rng.uniform(0.5 - config.translate, 0.5 + config.translate) * out_w
    ty = rng.uniform(0.5 - config.translate, 0.5 + config.translate) * out_h
    translation = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    return translation @ shear @ rotation @ scaling @ center, scale


def project_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Boxes through an affine map: the extent of their four projected corners (exact without rotation/shear)."""
    if not len(boxes):
        return boxes
    x1, y1, x2, y2 = boxes.T.astype(np.float64)
    corners = np.stack([np.stack([x1, y1]), np.stack([x2, y1]), np.stack([x1, y2]), np.stack([x2, y2])])  # 4,2,n
    projected = np.einsum("ij,cjn->cin", matrix[:2, :2], corners) + matrix[:2, 2:3]
    return np.concatenate([projected.min(axis=0).T, projected.max(axis=0).T], axis=1).astype(np.float32)


def random_affine(sample: Sample, config: AugmentConfig, border: int, rng: np.random.Generator) -> Sample:
    """Warp once to (input + 2 * border); clip boxes and drop those the official filter rejects."""
    out_w, out_h = sample.width + 2 * border, sample.height + 2 * border
    matrix, scale = affine_matrix(sample.width, sample.height, out_w, out_h, config, rng)
    sample.image = cv2.warpAffine(sample.image, matrix[:2], (out_w, out_h), flags=cv2.INTER_LINEAR,
                                  borderValue=(config.pad_value,) * 3)
    if not len(sample.boxes):
        return sample
    original = sample.boxes
    sample.boxes = np.clip(project_boxes(original, matrix), 0, np.float32([out_w, out_h, out_w, out_h]))
    if sample.polygons is not None:
        sample.polygons = [[(p @ matrix[:2, :2].T.astype(np.float32) + matrix[:2, 2].astype(np.float32))
                            for p in polys] for polys in sample.polygons]
    sample.keep(_valid_after_affine(original * scale, sample.boxes, config), "affine_filter")
    return sample


def _valid_after_affine(before: np.ndarray, after: np.ndarray, config: AugmentConfig) -> np.ndarray:
    """Official filter: big enough, kept enough of its (scaled) area, not too elongated."""
    w0, h0 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w, h = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w / (h + 1e-16), h / (w + 1e-16))
    return ((w > config.min_box_size) & (h > config.min_box_size)
            & (w * h / (w0 * h0 + 1e-16) > config.min_area_ratio) & (aspect < config.max_aspect_ratio))


def horizontal_flip(sample: Sample) -> Sample:
    width = sample.width
    sample.image = cv2.flip(sample.image, 1)
    sample.boxes = np.stack([width - sample.boxes[:, 2], sample.boxes[:, 1], width - sample.boxes[:, 0],
                             sample.boxes[:, 3]], axis=1).astype(np.float32)
    if sample.polygons is not None:
        sample.polygons = [[np.stack([width - p[:, 0], p[:, 1]], axis=1) for p in polys] for polys in sample.polygons]
    return sample
