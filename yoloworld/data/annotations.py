"""Parsing shared by every COCO-style file (COCO, Objects365, LVIS, MDETR grounding, CC3M pseudo-labels).

Box rules follow the official readers: crowd/ignored boxes are not training targets, boxes under 1 pixel
are dropped. Beyond them we clip boxes that leave the image and count every drop, instead of silently
keeping or losing boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yoloworld.errors import DatasetError
from yoloworld.images import image_size
from yoloworld.readers import read_json

from .problems import ProblemLog

OUT_OF_BOUNDS_TOLERANCE = 1.0  # pixels; COCO has many boxes ending at 640.01 from rounding, not worth a report
MIN_BOX_SIDE = 1.0  # official: boxes with w < 1 or h < 1 are skipped
MAX_SIDE = 1 << 20  # an image width or height beyond a million pixels is a typo, not a photo


@dataclass
class ImageEntry:
    file: str
    width: int
    height: int
    image_id: int | str
    info: dict  # the raw JSON object (caption, LVIS neg_category_ids, ...)


@dataclass
class BoxTable:
    """Boxes collected from the annotations list before they are grouped per image."""

    image_index: list[int] = field(default_factory=list)
    xywh: list[list[float]] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    polygons: list[list[np.ndarray]] = field(default_factory=list)
    where: list[str] = field(default_factory=list)


def is_id(value) -> bool:
    """An id JSON can hold, a dict can key and COCO tools can store: an integer of at most 64 bits or a string (not
    a list, a float or a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return False
    return isinstance(value, str) or -(1 << 63) <= value < (1 << 63)


def read_coco_json(path: str | Path) -> dict:
    """Read a COCO-style annotation file; a wrong top-level shape is fatal."""
    data = read_json(path, "annotation file")
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories', "
                           f"got a {type(data).__name__}")
    missing = [key for key in ("images", "annotations") if not isinstance(data.get(key), list)]
    if missing:
        raise DatasetError(f"{path}: not a COCO-style annotation file (missing or non-list "
                           f"{', '.join(map(repr, missing))})")
    return data


def read_image_entries(data: dict, name: str, images_dir: Path, problems: ProblemLog) -> tuple[list[ImageEntry], dict]:
    """The `images` list as entries plus an id -> index map; a missing size is read from the file header."""
    entries, index_of = [], {}
    for position, info in enumerate(data["images"]):
        file = _file_name(info) if isinstance(info, dict) else None
        if file is None or not is_id(info.get("id")):
            raise DatasetError(f"{name}: images[{position}] needs an 'id' (a string or an integer of at most 64 "
                               "bits) and a 'file_name' string")
        width, height = info.get("width"), info.get("height")
        if not _pixel_size(width) or not _pixel_size(height):
            if any(value not in (None, 0) and not _pixel_size(value) for value in (width, height)):  # 0: unknown
                problems.add("bad_size", name, f"images[{position}] has width {str(width)[:24]}, height "
                             f"{str(height)[:24]}: not a pixel size up to {MAX_SIDE}; the image's own size is used")
            size = image_size(images_dir / file)
            if size is None:
                problems.add("missing_image", str(images_dir / file),
                             "no width/height in the annotation and the image cannot be read; image skipped")
                continue
            width, height = size
        if info["id"] in index_of:
            problems.add("duplicate_image_id", name, f"images[{position}] repeats image id {info['id']!r}; "
                         "its annotations go to the first image with that id")
            continue
        index_of[info["id"]] = len(entries)
        entries.append(ImageEntry(file, int(width), int(height), info["id"], info))
    return entries, index_of


def annotation_objects(data: dict, name: str, index_of: dict, problems: ProblemLog):
    """Yield (position, annotation, image index) for well-formed annotations on known images, skipping crowds."""
    for position, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            problems.add("bad_box", name, f"annotations[{position}] is not an object")
            continue
        if ann.get("iscrowd", 0) or ann.get("ignore", False):
            continue  # official readers mark these ignored: never a training target
        image_index = index_of.get(ann.get("image_id")) if is_id(ann.get("image_id")) else None
        if image_index is None:
            problems.add("unknown_image", name, f"annotation {ann.get('id', position)} refers to image id "
                         f"{ann.get('image_id')!r}, which is not in 'images'")
            continue
        yield position, ann, image_index


