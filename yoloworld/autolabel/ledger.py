"""The record of finished images in an auto-labelled folder, so a crashed or stopped run continues where it was.

Each image is appended as one JSON line and flushed once its copy is in place; a line cut short by a kill is
ignored on the next run (that image is labelled again). The settings of the first run are kept beside it: a run
with other classes or thresholds would mix two labellings, so it is refused.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from yoloworld.errors import InputError
from yoloworld.files import atomic_write_text, write_json

logger = logging.getLogger(__name__)
LEDGER_NAME = "labelled.jsonl"
SETTINGS_NAME = "label_settings.json"


class Ledger:
    def __init__(self, out: Path):
        self.path = out / LEDGER_NAME
        self.settings_path = out / SETTINGS_NAME

    def start(self, settings: dict) -> dict[str, dict]:
        """Entries already done (source -> entry); writes `settings` on a first run, checks them on a resume."""
        if self.settings_path.exists():
            previous = json.loads(self.settings_path.read_text(encoding="utf-8"))
            if previous != settings:
                changed = sorted(k for k in settings.keys() | previous.keys() if settings.get(k) != previous.get(k))
                raise InputError(f"{self.path.parent}: was labelled with other settings ({', '.join(changed)} differ); "
                                 "rerun with the same flags to continue, or pass --overwrite to start over")
        else:
            write_json(self.settings_path, settings, indent=1)
        return self.read()

    def read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        text = self.path.read_text(encoding="utf-8")
        if not text.endswith("\n"):  # cut short by a kill: drop the partial line, or the next append would join it
            text = text[: text.rfind("\n") + 1]
            atomic_write_text(self.path, text)
        done = {}
        for number, line in enumerate(text.splitlines(), 1):
            try:
                entry = json.loads(line)
                done[entry["source"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                logger.warning("%s line %d: incomplete (an interrupted run); that image is labelled again",
                               self.path, number)
        return done

    def append(self, entry: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            handle.flush()
