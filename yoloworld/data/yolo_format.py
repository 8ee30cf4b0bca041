"""YOLO txt datasets, read directly: `images/` + `labels/` (one `cls cx cy w h` line per box, normalised, or a
`cls x1 y1 x2 y2 ...` polygon), class names from `classes.txt` or a `data.yaml`.

Accepted layouts (the label of `.../images/a/b.jpg` is `.../labels/a/b.txt`, as in Ultralytics):
  DIR/images, DIR/labels                         one split (the tutorial's train/, val/ folders)
  DIR/<split>/images, DIR/<split>/labels         split folders
  DIR/images/<split>, DIR/labels/<split>         Ultralytics layout
  DIR/data.yaml or FILE.yaml with names + train/val/test entries
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yoloworld.errors import DatasetError
from yoloworld.images import IMAGE_SUFFIXES, image_size, list_images
from yoloworld.readers import read_lines, read_yaml

from .annotations import BoxTable, ImageEntry, group_boxes
from .problems import ProblemLog
from .records import DatasetSource, ImageRecord

SPLITS = ("train", "val", "test")
YAML_NAMES = ("data.yaml", "dataset.yaml")


def label_path(image: Path) -> Path:
    """Ultralytics rule: the last `images` folder of the path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_class_names(path: str | Path) -> list[str]:
    """classes.txt: one name per line, or the tutorial's single comma-separated line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: class-name file not found")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read class names ({exc.__class__.__name__})") from None
    if len(lines) == 1 and "," in lines[0]:
        lines = [name.strip() for name in lines[0].split(",") if name.strip()]
    if not lines:
        raise DatasetError(f"{path}: is empty; write one class name per line")
    return lines


def read_data_yaml(path: Path) -> dict:
    return read_yaml(path, "YOLO data.yaml", DatasetError, "a mapping with 'names' and 'train'/'val' entries")


def yaml_class_names(data: dict, path: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names) \
                or sorted(names) != list(range(len(names))):
            raise DatasetError(f"{path}: 'names' keys must be the integers 0..{len(names) - 1}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise DatasetError(f"{path}: 'names' must be a non-empty list of class names")
    return [n.strip() for n in names]


def find_yolo_splits(root: str | Path) -> tuple[dict[str, list[Path]], list[str]]:
    """split -> image paths, plus the class names, for any accepted layout."""
    root = Path(root)
    if root.is_file():
        return _splits_from_yaml(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such YOLO dataset folder or data.yaml")
    for name in YAML_NAMES:
        if (root / name).is_file():
            return _splits_from_yaml(root / name)
    splits = {}
    if (root / "images").is_dir():
        for split in SPLITS:
            if (root / "images" / split).is_dir():
                splits[split] = list_images(root / "images" / split)
        if not splits:
            splits["train"] = list_images(root / "images")
    else:
        for split in SPLITS:
            if (root / split / "images").is_dir():
                splits[split] = list_images(root / split / "images")
    if not splits:
        raise DatasetError(f"{root}: no images/ folder (nor train/images, images/train); "
                           "a YOLO dataset needs images/ and labels/ side by side")
    return splits, _names_near(root, splits)


def _names_near(root: Path, splits: dict[str, list[Path]]) -> list[str]:
    candidates = [root / "classes.txt"] + [root / split / "classes.txt" for split in splits]
    for path in candidates:
        if path.is_file():
            return read_class_names(path)
    raise DatasetError(f"{root}: no classes.txt or data.yaml with the class names; write one name per line "
                       "to classes.txt")


def _splits_from_yaml(path: Path) -> tuple[dict[str, list[Path]], list[str]]:
    data = read_data_yaml(path)
    names = yaml_class_names(data, path)
    base = path.parent  # a relative `path:` is read from the YAML's folder (Ultralytics: from its datasets dir)
    if data.get("path") is not None and not isinstance(data["path"], str):
        raise DatasetError(f"{path}: 'path' is {str(data['path'])[:40]}; expected a folder (a string), e.g. path: .")
    if isinstance(data.get("path"), str):
        base = base / Path(data["path"]).expanduser()  # an absolute `path:` replaces the folder
    splits = {}
    for split in SPLITS:
        entry = data.get(split)
        if isinstance(entry, str):
            splits[split] = _images_of(base / entry, path)
    if not splits:
        raise DatasetError(f"{path}: no 'train', 'val' or 'test' entry pointing at an image folder")
    return splits, names


def _images_of(target: Path, yaml_path: Path) -> list[Path]:
    if target.is_dir():
        return list_images(target)
    if target.is_file() and target.suffix == ".txt":  # a list of image paths, one per line
        lines = read_lines(target, "list of image paths (one a line)")
        return [p if p.is_absolute() else target.parent / p for p in map(Path, lines)]
    raise DatasetError(f"{yaml_path}: split path {target} is neither an image folder nor a .txt list of images")


def read_yolo(root: str | Path, split: str = "train", with_masks: bool = False,
              problems: ProblemLog | None = None) -> DatasetSource:
    problems = problems if problems is not None else ProblemLog()
    splits, names = find_yolo_splits(root)
    if split not in splits:
        raise DatasetError(f"{root}: has no {split!r} split (found: {', '.join(splits)})")
    return read_yolo_images(splits[split], names, f"{Path(root).name}/{split}", with_masks, problems)


def read_yolo_images(images: list[Path], names: list[str], name: str, with_masks: bool,
                     problems: ProblemLog, dtype=np.float32) -> DatasetSource:
    """Records of the given images; `dtype=np.float64` keeps boxes exact for conversion."""
    class_texts = [[n] for n in names]
    entries, table = [], BoxTable()
    for image in images:
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        size = image_size(image)
        if size is None:
            kind = "missing_image" if not image.exists() else "corrupt_image"
            problems.add(kind, str(image), "cannot be read; image skipped")
            continue
        # integer ids 1..n, as in the COCO file the converter writes for this folder
        entries.append(ImageEntry(str(image), size[0], size[1], len(entries) + 1, {}))
        _read_label_file(label_path(image), len(entries) - 1, size, len(names), table, problems, with_masks)
    records = [ImageRecord(file=e.file, width=e.width, height=e.height, boxes=boxes, labels=labels,
                           class_texts=class_texts, image_id=e.image_id, polygons=polygons)
               for e, (boxes, labels, polygons) in zip(entries, group_boxes(table, entries, problems, with_masks, dtype))]
    return DatasetSource(name=name, kind="yolo", records=records, class_texts=class_texts,
                         category_ids=list(range(1, len(names) + 1)))


def _read_label_file(path: Path, image_index: int, size: tuple[int, int], num_classes: int, table: BoxTable,
                     problems: ProblemLog, with_masks: bool) -> None:
    if not path.is_file():
        return  # no label file: a background image, as in Ultralytics
    width, height = size
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        values = line.split()
        if not values:
            continue
        where = f"{path}:{number}"
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            problems.add("bad_label_line", where, f"{line.strip()[:60]!r} is not numbers; line skipped")
            continue
        if not np.isfinite(numbers).all():  # nan, inf, or beyond float range like 1e400
            problems.add("bad_label_line", where, f"{line.strip()[:60]!r} holds a value that is not a finite number; "
                         "line skipped")
            continue
        cls = numbers[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            problems.add("unknown_category", where, f"class {values[0]} is not in 0..{num_classes - 1}; box dropped")
            continue
        coords = np.asarray(numbers[1:], dtype=np.float64)
        if len(coords) == 4:
            cx, cy, w, h = coords
            xywh = [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]
            polygon = []
        elif len(coords) >= 6 and len(coords) % 2 == 0:
            points = coords.reshape(-1, 2) * (width, height)
            low, high = points.min(axis=0), points.max(axis=0)
            xywh = [low[0], low[1], high[0] - low[0], high[1] - low[1]]
            polygon = [points]
        else:
            problems.add("bad_label_line", where, f"expected 'class cx cy w h' or a polygon, got {len(values)} "
                         "values; line skipped")
            continue
        table.image_index.append(image_index)
        table.xywh.append(xywh)
        table.label.append(int(cls))
        table.where.append(where)
        if with_masks:
            table.polygons.append(polygon)
