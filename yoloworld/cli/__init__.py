"""`yoloworld` command line: one module per command, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from yoloworld import __version__
from yoloworld.errors import YOLOWorldError

# command name -> module under yoloworld.cli; each is imported to build the parser, and loads heavy libraries
# (torch, the models) only inside its `run`, where it can
COMMANDS = {
    "predict": "predict",
    "calibrate": "calibrate",
    "track": "track",
    "val": "val",
    "train": "train",
    "data": "data",
    "convert": "convert",
    "texts": "texts",
    "embed": "embed",
    "reparam": "reparam",
    "wise-ft": "wise_ft",
    "export": "export",
    "label": "label",
    "app": "app",
    "serve": "serve",
}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the flag (and exit code 2), like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(available: dict[str, object]) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="yoloworld", description="Open-vocabulary detection with YOLO-World.",
                           epilog="Add --debug to any command to see the full traceback of an error.")
    parser.add_argument("--version", action="version", version=f"yoloworld {__version__}")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    available = _load_commands()
    args = build_parser(available).parse_args(argv)
    if not debug:  # OpenCV's and FFmpeg's own log lines only with --debug: the user sees our lines
        from yoloworld.streams import quiet_video_logs

        quiet_video_logs()
    try:
        return int(available[args.command].run(args) or 0)
    except YOLOWorldError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours, not a bad input: one line, the traceback on request
        if debug:
            raise
        print(f"internal error in `yoloworld {args.command}`: {type(exc).__name__}: {_first_line(exc)}; rerun with "
              "--debug for the traceback and please report it", file=sys.stderr)
        return 1


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "(no message)"
