"""Dataset layouts written from the ledger's entries, in the shapes our readers (and Ultralytics, mmdet) expect.

    coco:  OUT/images/NAME, OUT/annotations.json (+ annotations_val.json), OUT/class_texts.json, OUT/dataset.yaml
    yolo:  OUT/images/{train,val}/NAME, OUT/labels/{train,val}/STEM.txt, OUT/data.yaml

An entry: {"source", "name", "split", "width", "height", "boxes": [[x1, y1, x2, y2, class_id, score], ...]}.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from yoloworld.files import atomic_write_text, write_json

FORMATS = ("coco", "yolo")


def image_target(out: Path, fmt: str, name: str, split: str) -> Path:
    return out / "images" / name if fmt == "coco" else out / "images" / split / name


def place_image(source: Path, target: Path) -> None:
    """The labelled image inside the dataset: a hard link where the file system allows (no extra disk), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():  # the link itself, never a file it points to
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def by_split(entries: list[dict]) -> dict[str, list[dict]]:
    splits = {split: [e for e in entries if e["split"] == split] for split in ("train", "val")}
    return {split: items for split, items in splits.items() if items}


def dataset_files(out: Path, fmt: str, entries: list[dict]) -> list[Path]:
    """The files `write_dataset` writes for `entries` (claimed as this command's before they are written)."""
    splits = by_split(entries)
    if fmt == "coco":
        return [out / coco_name(split) for split in splits] + [out / "class_texts.json", out / "dataset.yaml"]
    return [yolo_label(out, split, e) for split, items in splits.items() for e in items] + [out / "data.yaml"]


def coco_name(split: str) -> str:
    return "annotations.json" if split == "train" else f"annotations_{split}.json"


def yolo_label(out: Path, split: str, entry: dict) -> Path:
    return out / "labels" / split / Path(entry["name"]).with_suffix(".txt")


def write_dataset(out: Path, fmt: str, entries: list[dict], classes: list[list[str]]) -> Path:
    """Write the annotation files for every entry; returns the file to hand to `data check` / training first."""
    splits = by_split(entries)
    if fmt == "coco":
        return write_coco(out, splits, classes)
    return write_yolo(out, splits, [group[0] for group in classes])


def write_coco(out: Path, splits: dict[str, list[dict]], classes: list[list[str]]) -> Path:
    categories = [{"id": i + 1, "name": group[0], "supercategory": "object"} for i, group in enumerate(classes)]
    datasets = {}
    for split, items in splits.items():
        ann = coco_name(split)
        write_json(out / ann, coco_dict(items, categories))
        datasets[split] = [{"kind": "coco", "ann": ann, "images": "images", "classes_file": "class_texts.json"}]
    write_json(out / "class_texts.json", classes, indent=1)
    atomic_write_text(out / "dataset.yaml", yaml.safe_dump(datasets, sort_keys=False))
    return out / "dataset.yaml"


def coco_dict(items: list[dict], categories: list[dict]) -> dict:
    images, annotations = [], []
    for image_id, entry in enumerate(items, 1):
        images.append({"id": image_id, "file_name": entry["name"], "width": entry["width"], "height": entry["height"]})
        for x1, y1, x2, y2, class_id, score in entry["boxes"]:
            w, h = x2 - x1, y2 - y1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(class_id) + 1,
                                "bbox": [x1, y1, round(w, 2), round(h, 2)], "area": round(w * h, 2), "iscrowd": 0,
                                "score": score})  # the detector's score, kept for review; readers ignore it
    return {"images": images, "annotations": annotations, "categories": categories}


def write_yolo(out: Path, splits: dict[str, list[dict]], names: list[str]) -> Path:
    for split, items in splits.items():
        for entry in items:
            lines = [yolo_line(box, entry["width"], entry["height"]) for box in entry["boxes"]]
            label = yolo_label(out, split, entry)
            label.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(label, "".join(line + "\n" for line in lines))
    data = {split: f"images/{split}" for split in splits}
    data.update(nc=len(names), names=names)
    atomic_write_text(out / "data.yaml", yaml.safe_dump(data, sort_keys=False))
    return out / "data.yaml"


def yolo_line(box: list, width: int, height: int) -> str:
    x1, y1, x2, y2, class_id, _ = box
    return (f"{int(class_id)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
            f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
