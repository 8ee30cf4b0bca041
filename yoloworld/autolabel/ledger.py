"""The record of finished images in an auto-labelled folder, so a crashed or stopped run continues where it was.

Each image is appended as one JSON line and flushed once its copy is in place; a line cut short by a kill is
ignored on the next run (that image is labelled again). A damaged line (edited by hand, another tool's) is skipped
with one warning: its image, if any, is labelled again. The settings of the first run are kept beside it: a run
with other classes or thresholds would mix two labellings, so it is refused.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from yoloworld.errors import InputError
from yoloworld.files import atomic_write, write_json

logger = logging.getLogger(__name__)
LEDGER_NAME = "labelled.jsonl"
SETTINGS_NAME = "label_settings.json"
SPLITS = ("train", "val")


class Ledger:
    def __init__(self, out: Path):
        self.path = out / LEDGER_NAME
        self.settings_path = out / SETTINGS_NAME
        self.num_classes: int | None = None  # known once started: class indices are checked against it
        self._warned = False  # a damaged line is reported once per run, not at every read

    def start(self, settings: dict) -> dict[str, dict]:
        """Entries already done (source -> entry); writes `settings` on a first run, checks them on a resume."""
        self.num_classes = len(settings.get("classes", [])) or None
        if self.settings_path.exists() or self.settings_path.is_symlink():
            previous = self.read_settings()
            if previous != settings:
                changed = sorted(k for k in settings.keys() | previous.keys() if settings.get(k) != previous.get(k))
                raise InputError(f"{self.path.parent}: was labelled with other settings ({', '.join(changed)} differ); "
                                 "rerun with the same flags to continue, or pass --overwrite to start over")
        else:
            write_json(self.settings_path, settings, indent=1)
        return self.read()

    def read_settings(self) -> dict:
        try:
            previous = json.loads(self.settings_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            why = "not valid JSON" if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)) else \
                exc.strerror or type(exc).__name__
            raise InputError(f"{self.settings_path}: damaged labelling settings ({why}); remove it with "
                             f"{LEDGER_NAME} to start over, or choose another --out") from None
        if not isinstance(previous, dict) or not previous:
            raise InputError(f"{self.settings_path}: damaged labelling settings (expected a JSON object of settings); "
                             f"remove it with {LEDGER_NAME} to start over, or choose another --out")
        return previous

    def read(self, warn: bool = True) -> dict[str, dict]:
        """Every valid entry (source -> entry), in order; damaged lines are skipped with one warning."""
        if not self.path.exists():
            return {}
        if not self.path.is_file():
            raise InputError(f"{self.path}: is not a file (the record of labelled images); remove it or choose "
                             "another --out")
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # cut short by a kill: drop the partial line, or the next append joins it
            data = data[: data.rfind(b"\n") + 1]
            atomic_write(self.path, lambda tmp: tmp.write_bytes(data))
        done, names, damaged = {}, set(), []
        for number, line in enumerate(data.splitlines(), 1):
            problem = entry_problem(line, self.num_classes, names)
            if problem:
                damaged.append(f"line {number}: {problem}")
                continue
            entry = json.loads(line)
            done[entry["source"]] = entry
            names.add(entry["name"])
        if damaged and warn and not self._warned:
            self._warned = True
            more = f" (and {len(damaged) - 1} more damaged line(s))" if len(damaged) > 1 else ""
            logger.warning("warning: %s %s, skipped%s; any image it recorded is labelled again", self.path,
                           damaged[0], more)
        return done

    def append(self, entry: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            handle.flush()


def entry_problem(line: bytes, num_classes: int | None, names: set[str]) -> str | None:
    """Why a ledger line cannot be used (None when it can): the record of one labelled image."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not a JSON line"
    if not isinstance(entry, dict):
        return "not a JSON object"
    missing = [key for key in ("source", "name", "split", "width", "height", "boxes") if key not in entry]
    if missing:
        return f"missing {', '.join(missing)}"
    name = entry["name"]
    if not isinstance(entry["source"], str) or not entry["source"]:
        return "source is not a path"
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        return "name is not a plain file name"
    if name in names:
        return f"name {name!r} is used by an earlier line"
    if entry["split"] not in SPLITS:
        return f"split {entry['split']!r} is not train or val"
    if not all(_is_int(entry[key]) and entry[key] > 0 for key in ("width", "height")):
        return "width or height is not a positive integer"
    if not isinstance(entry["boxes"], list):
        return "boxes is not a list"
    for box in entry["boxes"]:
        problem = _box_problem(box, num_classes)
        if problem:
            return problem
    return None


def _box_problem(box, num_classes: int | None) -> str | None:
    if not isinstance(box, list) or len(box) != 6:
        return "a box is not [x1, y1, x2, y2, class, score]"
    if not all(_is_number(v) and math.isfinite(v) for v in box):
        return "a box holds a value that is not a finite number"
    x1, y1, x2, y2, class_id, _ = box
    if x2 < x1 or y2 < y1:
        return "a box has x2 < x1 or y2 < y1"
    if not float(class_id).is_integer() or class_id < 0 or (num_classes is not None and class_id >= num_classes):
        return f"class index {class_id} is not a class of this labelling" + (
            f" (0 to {num_classes - 1})" if num_classes else "")
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
