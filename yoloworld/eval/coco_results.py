"""Model outputs -> COCO results format (the list pycocotools, lvis-api and `yoloworld val --predictions` read)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from yoloworld.errors import InputError


def results_to_coco(
    image_id: int,
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    category_ids: Sequence[int],
    masks: np.ndarray | None = None,
) -> list[dict]:
    """One COCO result per box: class index -> category id, (x1, y1, x2, y2) -> [x, y, w, h] in pixels; with
    `masks` (K, H, W) bool, each result also carries its mask as COCO RLE ('segmentation')."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    class_ids = np.asarray(class_ids).reshape(-1).astype(np.int64)
    if not len(boxes) == len(scores) == len(class_ids):
        raise InputError(f"results_to_coco: {len(boxes)} boxes, {len(scores)} scores and {len(class_ids)} class ids")
    if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= len(category_ids)):
        raise InputError(
            f"results_to_coco: class index {int(class_ids.max())} has no category id ({len(category_ids)} given)"
        )
    widths_heights = boxes[:, 2:] - boxes[:, :2]
    xywh = np.concatenate([boxes[:, :2], widths_heights], axis=1).tolist()
    categories = [int(category_ids[index]) for index in class_ids.tolist()]
    results = [
        {"image_id": int(image_id), "category_id": category, "bbox": box, "score": score}
        for category, box, score in zip(categories, xywh, scores.tolist())
    ]
    if masks is not None:
        from yoloworld.masks import encode_rle

        for result, mask in zip(results, masks):
            result["segmentation"] = encode_rle(mask)
    return results
