"""`yoloworld` command line: one module per command, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from yoloworld.errors import YOLOWorldError

# command name -> module under yoloworld.cli; each is imported to build the parser, and loads heavy libraries
# (torch, the models) only inside its `run`, where it can
COMMANDS = {
    "predict": "predict",
    "val": "val",
    "train": "train",
    "data": "data",
    "convert": "convert",
    "texts": "texts",
    "embed": "embed",
    "reparam": "reparam",
    "export": "export",
}


def build_parser(available: dict[str, object]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yoloworld", description="Open-vocabulary detection with YOLO-World.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in available.values():
        module.add_parser(sub)
    return parser


def _load_commands() -> dict[str, object]:
    available = {}
    for name, module_name in COMMANDS.items():
        try:
            available[name] = importlib.import_module(f"yoloworld.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"yoloworld.cli.{module_name}":
                raise
    return available


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    available = _load_commands()
    args = build_parser(available).parse_args(argv)
    try:
        return int(available[args.command].run(args) or 0)
    except YOLOWorldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
