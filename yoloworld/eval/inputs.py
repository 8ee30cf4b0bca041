"""Reading and checking annotation files and COCO results lists before they reach the evaluator.

Every problem a user can cause becomes a one-line DatasetError naming the file, the problem and the fix;
the evaluator itself only ever sees inputs that are known to be well formed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yoloworld.data.class_texts import check_synonyms
from yoloworld.errors import ConfigError, DatasetError
from yoloworld.readers import read_json

LVIS_IMAGE_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")
LVIS_FREQUENCIES = ("r", "c", "f")
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass
class Annotations:
    """A checked COCO/LVIS detection annotation set."""

    dataset: dict  # a private copy: the evaluator adds bookkeeping keys to it
    kind: str  # 'coco' or 'lvis'
    source: str  # file name (or '<dict>') for error messages

    @property
    def categories(self) -> list[dict]:
        return self.dataset["categories"]

    @property
    def image_ids(self) -> set[int]:
        return {image["id"] for image in self.dataset["images"]}

    @property
    def category_ids(self) -> set[int]:
        return {category["id"] for category in self.categories}


@dataclass
class PredictionSet:
    """A checked COCO results list plus its fields as arrays (for fast top-k selection)."""

    records: list[dict]
    image_ids: np.ndarray
    category_ids: np.ndarray
    scores: np.ndarray

    def subset(self, keep: np.ndarray) -> PredictionSet:
        """The detections at the sorted integer indices `keep`, original order preserved."""
        return PredictionSet(
            [self.records[i] for i in keep.tolist()], self.image_ids[keep], self.category_ids[keep], self.scores[keep]
        )


def load_annotations(source: str | Path | dict | Annotations, kind: str = "auto") -> Annotations:
    """Load and check a COCO or LVIS detection annotation file (or an already parsed dict).

    kind 'auto' detects LVIS from its category frequencies; 'coco' on an LVIS file scores it with plain
    COCO rules (no federated filtering); 'lvis' on a COCO file is an error.
    """
    if kind not in ("auto", "coco", "lvis"):
        raise ConfigError(f"unknown annotation kind {kind!r}; use 'auto', 'coco' or 'lvis'")
    if isinstance(source, Annotations):
        return Annotations(source.dataset, _resolve_kind(source.kind, kind, source.source), source.source)
    if isinstance(source, dict):
        name, data = "<annotation dict>", source
    else:
        name, data = str(source), read_json(source, "annotation file")
    dataset = _check_annotation_structure(data, name)
    detected = _detect_kind(dataset, name)
    if detected == "lvis":
        _add_lvis_image_defaults(dataset)
    return Annotations(dataset, _resolve_kind(detected, kind, name), name)


def _resolve_kind(detected: str, requested: str, name: str) -> str:
    if requested == "lvis" and detected != "lvis":
        raise DatasetError(
            f"{name}: not an LVIS annotation file (categories lack 'frequency'); use kind 'coco' or pass an LVIS file"
        )
    return detected if requested == "auto" else requested


def _check_annotation_structure(data: object, name: str) -> dict:
    if isinstance(data, list):
        raise DatasetError(
            f"{name}: is a JSON list (a COCO results/predictions file?); expected a COCO detection annotation "
            "file with 'images', 'annotations' and 'categories'"
        )
    if not isinstance(data, dict):
        raise DatasetError(f"{name}: expected a JSON object with 'images', 'annotations' and 'categories'")
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        raise DatasetError(
            f"{name}: not a COCO detection annotation file (missing or non-list {', '.join(map(repr, missing))})"
        )
    images = [dict(image) for image in _records(data["images"], name, "images", ("id",))]
    categories = [dict(cat) for cat in _records(data["categories"], name, "categories", ("id", "name"))]
    for position, category in enumerate(categories):
        check_synonyms(category, position, name)
    raw_annotations = _records(data["annotations"], name, "annotations", ("id", "image_id", "category_id"))
    annotations = [_checked_annotation(ann, index, name) for index, ann in enumerate(raw_annotations)]
    if not images or not categories:
        raise DatasetError(f"{name}: has no {'images' if not images else 'categories'}; nothing to evaluate")
    _check_references(images, categories, annotations, name)
    return {"images": images, "annotations": annotations, "categories": categories}


def _records(items: list, name: str, section: str, required: tuple[str, ...]) -> list[dict]:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DatasetError(f"{name}: {section}[{index}] is not an object")
        for key in required:
            if key not in item:
                raise DatasetError(f"{name}: {section}[{index}] has no {key!r}")
            if key != "name" and not _is_int(item[key]):
                raise DatasetError(f"{name}: {section}[{index}] has a non-integer or out-of-range (beyond 64 bits) "
                                   f"{key!r} ({str(item[key])[:40]})")
    return items


def _checked_annotation(ann: dict, index: int, name: str) -> dict:
    bbox = ann.get("bbox")
    if bbox is None:
        raise DatasetError(
            f"{name}: annotations[{index}] has no 'bbox'; not a detection annotation file (captions or keypoints?)"
        )
    if not _is_box(bbox):
        raise DatasetError(f"{name}: annotations[{index}] has a malformed bbox {bbox!r}; expected [x, y, w, h]")
    ann = dict(ann)
    # pycocotools needs 'area'; files written by hand often omit it, and the box area is the COCO convention
    ann.setdefault("area", float(bbox[2]) * float(bbox[3]))
    return ann


def _check_references(images: list[dict], categories: list[dict], annotations: list[dict], name: str) -> None:
    image_ids = {image["id"] for image in images}
    category_ids = {cat["id"] for cat in categories}
    if len(image_ids) != len(images) or len(category_ids) != len(categories):
        raise DatasetError(f"{name}: duplicate image or category ids")
    for index, ann in enumerate(annotations):
        if ann["image_id"] not in image_ids:
            raise DatasetError(f"{name}: annotations[{index}] refers to image id {ann['image_id']} not in 'images'")
        if ann["category_id"] not in category_ids:
            raise DatasetError(
                f"{name}: annotations[{index}] refers to category id {ann['category_id']} not in 'categories'"
            )
    if len({ann["id"] for ann in annotations}) != len(annotations):
        raise DatasetError(f"{name}: duplicate annotation ids")


def _detect_kind(dataset: dict, name: str) -> str:
    """LVIS categories carry a frequency group; LVIS images carry federated-labelling lists."""
    with_frequency = [cat.get("frequency") in LVIS_FREQUENCIES for cat in dataset["categories"]]
    federated_images = any(key in image for image in dataset["images"] for key in LVIS_IMAGE_KEYS)
    if all(with_frequency):
        return "lvis"
    if any(with_frequency) or federated_images:
        bad = next(cat for cat, ok in zip(dataset["categories"], with_frequency) if not ok)
        raise DatasetError(
            f"{name}: looks like LVIS but category {bad['id']} has no frequency 'r', 'c' or 'f'; "
            "every LVIS category needs one"
        )
    return "coco"


def _add_lvis_image_defaults(dataset: dict) -> None:
    for image in dataset["images"]:
        for key in LVIS_IMAGE_KEYS:
            image.setdefault(key, [])


def load_predictions(source: str | Path | list, name: str | None = None) -> tuple[list, str]:
    """Read a COCO results file (a JSON list); returns the list and a name for messages."""
    if isinstance(source, list):
        return source, name or "<predictions>"
    data = read_json(source, "predictions file")
    if isinstance(data, dict):
        hint = " (this is an annotation file; pass it to --ann)" if "annotations" in data else ""
        raise DatasetError(f"{source}: expected a COCO results list of detections, got a JSON object{hint}")
    if not isinstance(data, list):
        raise DatasetError(f"{source}: expected a COCO results list of detections")
    return data, str(source)


def check_predictions(predictions: list, annotations: Annotations, name: str) -> PredictionSet:
    """Check fields, ids and boxes of a COCO results list against the annotation set."""
    arrays = _as_arrays(predictions) if _field_types_ok(predictions) else None
    if arrays is None:
        _raise_first_malformed(predictions, name)
    image_ids, category_ids, scores = arrays
    _check_known(image_ids, annotations.image_ids, name, "image", annotations.source)
    _check_known(category_ids, annotations.category_ids, name, "category", annotations.source)
    return PredictionSet(predictions, image_ids, category_ids, scores)


def _field_types_ok(predictions: list) -> bool:
    """Fast whole-list check (sets of types, no per-item branching); details come from the slow path."""
    try:
        id_types = {type(p["image_id"]) for p in predictions} | {type(p["category_id"]) for p in predictions}
        number_types = {type(p["score"]) for p in predictions} | {type(v) for p in predictions for v in p["bbox"]}
        box_lengths = {len(p["bbox"]) for p in predictions}
    except (KeyError, TypeError):
        return False
    ids_ok = all(issubclass(t, (int, np.integer)) and t is not bool for t in id_types)
    numbers_ok = all(issubclass(t, (int, float, np.number)) and t is not bool for t in number_types)
    return ids_ok and numbers_ok and box_lengths <= {4}


def _as_arrays(predictions: list) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(image ids, category ids, scores), or None when a score or box is non-finite or has negative size."""
    count = len(predictions)
    try:
        image_ids = np.fromiter((p["image_id"] for p in predictions), dtype=np.int64, count=count)
        category_ids = np.fromiter((p["category_id"] for p in predictions), dtype=np.int64, count=count)
        scores = np.fromiter((p["score"] for p in predictions), dtype=np.float64, count=count)
        boxes = np.array([p["bbox"] for p in predictions], dtype=np.float64).reshape(-1, 4)
    except OverflowError:  # an id beyond 64 bits or a number beyond float range: the slow path names it
        return None
    if not np.isfinite(scores).all() or not np.isfinite(boxes).all() or (boxes[:, 2:] < 0).any():
        return None
    return image_ids, category_ids, scores


