"""Writing files: one atomic write (temp file + rename, so a kill never leaves half a file) and one check that an
output path can be written, made before any work starts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from yoloworld.errors import InputError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(temp_path)`, then rename the temp file onto `path` (folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temp name keeps the suffix: some writers (np.save, cv2.imwrite) choose the format from it
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """torch.save, atomically."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data, indent: int | None = None) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def check_output(path: str | os.PathLike | None, flag: str, folder: bool = False) -> Path | None:
    """Raise one InputError naming `flag` when `path` cannot be written: a file where a folder is needed (or the
    reverse), a parent that is a file, or no write permission. Folders that do not exist yet are fine."""
    if path is None:
        return None
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise InputError(f"{flag} {path}: is a file, expected a folder")
        if not folder and path.is_dir():
            raise InputError(f"{flag} {path}: is a folder, expected a file path")
    existing = path if (folder and path.is_dir()) else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{flag} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: no permission to write in {existing}")
    return path


__all__ = ["atomic_write", "atomic_save", "atomic_write_text", "write_json", "check_output"]
