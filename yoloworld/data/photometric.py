"""Pixel-only transforms (boxes untouched): random HSV gains and the rare blur / median / grey / CLAHE step."""

from __future__ import annotations

import cv2
import numpy as np

from .augment import AugmentConfig


def random_hsv(image: np.ndarray, gains: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Official YOLOv5HSVRandomAug: multiply H, S, V by 1 + U(-1, 1) * gain through lookup tables."""
    factors = rng.uniform(-1, 1, 3) * np.asarray(gains) + 1
    table = np.arange(256, dtype=np.float64)
    lut_hue = (table * factors[0]) % 180
    lut_sat = np.clip(table * factors[1], 0, 255)
    lut_val = np.clip(table * factors[2], 0, 255)
    lut = np.stack([lut_hue, lut_sat, lut_val], axis=1).astype(np.uint8).reshape(256, 1, 3)  # one table per channel
    return cv2.cvtColor(cv2.LUT(cv2.cvtColor(image, cv2.COLOR_BGR2HSV), lut), cv2.COLOR_HSV2BGR)


def _odd_kernel(rng: np.random.Generator) -> int:
    return int(rng.choice([3, 5, 7]))


def rare_pixel_transforms(image: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """The official Albumentations step: Blur, MedianBlur, ToGray, CLAHE, each with `probability` (0.01)."""
    if probability <= 0:
        return image
    if rng.random() < probability:
        k = _odd_kernel(rng)
        image = cv2.blur(image, (k, k))
    if rng.random() < probability:
        image = cv2.medianBlur(image, _odd_kernel(rng))
    if rng.random() < probability:
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < probability:
        lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
        clahe = cv2.createCLAHE(clipLimit=float(rng.uniform(1, 4)), tileGridSize=(8, 8))
        lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
        image = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    return image


def photometric(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    image = rare_pixel_transforms(image, config.rare_pixel_prob, rng)
    if any(config.hsv_gains):
        image = random_hsv(image, config.hsv_gains, rng)
    return image