def _raise_first_malformed(predictions: list, name: str) -> None:
    for index, pred in enumerate(predictions):
        if not isinstance(pred, dict):
            raise DatasetError(f"{name}: prediction {index} is not an object")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in pred:
                raise DatasetError(f"{name}: prediction {index} has no {key!r}; COCO results need image_id, "
                                   "category_id, bbox [x, y, w, h] and score")
        for key in ("image_id", "category_id"):
            if not _is_int(pred[key]):
                raise DatasetError(f"{name}: prediction {index} has a non-integer or out-of-range (beyond 64 bits) "
                                   f"{key} ({str(pred[key])[:40]})")
        if not _is_number(pred["score"]):
            raise DatasetError(f"{name}: prediction {index} has a non-numeric or non-finite score "
                               f"({str(pred['score'])[:40]})")
        if not _is_box(pred["bbox"]):
            raise DatasetError(f"{name}: prediction {index} has a malformed bbox {str(pred['bbox'])[:80]}; "
                               "expected [x, y, w, h] with w, h >= 0")
    raise DatasetError(f"{name}: malformed predictions")  # not reached: the checks above cover the fast path


def _check_known(ids: np.ndarray, known: set[int], name: str, what: str, ann_name: str) -> None:
    unique = np.unique(ids)
    unknown = unique[~np.isin(unique, np.fromiter(known, dtype=np.int64, count=len(known)))]
    if unknown.size:
        count = int(np.isin(ids, unknown).sum())
        raise DatasetError(
            f"{name}: {count} predictions refer to {what} ids not in {ann_name} (e.g. {int(unknown[0])}); "
            f"predictions must use the annotation file's {what} ids"
        )


def _is_int(value: object) -> bool:
    """An id: an integer that fits the 64 bits the evaluator stores ids in."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def _is_number(value: object) -> bool:
    if not isinstance(value, (int, float, np.number)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _is_box(bbox: object) -> bool:
    return (
        isinstance(bbox, (list, tuple))
        and len(bbox) == 4
        and all(_is_number(v) for v in bbox)
        and bbox[2] >= 0
        and bbox[3] >= 0
    )