def finite_float(value) -> bool:
    """A JSON number that is a finite float: not a bool, NaN, infinity or an integer beyond float range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer literal too large for a float (10**400)
        return False


def valid_xywh(ann: dict, position: int, name: str, problems: ProblemLog) -> list[float] | None:
    bbox = ann.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(finite_float(v) for v in bbox):
        problems.add("bad_box", name, f"annotation {ann.get('id', position)}: bbox {str(bbox)[:60]} is not 4 "
                     "finite numbers [x, y, w, h]")
        return None
    return [float(v) for v in bbox]


def polygons_of(ann: dict) -> list[np.ndarray]:
    """COCO segmentation -> list of (k, 2) arrays: polygons as they are, RLE traced to its outer contours
    (so it moves with the augmentations like polygons); a missing or malformed mask gives []."""
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, dict):
        return rle_polygons(segmentation)
    if not isinstance(segmentation, list):
        return []
    polygons = []
    for poly in segmentation:
        if isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0:
            polygons.append(np.asarray(poly, dtype=np.float32).reshape(-1, 2))
    return polygons


def rle_polygons(rle: dict) -> list[np.ndarray]:
    """A COCO RLE mask (compressed or counts list) -> the polygons of its outer contours (pixel corners)."""
    import cv2
    from faster_coco_eval.core import mask as mask_utils

    try:
        height, width = (int(v) for v in rle["size"])
        if isinstance(rle.get("counts"), list):
            rle = mask_utils.frPyObjects(rle, height, width)
        mask = np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)
    except (KeyError, TypeError, ValueError):
        return []
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(np.float32) for c in contours if len(c) >= 3]


def clean_boxes(xywh: np.ndarray, sizes: np.ndarray, where: list[str], problems: ProblemLog) -> tuple[np.ndarray, np.ndarray]:
    """xywh (n, 4) and image (w, h) per box -> clipped xyxy boxes and a keep mask; drops and clips are counted."""
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    limits = np.concatenate([sizes, sizes], axis=1)
    clipped = np.clip(xyxy, 0.0, limits)
    too_small = (xywh[:, 2] < MIN_BOX_SIDE) | (xywh[:, 3] < MIN_BOX_SIDE)
    empty_inside = ((clipped[:, 2] - clipped[:, 0]) < MIN_BOX_SIDE) | ((clipped[:, 3] - clipped[:, 1]) < MIN_BOX_SIDE)
    keep = ~(too_small | empty_inside)
    outside = keep & (np.abs(clipped - xyxy).max(axis=1) > OUT_OF_BOUNDS_TOLERANCE)
    for i in np.flatnonzero(~keep):
        reason = (f"box {_fmt(xywh[i])} is under {MIN_BOX_SIDE:g} pixel wide or high" if too_small[i]
                  else f"box {_fmt(xywh[i])} lies outside the {int(sizes[i, 0])}x{int(sizes[i, 1])} image")
        problems.add("degenerate_box", where[i], reason + "; dropped")
    for i in np.flatnonzero(outside):
        problems.add("box_out_of_bounds", where[i], f"box {_fmt(xywh[i])} extends outside the "
                     f"{int(sizes[i, 0])}x{int(sizes[i, 1])} image; clipped")
    return clipped, keep


def group_boxes(table: BoxTable, entries: list[ImageEntry], problems: ProblemLog, with_masks: bool,
                dtype=np.float32):
    """Per image index: (boxes xyxy, labels, polygons or None), after cleaning."""
    count = len(entries)
    if not table.label:
        empty = (np.zeros((0, 4), dtype), np.zeros(0, np.int64), [] if with_masks else None)
        return [empty] * count
    image_index = np.asarray(table.image_index, dtype=np.int64)
    sizes = np.asarray([[entries[i].width, entries[i].height] for i in table.image_index], dtype=np.float64)
    boxes, keep = clean_boxes(np.asarray(table.xywh, dtype=np.float64), sizes, table.where, problems)
    boxes = boxes.astype(dtype)
    labels = np.asarray(table.label, dtype=np.int64)
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(image_index[kept], kind="stable")]
    bounds = np.searchsorted(image_index[kept], np.arange(count + 1))
    grouped = []
    for i in range(count):
        rows = kept[bounds[i]:bounds[i + 1]]
        polygons = [table.polygons[r] for r in rows] if with_masks else None
        grouped.append((boxes[rows], labels[rows], polygons))
    return grouped


def _file_name(info: dict) -> str | None:
    """`file_name`, or for LVIS v1 (which has none) the tail of `coco_url`: 'val2017/000000397133.jpg'."""
    if isinstance(info.get("file_name"), str):
        return info["file_name"]
    if isinstance(info.get("coco_url"), str):
        return "/".join(info["coco_url"].split("/")[-2:])
    return None


def _pixel_size(value) -> bool:
    return finite_float(value) and 0 < value <= MAX_SIDE


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
