"""Class-text JSON files: a list with one list of synonyms per category, in category order.

    [["aerosol can", "spray can"], ["air conditioner"], ...]

A malformed file is the classic cause of a training loss stuck at 0 (a flat list of names is read as
lists of characters by the official code), so every shape error is fatal with a message saying the fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from yoloworld.errors import DatasetError
from yoloworld.readers import read_json

from .records import ClassTexts

EXAMPLE = '[["person"], ["bicycle", "bike"]]'


def validate_class_texts(data: object, name: str) -> ClassTexts:
    """Check the shape of parsed class texts; returns them as lists of stripped strings."""
    if not isinstance(data, list) or not data:
        raise DatasetError(f"{name}: expected a non-empty JSON list of synonym lists like {EXAMPLE}")
    texts = []
    for index, entry in enumerate(data):
        if isinstance(entry, str):
            raise DatasetError(f"{name}: entry {index} is the string {entry!r}, expected a list of synonyms like "
                               f"[{json.dumps(entry)}]; write the file as {EXAMPLE} (yoloworld texts can)")
        if not isinstance(entry, list) or not entry:
            raise DatasetError(f"{name}: entry {index} is {json.dumps(entry)[:60]}, expected a non-empty list of "
                               f"synonyms like {EXAMPLE}")
        synonyms = []
        for text in entry:
            if not isinstance(text, str) or not text.strip():
                raise DatasetError(f"{name}: entry {index} holds {json.dumps(text)[:60]}; every synonym must be a "
                                   "non-empty string ('' is reserved for padding)")
            synonyms.append(text.strip())
        texts.append(synonyms)
    return texts


def load_class_texts(path: str | Path) -> ClassTexts:
    return validate_class_texts(read_json(path, "class-text file"), str(path))


def check_class_count(texts: ClassTexts, num_categories: int, texts_name: str, ann_name: str) -> None:
    if len(texts) != num_categories:
        raise DatasetError(
            f"{texts_name}: has {len(texts)} synonym lists but {ann_name} has {num_categories} categories; "
            f"write one list per category in category order (yoloworld texts --coco {ann_name} --out FILE)")


def clean_name(name: str) -> str:
    """LVIS-style name -> text: 'yoke_(animal_equipment)' -> 'yoke animal equipment'."""
    return re.sub(r"\s+", " ", re.sub(r"[_()]", " ", name)).strip()


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(text for text in texts if text))


def check_synonyms(category: dict, position: int, source: str) -> None:
    """LVIS `synonyms`, where given, are a list of texts: a string would be read letter by letter, a number
    taken as a name."""
    synonyms = category.get("synonyms")
    if synonyms is not None and (not isinstance(synonyms, list)
                                 or not all(isinstance(s, str) and s.strip() for s in synonyms)):
        raise DatasetError(f"{source}: categories[{position}] 'synonyms' is {json.dumps(synonyms)[:60]}; expected a "
                           'list of non-empty strings like ["aerosol_can", "spray_can"]')


def texts_from_categories(categories: list[dict], source: str = "the annotation file") -> ClassTexts:
    """COCO/Objects365 categories -> class texts; 'cabinet/shelf' gives two synonyms, LVIS `synonyms` are used."""
    texts = []
    for position, category in enumerate(categories):
        check_synonyms(category, position, source)
        if category.get("synonyms"):
            synonyms = _unique([clean_name(s) for s in category["synonyms"]])
        else:
            synonyms = _unique([clean_name(part) for part in str(category["name"]).split("/")])
        texts.append(synonyms or [str(category["name"])])
    return texts


def texts_from_names(names: list[str]) -> ClassTexts:
    texts = [[name.strip()] for name in names if name.strip()]
    if not texts:
        raise DatasetError("no class names given; pass names like: person bicycle car")
    return texts


def write_class_texts(texts: ClassTexts, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(texts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
