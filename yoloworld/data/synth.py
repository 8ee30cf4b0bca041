"""A small synthetic dataset of coloured shapes ("red circle", "blue triangle") in three layouts.

    OUT/coco/images/000000.jpg ...             every image
    OUT/coco/annotations.json                  train split (all images without --val-fraction), with polygons
    OUT/coco/annotations_val.json              val split (only with a val fraction)
    OUT/coco/class_texts.json                  [["red circle"], ["red square"], ...]
    OUT/grounding/annotations.json (+ _val)    MDETR style: captions + tokens_positive; images in OUT/coco/images
    OUT/yolo/images/{train,val}, labels/{train,val}, classes.txt, data.yaml

Deterministic for a given seed. Shapes are saturated colours on a noisy grey background, well apart, so a
small detector learns them in minutes on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from yoloworld.errors import InputError

COLOURS = {  # BGR
    "red": (40, 40, 220), "green": (50, 185, 50), "blue": (215, 70, 35), "yellow": (35, 220, 230),
    "purple": (165, 45, 150), "orange": (25, 135, 250), "white": (245, 245, 245), "cyan": (225, 215, 40),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
TEXTURES = ("solid", "striped")
SHAPE_SYNONYMS = {"circle": "disc", "square": "block", "triangle": "wedge", "star": "star shape",
                  "cross": "plus sign", "diamond": "rhombus"}


@dataclass
class SynthConfig:
    images: int = 200
    seed: int = 0
    colours: int = 3  # the first N of COLOURS
    shapes: int = 3  # the first N of SHAPES
    min_side: int = 320
    max_side: int = 640
    max_objects: int = 6  # 1..max_objects per image
    val_fraction: float = 0.0
    synonyms: bool = False  # add a second text per class ("red disc")
    texture: str = "solid"  # solid | striped (diagonal stripes of the colour and a darker shade: a new appearance)
    only: tuple[str, ...] | None = None  # draw only these classes (of the colours x shapes grid); they form the vocabulary
    unlabelled: tuple[str, ...] = ()  # with `only`: also draw these, solid and never annotated (what a dataset ignores)

    def __post_init__(self):
        checks = [  # each names the `data synth` flag of the setting
            (1 <= self.colours <= len(COLOURS), f"--colours {self.colours}: must be 1..{len(COLOURS)}"),
            (1 <= self.shapes <= len(SHAPES), f"--shapes {self.shapes}: must be 1..{len(SHAPES)}"),
            (self.images >= 1, f"--images {self.images}: must be >= 1"),
            (0 <= self.val_fraction < 1, f"--val-fraction {self.val_fraction}: must be in [0, 1) (the share of "
                                         "--images held out for validation)"),
            (self.max_objects >= 1, f"--max-objects {self.max_objects}: must be >= 1 (objects per image)"),
            (32 <= self.min_side <= self.max_side, f"--min-side {self.min_side} / --max-side {self.max_side}: need "
                                                   "32 <= min side <= max side"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"data synth: {message}")
        if self.texture not in TEXTURES:
            raise InputError(f"synth: texture {self.texture!r}: choose one of {', '.join(TEXTURES)}")
        grid = self.grid_names
        unknown = [name for name in (*(self.only or ()), *self.unlabelled) if name not in grid]
        if unknown or (self.only is not None and not self.only):
            raise InputError(f"synth: {', '.join(unknown) or 'only (empty)'}: choose classes of {', '.join(grid)}")
        if self.unlabelled and not self.only:
            raise InputError("synth: unlabelled classes are drawn beside `only` classes: give both")

    @property
    def grid_names(self) -> list[str]:
        """Every colour x shape class of `colours` and `shapes`."""
        return [f"{c} {s}" for c in list(COLOURS)[: self.colours] for s in SHAPES[: self.shapes]]

    @property
    def class_names(self) -> list[str]:
        return list(self.only) if self.only else self.grid_names

    @property
    def class_texts(self) -> list[list[str]]:
        if not self.synonyms:
            return [[name] for name in self.class_names]
        return [[name, f"{name.split()[0]} {SHAPE_SYNONYMS[name.split()[1]]}"] for name in self.class_names]


@dataclass
class SynthObject:
    label: int
    box: tuple[float, float, float, float]  # xyxy
    polygon: np.ndarray  # (k, 2)


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Outline of a shape of half-size r centred at (cx, cy); its extent is exactly the square of side 2r."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        points = np.stack([np.cos(t), np.sin(t)], axis=1)
    elif shape == "square":
        points = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    elif shape == "triangle":
        points = np.array([[0, -1], [1, 1], [-1, 1]])
    elif shape == "diamond":
        points = np.array([[0, -1], [1, 0], [0, 1], [-1, 0]])
    elif shape == "cross":
        a = 0.35
        points = np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a],
                           [-1, -a], [-a, -a]])
    else:  # star: 5 points, inner radius 0.45, scaled so its extent fills the square
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        points = np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)
        low, high = points.min(axis=0), points.max(axis=0)
        points = (points - (low + high) / 2) / ((high - low) / 2)
    return (points * r + [cx, cy]).astype(np.float32)


def draw_image(rng: np.random.Generator, config: SynthConfig) -> tuple[np.ndarray, list[SynthObject]]:
    width, height = (int(rng.integers(config.min_side, config.max_side + 1)) for _ in range(2))
    base = (rng.uniform(70, 170) + rng.uniform(-10, 10, size=3)).astype(np.int16)
    noise = rng.integers(-20, 21, size=(height, width, 3), dtype=np.int16)  # uniform, sigma ~12
    image = np.clip(noise + base, 0, 255).astype(np.uint8)
    colours, shapes = list(COLOURS)[: config.colours], SHAPES[: config.shapes]
    objects: list[SynthObject] = []
    placed: list[tuple] = []  # every drawn box, annotated or not
    for _ in range(int(rng.integers(1, config.max_objects + 1))):
        for _attempt in range(30):  # rejection sampling: shapes never overlap
            r = rng.uniform(0.06, 0.16) * min(width, height)
            cx, cy = rng.uniform(r + 1, width - r - 1), rng.uniform(r + 1, height - r - 1)
            box = (cx - r, cy - r, cx + r, cy + r)
            if all(_apart(box, other, margin=4) for other in placed):
                break
        else:
            continue
        if config.only:
            label = int(rng.integers(len(config.only) + len(config.unlabelled)))
            colour_name, shape_name = (*config.only, *config.unlabelled)[label].split()
        else:
            colour, shape = int(rng.integers(len(colours))), int(rng.integers(len(shapes)))
            label, colour_name, shape_name = colour * len(shapes) + shape, colours[colour], shapes[shape]
        polygon = shape_polygon(shape_name, cx, cy, r)
        bgr = np.clip(np.asarray(COLOURS[colour_name]) + rng.integers(-15, 16, size=3), 0, 255)
        cv2.fillPoly(image, [np.round(polygon).astype(np.int32)], tuple(int(v) for v in bgr), lineType=cv2.LINE_AA)
        placed.append(box)
        if config.only and label >= len(config.only):  # an unlabelled distractor: drawn, not annotated
            continue
        if config.texture == "striped":
            _stripe(image, polygon, box, bgr)
        objects.append(SynthObject(label, box, polygon))
    return image, objects


def _stripe(image: np.ndarray, polygon: np.ndarray, box, bgr: np.ndarray) -> None:
    """Darken every other diagonal band inside the shape (half the colour), bands ~1/6 of the shape wide."""
    x1, y1 = (max(0, int(v)) for v in box[:2])
    x2, y2 = min(image.shape[1], int(np.ceil(box[2])) + 1), min(image.shape[0], int(np.ceil(box[3])) + 1)
    mask = np.zeros((y2 - y1, x2 - x1), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon - [x1, y1]).astype(np.int32)], 1)
    period = max(4.0, (box[2] - box[0]) / 3)
    ys, xs = np.mgrid[y1:y2, x1:x2]
    band = ((xs + ys) // (period / 2)).astype(np.int64) % 2 == 1
    region = image[y1:y2, x1:x2]
    region[(mask > 0) & band] = (bgr * 0.5).astype(np.uint8)


def _apart(a, b, margin: float) -> bool:
    return a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1]


def caption_for(objects: list[SynthObject], names: list[str]) -> tuple[str, dict[int, list[int]]]:
    """'a red circle, a blue square and a green triangle' plus label -> [start, end) of its phrase."""
    labels = list(dict.fromkeys(o.label for o in objects))
    caption, spans = "", {}
    for i, label in enumerate(labels):
        caption += ("" if i == 0 else " and " if i == len(labels) - 1 else ", ") + "a "
        spans[label] = [len(caption), len(caption) + len(names[label])]
        caption += names[label]
    return caption, spans


def synthesize(out_dir: str | Path, config: SynthConfig, overwrite: bool = False) -> dict[str, int]:
    """Write the dataset; returns image and box counts per split."""
    out = Path(out_dir)
    _clear_previous(out, overwrite)
    image_dir = out / "coco" / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    names = config.class_names
    num_val = min(int(round(config.images * config.val_fraction)), config.images - 1)
    splits = {"train": [], "val": []}
    for index in range(config.images):
        image, objects = draw_image(rng, config)
        file_name = f"{index:06d}.jpg"
        cv2.imwrite(str(image_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        split = "val" if index >= config.images - num_val else "train"
        splits[split].append((index, file_name, image.shape[1], image.shape[0], objects))
    for split, items in splits.items():
        if items:
            suffix = "" if split == "train" else "_val"
            _write_json(out / "coco" / f"annotations{suffix}.json", _coco_dict(items, names))
            _write_json(out / "grounding" / f"annotations{suffix}.json", _grounding_dict(items, names))
            _write_yolo_split(out / "yolo", split, items, image_dir)
    _write_json(out / "coco" / "class_texts.json", config.class_texts)
    (out / "yolo" / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    data_yaml = {split: f"images/{split}" for split, items in splits.items() if items}
    data_yaml.update(nc=len(names), names=names)
    (out / "yolo" / "data.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False), encoding="utf-8")
    return {f"{split}_{what}": count for split, items in splits.items()
            for what, count in (("images", len(items)), ("boxes", sum(len(i[4]) for i in items)))}


def _clear_previous(out: Path, overwrite: bool) -> None:
    """Stale images of an earlier, larger run would leak into the YOLO folders: refuse or remove our folders."""
    ours = [out / name for name in ("coco", "grounding", "yolo") if (out / name).exists()]
    if ours and not overwrite:
        raise InputError(f"{out}: already holds a dataset ({', '.join(p.name for p in ours)}); "
                         "pass --overwrite or choose another --out")
    for path in ours:
        shutil.rmtree(path)


def _xywh(box) -> list[float]:
    return [round(box[0], 3), round(box[1], 3), round(box[2] - box[0], 3), round(box[3] - box[1], 3)]


def _coco_dict(items, names) -> dict:
    images, annotations = [], []
    for image_id, file_name, width, height, objects in items:
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for obj in objects:
            x, y, w, h = _xywh(obj.box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": obj.label + 1,
                                "bbox": [x, y, w, h], "area": round(w * h, 3), "iscrowd": 0,
                                "segmentation": [np.round(obj.polygon, 2).reshape(-1).tolist()]})
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _grounding_dict(items, names) -> dict:
    """MDETR layout (final_mixed_train_no_coco.json): one entry per caption, boxes point into it."""
    images, annotations = [], []
    for image_id, file_name, width, height, objects in items:
        caption, spans = caption_for(objects, names)
        images.append({"file_name": file_name, "height": height, "width": width, "id": image_id,
                       "caption": caption, "dataset_name": "synth", "tokens_negative": [], "sentence_id": 0,
                       "original_img_id": image_id, "tokens_positive_eval": [[spans[label]] for label in spans]})
        for obj in objects:
            x, y, w, h = _xywh(obj.box)
            annotations.append({"area": round(w * h, 3), "iscrowd": 0, "image_id": image_id, "category_id": 1,
                                 "id": len(annotations) + 1, "bbox": [x, y, w, h],
                                 "tokens_positive": [spans[obj.label]]})
    return {"images": images, "annotations": annotations,
            "categories": [{"supercategory": "object", "id": 1, "name": "object"}]}


def _write_yolo_split(root: Path, split: str, items, image_dir: Path) -> None:
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for _, file_name, width, height, objects in items:
        target = images / file_name
        if target.exists():
            target.unlink()
        try:
            os.link(image_dir / file_name, target)  # same bytes as the COCO copy, no extra disk
        except OSError:
            shutil.copyfile(image_dir / file_name, target)
        lines = [f"{o.label} {(o.box[0] + o.box[2]) / 2 / width:.6f} {(o.box[1] + o.box[3]) / 2 / height:.6f} "
                 f"{(o.box[2] - o.box[0]) / width:.6f} {(o.box[3] - o.box[1]) / height:.6f}" for o in objects]
        (labels / file_name).with_suffix(".txt").write_text("\n".join(lines) + ("\n" if lines else ""),
                                                            encoding="utf-8")


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
