"""The untrusted parts of a `/v1/detect` request: the uploaded image and the form fields.

Every check raises `RequestError` naming the field and the problem, with the HTTP status to answer (4xx): a client
mistake never reaches the model as an exception (which would answer 5xx). Classes are texts only: a client cannot
name server files (reference images, embeddings) or addresses to fetch.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from yoloworld.cli.common import iou_threshold, positive_int, probability
from yoloworld.errors import InputError

MAX_PIXELS = 50_000_000  # 50 MP (an 8K x 6K photo): a decoded upload claims at most ~150 MB
MAX_FIELD_CHARS = 10_000  # the longest `classes` text accepted
MAX_CLASSES = 1_000  # more than LVIS' 1203 synonyms groups would be unusual; bounds the text encoder's work
DEFAULTS = {"conf": None, "iou": 0.7, "max_det": 300}  # as `yoloworld predict` (conf None: calibrated, else 0.05)


class RequestError(InputError):
    """A client mistake: answered with `status` and {"error": message}."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DetectOptions:
    """What a request asks for besides its image. Requests with equal options share one forward pass."""

    classes: tuple | None  # ((synonym, ...), ...) or None: the server's vocabulary
    conf: float | None = DEFAULTS["conf"]  # None: the model's calibrated thresholds, else 0.05
    iou: float = DEFAULTS["iou"]
    max_det: int = DEFAULTS["max_det"]

    def class_lists(self) -> list[list[str]] | None:
        return None if self.classes is None else [list(group) for group in self.classes]


def decode_image(data: bytes) -> np.ndarray:
    """The upload as BGR uint8, as `yoloworld predict` reads the same file (cv2, EXIF orientation applied). The size
    is read from the header first, so a small file that claims a huge canvas is refused before it is decoded."""
    if not data:
        raise RequestError("image: the uploaded file is empty")
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        raise RequestError("image: not a readable image (JPEG, PNG, BMP, WebP or TIFF expected)", 415) from None
    if width * height > MAX_PIXELS:
        raise RequestError(f"image: {width}x{height} pixels is over the limit of {MAX_PIXELS // 1_000_000} MP", 413)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise RequestError("image: not a readable image (corrupt or unsupported format)", 415)
    return image


def detect_options(fields: dict[str, str]) -> DetectOptions:
    """`classes`, `conf`, `iou`, `max_det` from form fields (absent: the server's vocabulary, predict's defaults),
    checked as the same CLI flags are."""
    unknown = sorted(set(fields) - {"classes", *DEFAULTS})
    if unknown:
        raise RequestError(f"{unknown[0]}: unknown field (expected image, classes, conf, iou, max_det)")
    numbers = {name: _number(fields, name, parse) for name, parse in
               (("conf", probability), ("iou", iou_threshold), ("max_det", positive_int))}
    return DetectOptions(_classes(fields.get("classes")), **numbers)


def _number(fields: dict[str, str], name: str, parse):
    if name not in fields:
        return DEFAULTS[name]
    try:
        return parse(fields[name][:100].strip())
    except argparse.ArgumentTypeError as exc:
        raise RequestError(f"{name}: {exc}", 422) from None


def _classes(text: str | None) -> tuple | None:
    from yoloworld.vocabulary import parse_class_string

    if text is None:
        return None
    if len(text) > MAX_FIELD_CHARS:
        raise RequestError(f"classes: {len(text)} characters is over the limit of {MAX_FIELD_CHARS}", 413)
    if not text.strip():
        raise RequestError("classes: empty; give class names (\"person,car|automobile\") or leave the field out", 422)
    try:
        classes = parse_class_string(text, "classes")
    except InputError as exc:
        raise RequestError(str(exc), 422) from None
    if any(not isinstance(name, str) for group in classes for name in group):
        raise RequestError("classes: only class names (texts) are accepted", 422)
    if len(classes) > MAX_CLASSES:
        raise RequestError(f"classes: {len(classes)} classes is over the limit of {MAX_CLASSES}", 413)
    return tuple(tuple(group) for group in classes)
