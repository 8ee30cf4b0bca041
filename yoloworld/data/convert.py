"""YOLO txt dataset -> COCO JSON (replaces MMYOLO's tools/dataset_converters/yolo2coco.py from the tutorial).

Every split found (train/val/test, in any accepted layout) becomes one file; `file_name` is relative to the
split's image folder, which is what training takes as `--images`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yoloworld.errors import DatasetError
from yoloworld.files import atomic_write_text, check_output

from .problems import ProblemLog
from .records import DatasetSource
from .yolo_format import find_yolo_splits, read_yolo_images


@dataclass
class ConvertedSplit:
    split: str
    path: Path
    images_root: Path
    images: int
    boxes: int


def source_to_coco(source: DatasetSource, images_root: Path) -> dict:
    """Records -> COCO dict (also a ground truth for evaluating a YOLO folder): the records' image ids and the
    source's category ids (YOLO: class index + 1), boxes xywh in pixels, polygons kept."""
    images, annotations = [], []
    for record in source.records:
        image_id = record.image_id
        images.append({"id": image_id, "file_name": Path(os.path.relpath(record.file, images_root)).as_posix(),
                       "width": record.width, "height": record.height})
        polygons = record.polygons or [[] for _ in range(len(record.boxes))]
        for box, label, polys in zip(record.boxes.tolist(), record.labels.tolist(), polygons):
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": source.category_ids[label],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                                "segmentation": [p.reshape(-1).tolist() for p in polys]})
    categories = [{"id": category_id, "name": texts[0], "supercategory": "none"}
                  for category_id, texts in zip(source.category_ids, source.class_texts)]
    return {"images": images, "annotations": annotations, "categories": categories}


def output_path(out: Path | None, root: Path, split: str, several: bool) -> Path:
    """One split: OUT (default ROOT/annotations.json). Several: OUT_<split>.json if OUT ends in .json, else
    OUT/<split>.json (default ROOT/annotations/<split>.json)."""
    if not several:
        return out if out is not None else root / "annotations.json"
    if out is not None and out.suffix == ".json":
        return out.with_name(f"{out.stem}_{split}.json")
    return (out if out is not None else root / "annotations") / f"{split}.json"


def yolo_to_coco(root: str | Path, out: str | Path | None = None,
                 problems: ProblemLog | None = None) -> list[ConvertedSplit]:
    problems = problems if problems is not None else ProblemLog()
    root = Path(root)
    splits, names = find_yolo_splits(root)
    base = root.parent if root.is_file() else root
    paths = {split: output_path(Path(out) if out is not None else None, base, split, several=len(splits) > 1)
             for split, images in splits.items() if images}
    for path in paths.values():  # every output checked before any work: a file in the way, no permission
        check_output(path, "--out" if out is not None else "output")
    written = []
    for split, path in paths.items():
        images = splits[split]
        source = read_yolo_images(images, names, split, with_masks=True, problems=problems, dtype=np.float64)
        images_root = Path(os.path.commonpath([str(Path(r.file).parent) for r in source.records])) \
            if source.records else Path(images[0]).parent
        path.parent.mkdir(parents=True, exist_ok=True)
        coco = source_to_coco(source, images_root)
        atomic_write_text(path, json.dumps(coco))
        written.append(ConvertedSplit(split, path, images_root, len(coco["images"]), len(coco["annotations"])))
    if not written:
        raise DatasetError(f"{root}: no images found in any split; nothing to convert")
    return written
