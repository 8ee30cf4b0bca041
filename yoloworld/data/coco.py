"""Detection readers: COCO JSON (+ class-text JSON), Objects365 (COCO-like) and LVIS v1.

Labels are positions in the file's `categories` list (category order), which is also the order the
class-text JSON must follow.
"""

from __future__ import annotations

from pathlib import Path

from yoloworld.errors import DatasetError

from .annotations import (
    BoxTable,
    ImageEntry,
    annotation_objects,
    group_boxes,
    is_id,
    polygons_of,
    read_coco_json,
    read_image_entries,
    valid_xywh,
)
from .class_texts import check_class_count, load_class_texts, texts_from_categories
from .problems import ProblemLog
from .records import DatasetSource, ImageRecord


def read_detection(ann_file: str | Path, images_dir: str | Path, classes_file: str | Path | None = None,
                   kind: str = "coco", with_masks: bool = False, problems: ProblemLog | None = None,
                   data: dict | None = None) -> DatasetSource:
    """COCO, Objects365 or LVIS file -> DatasetSource. Texts come from `classes_file`, else from the categories
    (LVIS `synonyms`; Objects365 names like 'cabinet/shelf' split into synonyms). `data`: the file, already parsed."""
    problems = problems if problems is not None else ProblemLog()
    ann_file, images_dir = Path(ann_file), Path(images_dir)
    data = data if data is not None else read_coco_json(ann_file)
    categories = categories_of(data, ann_file)
    if classes_file is not None:
        class_texts = load_class_texts(classes_file)
        check_class_count(class_texts, len(categories), str(classes_file), str(ann_file))
    else:
        class_texts = texts_from_categories(categories, str(ann_file))
    label_of = {category["id"]: label for label, category in enumerate(categories)}

    entries, index_of = read_image_entries(data, str(ann_file), images_dir, problems)
    table = BoxTable()
    for position, ann, image_index in annotation_objects(data, str(ann_file), index_of, problems):
        where = f"{ann_file} annotation {ann.get('id', position)}"
        label = label_of.get(ann.get("category_id")) if is_id(ann.get("category_id")) else None
        if label is None:
            problems.add("unknown_category", str(ann_file), f"annotation {ann.get('id', position)} has category id "
                         f"{ann.get('category_id')!r}, which is not in 'categories'; box dropped")
            continue
        xywh = valid_xywh(ann, position, str(ann_file), problems)
        if xywh is None:
            continue
        table.image_index.append(image_index)
        table.xywh.append(xywh)
        table.label.append(label)
        table.where.append(where)
        if with_masks:
            table.polygons.append(polygons_of(ann))

    records = [_record(entry, images_dir, boxes, labels, polygons, class_texts)
               for entry, (boxes, labels, polygons) in zip(entries, group_boxes(table, entries, problems, with_masks))]
    return DatasetSource(name=ann_file.name, kind=kind, records=records, class_texts=class_texts,
                         category_ids=[c["id"] for c in categories], ann_file=str(ann_file))


def categories_of(data: dict, ann_file: str | Path) -> list[dict]:
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories:
        raise DatasetError(f"{ann_file}: has no 'categories' list; a detection file needs one entry per class")
    seen = set()
    for position, category in enumerate(categories):
        if not isinstance(category, dict) or not is_id(category.get("id")) or not isinstance(category.get("name"), str):
            raise DatasetError(f"{ann_file}: categories[{position}] needs an 'id' (a string or an integer of at most "
                               "64 bits) and a 'name' string")
        if category["id"] in seen:
            raise DatasetError(f"{ann_file}: category id {category['id']!r} appears twice in 'categories'")
        seen.add(category["id"])
    return categories


def _record(entry: ImageEntry, images_dir: Path, boxes, labels, polygons, class_texts) -> ImageRecord:
    return ImageRecord(file=str(images_dir / entry.file), width=entry.width, height=entry.height, boxes=boxes,
                       labels=labels, class_texts=class_texts, image_id=entry.image_id, polygons=polygons,
                       neg_category_ids=tuple(entry.info.get("neg_category_ids", ())),
                       not_exhaustive_category_ids=tuple(entry.info.get("not_exhaustive_category_ids", ())))
