"""Augmentation hyper-parameters, with the official YOLO-World / YOLOv8 values as defaults."""

from __future__ import annotations

from dataclasses import dataclass

from yoloworld.errors import ConfigError


@dataclass
class AugmentConfig:
    image_size: int = 640
    mosaic_prob: float = 1.0
    mosaic_center: tuple[float, float] = (0.5, 1.5)  # mosaic centre, as a fraction of image_size
    affine_scale: float = 0.5  # scale drawn from 1 -/+ this: 0.5 for S, 0.9 for M/L/X
    translate: float = 0.1  # fraction of the output size
    rotate_degrees: float = 0.0  # official recipes use no rotation or shear
    shear_degrees: float = 0.0
    border: int | None = None  # affine output = input + 2 * border after mosaic; None: -image_size // 2 (-320)
    min_box_size: float = 2.0  # boxes narrower/lower than this after the affine are dropped
    min_area_ratio: float = 0.1  # ... or keeping less than this fraction of their area
    max_aspect_ratio: float = 100.0  # ... or longer than this ratio
    mixup_prob: float = 0.0  # fine-tuning: 0.15 (S/L/X), 0.1 (M)
    mixup_beta: float = 32.0  # mix ratio ~ Beta(32, 32)
    copy_paste_prob: float = 0.0  # fine-tuning with masks: 0.3 (S/L/X), 0.1 (M)
    copy_paste_ioa: float = 0.3  # a flipped copy may cover at most this much of an existing box
    hsv_gains: tuple[float, float, float] = (0.015, 0.7, 0.4)  # hue, saturation, value
    flip_prob: float = 0.5
    rare_pixel_prob: float = 0.01  # each of blur, median blur, grey, CLAHE (official albu step)
    close_mosaic_epochs: int = 2  # last epochs without mosaic: 2 pretraining, 10 fine-tuning
    pad_value: int = 114

    def __post_init__(self):
        for name in ("mosaic_prob", "mixup_prob", "copy_paste_prob", "flip_prob", "rare_pixel_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"augment.{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.affine_scale < 1.0:
            raise ConfigError(f"augment.affine_scale must be in [0, 1), got {self.affine_scale}")
        if self.image_size < 32 or self.image_size % 32:
            raise ConfigError(f"augment.image_size must be a multiple of 32, got {self.image_size}")

    @property
    def mosaic_border(self) -> int:
        return -(self.image_size // 2) if self.border is None else self.border
