"""`yoloworld texts`: write a class-text JSON (one synonym list per category, in category order)."""

from __future__ import annotations

import argparse

from yoloworld.data.annotations import read_coco_json
from yoloworld.data.class_texts import (
    texts_from_categories,
    texts_from_names,
    write_class_texts,
)
from yoloworld.data.coco import categories_of
from yoloworld.data.yolo_format import read_class_names
from yoloworld.files import check_output


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("texts", help="write a class-text JSON from COCO/LVIS categories or names")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--coco", help="COCO-style annotation file: category names ('a/b' gives two synonyms); "
                       "LVIS-style 'synonyms' are used when present")
    given.add_argument("--lvis", help="LVIS annotation file: each category's synonyms")
    given.add_argument("--names", nargs="+", help="class names, one class each")
    given.add_argument("--names-file", help="text file with one class name per line (or one comma-separated line)")
    parser.add_argument("--out", required=True, help="class-text JSON to write")


def run(args: argparse.Namespace) -> int:
    check_output(args.out, "--out")
    if args.coco or args.lvis:
        path = args.coco or args.lvis
        texts = texts_from_categories(categories_of(read_coco_json(path), path), str(path))
    elif args.names:
        texts = texts_from_names(args.names)
    else:
        texts = texts_from_names(read_class_names(args.names_file))
    write_class_texts(texts, args.out)
    synonyms = sum(len(t) for t in texts)
    print(f"wrote {args.out}: {len(texts)} classes, {synonyms} texts")
    return 0
