"""`yoloworld convert yolo2coco DIR`: a YOLO txt dataset (every split found) to COCO JSON files."""

from __future__ import annotations

import argparse

from yoloworld.data.class_texts import write_class_texts
from yoloworld.data.convert import yolo_to_coco
from yoloworld.data.problems import ProblemLog
from yoloworld.data.yolo_format import find_yolo_splits
from yoloworld.files import check_output


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert datasets between formats")
    formats = parser.add_subparsers(dest="convert_command", required=True)
    yolo = formats.add_parser("yolo2coco", help="YOLO txt dataset (images/, labels/, classes.txt or data.yaml) "
                              "to COCO JSON, one file per split")
    yolo.add_argument("source", help="dataset folder (one split, or train/val/test inside) or its data.yaml")
    yolo.add_argument("--out", help="output JSON for one split (default DIR/annotations.json); with several "
                      "splits a folder (default DIR/annotations/<split>.json) or FILE.json -> FILE_<split>.json")
    yolo.add_argument("--texts", help="also write the class-text JSON (one synonym list per class) here")


def run(args: argparse.Namespace) -> int:
    check_output(args.texts, "--texts")
    problems = ProblemLog()
    written = yolo_to_coco(args.source, args.out, problems)
    for line in problems.lines():
        print(f"warning: {line}")
    if len(problems):
        print(problems.summary())
    for split in written:
        print(f"{split.split}: {split.images} images, {split.boxes} boxes -> {split.path} "
              f"(train with --ann {split.path} --images {split.images_root})")
    if args.texts:
        _, names = find_yolo_splits(args.source)
        write_class_texts([[name] for name in names], args.texts)
        print(f"class texts: {args.texts} ({len(names)} classes)")
    return 0
