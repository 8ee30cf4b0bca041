"""Reading image files: full decode for training (cv2, BGR) and header-only sizes for readers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def load_image(path: str | Path) -> np.ndarray | None:
    """Decode an image as 3-channel BGR uint8 (EXIF orientation applied); None if missing or corrupt."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None
    return image


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) as cv2 will decode it (EXIF rotation applied), reading only the header; None if unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    if orientation in ROTATED_ORIENTATIONS:
        width, height = height, width
    return width, height


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
