"""`yoloworld predict --json` records -> COCO results, so `val --predictions` scores what `predict` wrote.

A record is `{file, width, height, detections: [{xyxy, score, class_id, class_name, segmentation?}]}`. Its image
is the annotation image whose `file_name` the record's path ends with; its classes are matched to the
categories by name (class ids are positions in predict's vocabulary, not category ids).
"""

from __future__ import annotations

import logging
from pathlib import PurePath

from yoloworld.errors import DatasetError

logger = logging.getLogger(__name__)


def is_predict_json(data: list) -> bool:
    """True for `predict --json` output: records holding a `detections` list (a COCO results list has none)."""
    return bool(data) and all(isinstance(r, dict) and isinstance(r.get("detections"), list) for r in data)


def predict_records_to_coco(records: list, dataset: dict, name: str) -> list[dict]:
    """COCO results of `records` against the annotation `dataset` (images and categories)."""
    images = _ImageIndex(dataset["images"])
    category_of = {str(category["name"]): int(category["id"]) for category in dataset["categories"]}
    results, matched = [], 0
    for index, record in enumerate(records):
        if "frame" in record:
            raise DatasetError(f"{name}: record {index} is a video frame ({record.get('file')}); val scores images")
        image_id = images.find(record.get("file"), f"{name}: record {index}")
        if image_id is None:  # predicted on a folder holding other splits too
            continue
        matched += 1
        for detection in record["detections"]:
            results.append(_coco_result(detection, image_id, category_of, f"{name}: record {index}"))
    if not matched:
        raise DatasetError(f"{name}: none of its {len(records)} images is in the annotation file (records are "
                           f"matched to images by file name, e.g. {records[0].get('file')})")
    if matched < len(records):
        logger.info("%s: %d of %d images are in the annotation file; the other records are left out", name, matched,
                    len(records))
    return results


def _coco_result(detection: object, image_id: int, category_of: dict, where: str) -> dict:
    if not isinstance(detection, dict) or not {"xyxy", "score", "class_name"} <= detection.keys():
        raise DatasetError(f"{where}: a detection without xyxy, score and class_name (not `predict --json` output)")
    class_name = str(detection["class_name"])
    if class_name not in category_of:
        raise DatasetError(f"{where}: class {class_name!r} is not a category of the annotation file (categories: "
                           f"{', '.join(list(category_of)[:12])}); predict with --classes named like the categories")
    try:
        x1, y1, x2, y2 = (float(v) for v in detection["xyxy"])
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: xyxy {detection['xyxy']!r} is not four numbers") from None
    result = {"image_id": image_id, "category_id": category_of[class_name], "bbox": [x1, y1, x2 - x1, y2 - y1],
              "score": detection["score"]}
    if "segmentation" in detection:
        result["segmentation"] = detection["segmentation"]
    return result


class _ImageIndex:
    """Annotation images by file name: a record's path matches the image whose `file_name` it ends with."""

    def __init__(self, images: list[dict]):
        self.by_basename: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for image in images:
            parts = PurePath(str(image.get("file_name", ""))).parts
            if parts:
                self.by_basename.setdefault(parts[-1], []).append((parts, int(image["id"])))

    def find(self, file: object, where: str) -> int | None:
        """The id of the image `file` names, None if the annotation file has no such image."""
        parts = PurePath(str(file or "")).parts
        candidates = self.by_basename.get(parts[-1] if parts else "", [])
        matches = [image_id for names, image_id in candidates if parts[-len(names):] == names]
        if len(matches) > 1:
            raise DatasetError(f"{where}: {file} matches several images of the annotation file ("
                               "records are matched to images by file name)")
        return matches[0] if matches else None
