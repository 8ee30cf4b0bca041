"""Reading images: files (full decode, header-only sizes, truncated JPEGs), in-memory inputs, and prediction
sources (files, folders, videos). Training, checks and prediction all read images here."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from yoloworld.errors import InputError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


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


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 (H, W, 3); InputError naming the file when it is missing or not a decodable image."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if truncated_jpeg(path):
        logger.warning("warning: %s: truncated JPEG (the file is cut short): its missing part is grey, objects "
                       "there are not detected; re-download it", path)
    image = load_image(path)
    if image is None:
        raise InputError(f"{path}: not a readable image (corrupt or unsupported format)")
    return image


def as_bgr(image) -> np.ndarray:
    """Path / BGR numpy array (OpenCV convention) / PIL image -> BGR uint8 (H, W, 3)."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image is RGB
        return pil_to_bgr(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.ndim == 3 and image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if image.ndim == 3 and image.shape[2] == 3:
            return np.ascontiguousarray(image.astype(np.uint8, copy=False))
    raise InputError(f"unsupported image input of type {type(image).__name__}: give a path, a BGR array or a PIL image")


def pil_to_bgr(image) -> np.ndarray:
    """A PIL image upright, as BGR: its EXIF orientation applied, as cv2.imread applies it to a file, so one photo
    gives the same pixels (and boxes in the same frame) given as a path or as `Image.open(path)`."""
    try:
        upright = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError):  # unreadable EXIF: the pixels as stored (what cv2 does too)
        upright = image
    return cv2.cvtColor(np.asarray(upright.convert("RGB")), cv2.COLOR_RGB2BGR)


def expand_sources(sources: list[str]) -> list[Path]:
    """Files and folders (their images, sorted) in order; a missing path is an error."""
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))
            if not found:
                raise InputError(f"{path}: folder has no images or videos")
            paths.extend(found)
        elif path.exists():
            paths.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return paths


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def video_frames(path: Path):
    """Yield (index, BGR frame); InputError if the video cannot be opened."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"{path}: cannot open video")
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield index, frame
            index += 1
    finally:
        capture.release()


# .mp4 for players and editors; .webm (VP8) where a browser plays it, as OpenCV's wheels carry no H.264 encoder
FOURCC = {".mp4": "mp4v", ".webm": "VP80"}


def video_writer(path: Path, fps: float, frame_shape: tuple) -> cv2.VideoWriter:
    height, width = frame_shape[:2]
    return cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[Path(path).suffix.lower()]), fps, (width, height))


def video_info(path: Path) -> tuple[float, int]:
    capture = cv2.VideoCapture(str(path))
    fps, count = capture.get(cv2.CAP_PROP_FPS) or 25.0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return fps, count
