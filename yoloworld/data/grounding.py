"""Readers whose classes are per-image phrases: MDETR-style grounding (GQA, Flickr30k) and CC3M pseudo-labels.

Grounding (`final_mixed_train_no_coco.json`, `final_flickr_separateGT_train.json`): every image entry has a
`caption`; every box has `tokens_positive`, a list of [start, end) character spans of that caption. The box's
phrase is its spans joined by a space, and the image's unique phrases (in order of first mention) are its
classes, as in the official YOLOv5MixedGroundingDataset. CC3M pseudo-labels: the phrase is the box's `tokens`.
"""

from __future__ import annotations

from pathlib import Path

from yoloworld.errors import DatasetError

from .annotations import (
    BoxTable,
    annotation_objects,
    group_boxes,
    read_coco_json,
    read_image_entries,
    valid_xywh,
)
from .problems import ProblemLog
from .records import DatasetSource, ImageRecord


def phrase_of(caption: str, spans: object) -> str | None:
    """Caption spans joined by a space, or None when a span is malformed or leaves the caption."""
    if not isinstance(spans, list) or not spans:
        return None
    parts = []
    for span in spans:
        if (not isinstance(span, (list, tuple)) or len(span) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)):
            return None
        start, end = span
        if not 0 <= start < end <= len(caption):
            return None
        parts.append(caption[start:end])
    return " ".join(parts)


def read_grounding(ann_file: str | Path, images_dir: str | Path, problems: ProblemLog | None = None,
                   data: dict | None = None) -> DatasetSource:
    def phrase(ann: dict, caption: str | None, position: int) -> str | None:
        if caption is None:
            problems.add("span_outside_caption", str(ann_file), f"annotation {ann.get('id', position)}: its image has "
                         "no 'caption'; box dropped")
            return None
        text = phrase_of(caption, ann.get("tokens_positive"))
        if text is None or not text.strip():
            problems.add("span_outside_caption", str(ann_file), f"annotation {ann.get('id', position)}: "
                         f"tokens_positive {str(ann.get('tokens_positive'))[:60]} is not a list of [start, end] "
                         f"spans inside its {len(caption)}-character caption; box dropped")
            return None
        return text.strip()

    problems = problems if problems is not None else ProblemLog()
    data = data if data is not None else read_coco_json(ann_file)
    return _read_phrases(Path(ann_file), data, images_dir, "grounding", phrase, problems)


def read_cc3m(ann_file: str | Path, images_dir: str | Path, problems: ProblemLog | None = None,
              data: dict | None = None) -> DatasetSource:
    def phrase(ann: dict, caption: str | None, position: int) -> str | None:
        text = ann.get("tokens")
        if not isinstance(text, str) or not text.strip():
            text = category_names.get(ann.get("category_id"))
        if not isinstance(text, str) or not text.strip():
            problems.add("unknown_category", str(ann_file), f"annotation {ann.get('id', position)} has no 'tokens' "
                         "text and no known category name; box dropped")
            return None
        return text.strip()

    problems = problems if problems is not None else ProblemLog()
    data = data if data is not None else read_coco_json(ann_file)
    category_names = {c.get("id"): c.get("name") for c in data.get("categories") or [] if isinstance(c, dict)}
    return _read_phrases(Path(ann_file), data, images_dir, "cc3m", phrase, problems)


def _read_phrases(ann_file: Path, data: dict, images_dir, kind: str, phrase, problems: ProblemLog) -> DatasetSource:
    images_dir = Path(images_dir)
    entries, index_of = read_image_entries(data, str(ann_file), images_dir, problems)
    captions = [e.info.get("caption") if isinstance(e.info.get("caption"), str) else None for e in entries]
    if kind == "grounding" and entries and all(c is None for c in captions):
        raise DatasetError(f"{ann_file}: no image has a 'caption', so this is not an MDETR-style grounding file; "
                           "read it as kind 'coco' with a class-text file instead")

    phrases_per_image: list[dict[str, int]] = [{} for _ in entries]
    table = BoxTable()
    for position, ann, image_index in annotation_objects(data, str(ann_file), index_of, problems):
        text = phrase(ann, captions[image_index], position)
        if text is None:
            continue
        xywh = valid_xywh(ann, position, str(ann_file), problems)
        if xywh is None:
            continue
        labels = phrases_per_image[image_index]
        table.image_index.append(image_index)
        table.xywh.append(xywh)
        table.label.append(labels.setdefault(text, len(labels)))
        table.where.append(f"{ann_file} annotation {ann.get('id', position)}")

    records = []
    for entry, caption, phrases, (boxes, labels, _) in zip(entries, captions, phrases_per_image,
                                                            group_boxes(table, entries, problems, False)):
        records.append(ImageRecord(file=str(images_dir / entry.file), width=entry.width, height=entry.height,
                                   boxes=boxes, labels=labels, class_texts=[[p] for p in phrases],
                                   image_id=entry.image_id, caption=caption))
    return DatasetSource(name=ann_file.name, kind=kind, records=records, class_texts=[], ann_file=str(ann_file))
