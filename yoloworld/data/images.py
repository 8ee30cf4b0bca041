"""Reading image files: full decode for training (cv2, BGR), header-only sizes for readers, truncated JPEGs."""

from __future__ import annotations

import os
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


def truncated_jpeg(path: str | Path) -> bool:
    """A JPEG cut short (an interrupted download or copy). cv2 decodes it without an error, the missing part grey,
    and only libjpeg prints "Premature end of JPEG file", without the file's name."""
    try:
        with open(path, "rb") as handle:
            if handle.read(2) != b"\xff\xd8":
                return False  # not a JPEG
            handle.seek(-2, os.SEEK_END)
            if handle.read(2) == b"\xff\xd9":
                return False  # ends with the end-of-image marker: the usual complete file, no decode needed
    except OSError:
        return False
    try:  # some cameras append bytes after the end marker: a full decode settles it (rare, so the cost is fine)
        with Image.open(path) as image:
            image.load()
    except OSError as exc:
        return "truncated" in str(exc)  # Pillow: "image file is truncated (N bytes not processed)"
    return False


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
