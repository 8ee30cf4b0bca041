"""`yoloworld val --weights`: the official-format tiny checkpoint on a tiny generated COCO dataset."""

import json

import cv2
import numpy as np

from yoloworld.cli import main

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]


def write_tiny_coco(folder):
    """Three images with painted rectangles and matching boxes (the weights are random: only the plumbing counts)."""
    rng = np.random.RandomState(0)
    images, annotations = [], []
    for image_id, (height, width) in enumerate([(240, 320), (300, 200), (256, 256)], start=1):
        picture = np.full((height, width, 3), 114, dtype=np.uint8)
        x, y = int(rng.randint(0, width // 2)), int(rng.randint(0, height // 2))
        w, h = width // 3, height // 3
        cv2.rectangle(picture, (x, y), (x + w, y + h), tuple(int(c) for c in rng.randint(0, 255, 3)), -1)
        file_name = f"img_{image_id}.jpg"
        assert cv2.imwrite(str(folder / file_name), picture)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        annotations.append({"id": image_id, "image_id": image_id, "category_id": CATEGORIES[image_id - 1]["id"],
                            "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    ann = folder / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return ann


def test_val_with_weights_writes_metrics_and_predictions(fixtures, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    ann = write_tiny_coco(images)
    classes = tmp_path / "texts.json"
    classes.write_text(json.dumps([["person", "human"], ["car"], ["dog"]]))
    metrics_path, preds_path = tmp_path / "metrics.json", tmp_path / "preds.json"
    code = main([
        "val", "--weights", str(fixtures / "v2_n.pth"), "--text-model", str(fixtures / "tiny-clip"),
        "--ann", str(ann), "--images", str(images), "--classes-file", str(classes), "--device", "cpu",
        "--batch", "2", "--save-json", str(preds_path), "--metrics-json", str(metrics_path),
    ])
    assert code == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["mode"] == "coco" and metrics["num_images"] == 3
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"):
        assert isinstance(metrics[key], float) and -1 <= metrics[key] <= 1
    predictions = json.loads(preds_path.read_text())
    assert metrics["num_detections"] == len(predictions)
    assert {p["image_id"] for p in predictions} <= {1, 2, 3}
    assert {p["category_id"] for p in predictions} <= {1, 3, 18}
    assert all(p["score"] >= 0.001 and len(p["bbox"]) == 4 and min(p["bbox"][2:]) >= 0 for p in predictions)
    assert max(np.bincount([p["image_id"] for p in predictions], minlength=4)) <= 300
