"""Seeded synthetic ground truth and detections, for checking evaluators against each other and timing them.

Boxes span the small / medium / large area ranges; detections mix jittered true positives (so IoUs spread
across the .50:.95 thresholds), duplicates and background false positives. COCO sets get crowd regions;
LVIS sets get r/c/f frequencies, negative and not-exhaustive category lists and detections for
categories the federated rules must drop.
"""

from __future__ import annotations

import numpy as np

SIDE_SCALES = (12.0, 55.0, 180.0)  # typical box sides for small, medium and large objects
FREQUENCIES = ("r", "c", "f")


def make_dataset(
    num_images: int, num_categories: int, seed: int = 0, lvis: bool = False, max_objects: int = 12,
    false_positives: int = 20,
) -> tuple[dict, list[dict]]:
    """(annotation dict, COCO results list) for num_images images."""
    rng = np.random.RandomState(seed)
    categories = [{"id": index + 1, "name": f"class_{index + 1}"} for index in range(num_categories)]
    if lvis:
        for index, category in enumerate(categories):
            category["frequency"] = FREQUENCIES[index % 3]
    images, annotations, predictions = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = int(rng.randint(320, 1000)), int(rng.randint(320, 1000))
        image = {"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": width, "height": height}
        objects = [_random_object(rng, width, height, num_categories) for _ in range(rng.randint(0, max_objects + 1))]
        for box, category_id in objects:
            crowd = int(not lvis and rng.rand() < 0.03)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id, "bbox": box,
                "area": box[2] * box[3] * rng.uniform(0.6, 1.0), "iscrowd": crowd,
            })
            predictions += _detections_of(rng, box, image_id, category_id)
        for _ in range(rng.randint(0, false_positives + 1)):
            box, category_id = _random_object(rng, width, height, num_categories)
            predictions.append(_prediction(image_id, category_id, box, rng.uniform(0.0, 0.6)))
        if lvis:
            _add_federated_lists(rng, image, {category_id for _, category_id in objects}, num_categories)
        images.append(image)
    return {"images": images, "annotations": annotations, "categories": categories}, predictions


def _random_object(rng: np.random.RandomState, width: int, height: int, num_categories: int):
    side = SIDE_SCALES[rng.randint(3)] * rng.uniform(0.5, 1.6)
    w = float(np.clip(side * rng.uniform(0.6, 1.6), 2.0, width - 1))
    h = float(np.clip(side * rng.uniform(0.6, 1.6), 2.0, height - 1))
    x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
    return [x, y, w, h], int(rng.randint(1, num_categories + 1))


def _detections_of(rng: np.random.RandomState, box: list[float], image_id: int, category_id: int) -> list[dict]:
    """0-3 jittered copies of a ground-truth box; better boxes tend to score higher."""
    detections = []
    for _ in range(rng.randint(0, 4)):
        jitter = rng.uniform(0.0, 0.3)
        x, y, w, h = box
        moved = [x + rng.randn() * jitter * w, y + rng.randn() * jitter * h,
                 w * float(np.exp(rng.randn() * jitter)), h * float(np.exp(rng.randn() * jitter))]
        score = float(np.clip(1.0 - jitter * 2 + rng.randn() * 0.15, 0.001, 1.0))
        detections.append(_prediction(image_id, category_id, moved, score))
    return detections


def _prediction(image_id: int, category_id: int, box: list[float], score: float) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": [float(v) for v in box], "score": float(score)}


def _add_federated_lists(rng: np.random.RandomState, image: dict, present: set[int], num_categories: int) -> None:
    absent = [category for category in range(1, num_categories + 1) if category not in present]
    rng.shuffle(absent)
    image["neg_category_ids"] = sorted(absent[: rng.randint(0, 8)])
    image["not_exhaustive_category_ids"] = sorted(c for c in present if rng.rand() < 0.3)
