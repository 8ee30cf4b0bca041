"""Instance masks for training: polygons rasterised at 1/4 of the image, as the official `Polygon2Mask`
(mmyolo transforms.py:1799-1834, downsample_ratio=4, mask_overlap=False)."""

from __future__ import annotations

import cv2
import numpy as np

from .records import Polygons

DOWNSAMPLE = 4  # the prototype stride: masks are compared with prototypes at 1/4 of the input


def polygon_mask(polygons: Polygons, height: int, width: int, downsample: int = DOWNSAMPLE) -> np.ndarray:
    """One instance's polygons -> (height // downsample, width // downsample) uint8 mask in {0, 1}.

    As official: points truncated toward zero (astype int32), one cv2.fillPoly of all the instance's polygons at
    full size, then a bilinear resize of the uint8 mask (mmcv.imresize), which rounds values to {0, 1}."""
    mask = np.zeros((height, width), dtype=np.uint8)
    if polygons:
        cv2.fillPoly(mask, [np.asarray(p, dtype=np.float32).reshape(-1, 2).astype(np.int32) for p in polygons], 1)
    return cv2.resize(mask, (width // downsample, height // downsample), interpolation=cv2.INTER_LINEAR)


def instance_masks(polygons: list[Polygons], height: int, width: int, downsample: int = DOWNSAMPLE) -> np.ndarray:
    """(n, height // downsample, width // downsample) uint8, one mask per instance (empty for no polygon)."""
    masks = [polygon_mask(p, height, width, downsample) for p in polygons]
    return np.stack(masks) if masks else np.zeros((0, height // downsample, width // downsample), np.uint8)


__all__ = ["DOWNSAMPLE", "polygon_mask", "instance_masks"]
