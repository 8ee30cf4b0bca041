"""Typed dataset configuration and the one function that reads any supported format.

A dataset YAML lists several datasets to mix, each with its own texts (paths relative to the YAML file):

    train:
      - {kind: objects365, ann: o365/train.json, images: o365/train, classes_file: texts/obj365.json}
      - {kind: grounding, ann: gqa/final_mixed_train_no_coco.json, images: gqa/images}
    val:
      - {kind: lvis, ann: coco/lvis/lvis_v1_minival.json, images: coco}

An Ultralytics `data.yaml` (with `names`) is read as one YOLO dataset instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from yoloworld.config import from_dict
from yoloworld.errors import ConfigError, DatasetError

from .annotations import read_coco_json
from .coco import read_detection
from .grounding import read_cc3m, read_grounding
from .problems import ProblemLog
from .records import DatasetSource
from .yolo_format import read_data_yaml, read_yolo

KINDS = ("coco", "objects365", "lvis", "grounding", "cc3m", "yolo")


@dataclass
class DatasetConfig:
    kind: str = "coco"  # one of KINDS, or 'auto' to detect it from the annotation file
    ann: str | None = None  # annotation JSON (yolo: a data.yaml, or None with `images` = the dataset folder)
    images: str | None = None  # image folder (yolo: the dataset folder)
    classes_file: str | None = None  # class-text JSON; detection kinds only
    split: str = "train"  # yolo folders with several splits
    with_masks: bool = False  # read polygons (needed by copy-paste)
    drop_empty: bool = False  # leave out images without boxes

    def resolved(self, base: Path) -> "DatasetConfig":
        """Paths relative to `base` (the folder of the YAML that named them)."""
        def fix(value):
            return value if value is None or Path(value).is_absolute() else str(base / value)
        return replace(self, ann=fix(self.ann), images=fix(self.images), classes_file=fix(self.classes_file))


def read_source(config: DatasetConfig, problems: ProblemLog | None = None) -> DatasetSource:
    """Read one dataset of any kind; fatal problems raise DatasetError, the rest go to `problems`."""
    problems = problems if problems is not None else ProblemLog()
    kind, data = config.kind, None
    if kind == "auto":
        if _is_yolo(config):
            kind = "yolo"
        else:
            data = read_coco_json(config.ann)  # parsed once: detection and reading share it
            kind = kind_of(data)
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "yolo":
        root = config.ann or config.images
        if root is None:
            raise DatasetError("a yolo dataset needs `images` (the dataset folder) or `ann` (its data.yaml)")
        source = read_yolo(root, config.split, config.with_masks, problems)
    else:
        if config.ann is None or config.images is None:
            raise DatasetError(f"a {kind} dataset needs both `ann` (the annotation JSON) and `images` (the image folder)")
        if kind in ("grounding", "cc3m") and config.classes_file:
            raise DatasetError(f"{config.classes_file}: a {kind} dataset takes its texts from the captions; "
                               "drop classes_file")
        if kind == "grounding":
            source = read_grounding(config.ann, config.images, problems, data)
        elif kind == "cc3m":
            source = read_cc3m(config.ann, config.images, problems, data)
        else:
            source = read_detection(config.ann, config.images, config.classes_file, kind, config.with_masks, problems,
                                    data)
    if config.drop_empty:
        source.records = [r for r in source.records if len(r.boxes)]
    return source


def _is_yolo(config: DatasetConfig) -> bool:
    if config.ann is None and config.images is None:
        raise DatasetError("no dataset given: pass an annotation JSON with its image folder, or a YOLO folder")
    return config.ann is None or Path(config.ann).suffix in (".yaml", ".yml") or Path(config.ann).is_dir()


def kind_of(data: dict) -> str:
    """A COCO-style file's kind from its fields: captions + spans, box tokens, LVIS frequencies."""
    first_ann = next((a for a in data["annotations"] if isinstance(a, dict)), {})
    first_image = next((i for i in data["images"] if isinstance(i, dict)), {})
    first_category = next((c for c in data.get("categories") or [] if isinstance(c, dict)), {})
    if "tokens_positive" in first_ann:
        return "grounding"
    if "tokens" in first_ann and "caption" in first_image:
        return "cc3m"
    if "neg_category_ids" in first_image or "frequency" in first_category:
        return "lvis"
    return "coco"


def detect_kind(config: DatasetConfig) -> str:
    """'yolo' for folders and YAML files; otherwise from the annotation JSON's fields."""
    return "yolo" if _is_yolo(config) else kind_of(read_coco_json(config.ann))


def load_dataset_yaml(path: str | Path) -> dict[str, list[DatasetConfig]]:
    """split -> dataset configs, from a yoloworld dataset YAML or an Ultralytics data.yaml."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset YAML not found")
    data = read_data_yaml(path)
    if "names" in data:  # Ultralytics data.yaml: one YOLO dataset with its splits
        return {split: [DatasetConfig(kind="yolo", ann=str(path), split=split)]
                for split in ("train", "val", "test") if isinstance(data.get(split), str)}
    splits = {}
    for split, entries in data.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise DatasetError(f"{path}: {split!r} must be a list of datasets like "
                               "{kind: coco, ann: train.json, images: images/}")
        try:
            splits[split] = [from_dict(DatasetConfig, e, f"{split}[{i}].").resolved(path.parent)
                             for i, e in enumerate(entries)]
        except ConfigError as exc:
            raise DatasetError(f"{path}: {exc}") from None
    return splits
