"""What a command wrote in its output folder, so that a rerun replaces and `--overwrite` removes only that.

Every command that writes into a folder records each file there *before* writing it, in
`FOLDER/.yoloworld-outputs.json` ({"files": {"relative/path": "what wrote it"}}, written atomically). A file that
is in the folder but not in the record is the user's: it is never replaced nor removed. Removal never follows a
symlink out of the folder, and an output folder that is, holds or lies inside one of the command's sources is
refused before any work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from yoloworld.errors import InputError
from yoloworld.files import check_output, write_json

MANIFEST_NAME = ".yoloworld-outputs.json"


class OutputFolder:
    """The record of the files yoloworld wrote in `folder`; `flag` names the folder in error messages."""

    def __init__(self, folder: str | os.PathLike, flag: str = "--out"):
        self.folder = Path(folder)
        self.flag = flag
        self.manifest = self.folder / MANIFEST_NAME
        self.files = self._read()

    def _read(self) -> dict[str, str]:
        if not self.manifest.is_file():
            return {}
        try:
            data = json.loads(self.manifest.read_text(encoding="utf-8"))
            files = data["files"]
            if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
                raise TypeError
            return {self._relative(name): kind for name, kind in files.items()}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(f"{self.manifest}: damaged record of yoloworld's outputs; remove it only if this folder "
                             f"holds nothing of yours, or choose another {self.flag}") from None

    def _relative(self, name) -> str:
        """A record key checked: a relative path inside the folder (a damaged or hostile record is refused)."""
        rel = PurePosixPath(name)
        if not rel.parts or ".." in rel.parts or rel.is_absolute() or str(rel) in (".", MANIFEST_NAME):
            raise ValueError(f"{name}: not a file inside {self.folder}")
        return str(rel)

    def key(self, path: str | os.PathLike) -> str:
        """The record key of `path`, a path inside the folder (as `folder / name`)."""
        return self._relative(Path(os.path.relpath(os.path.abspath(path), os.path.abspath(self.folder))).as_posix())

    def kinds(self) -> set[str]:
        return set(self.files.values())

    def claim(self, paths: Iterable[str | os.PathLike], kind: str, replace_kinds: bool = False) -> list[Path]:
        """Record `paths` as written by `kind` before they are written. Refused (one InputError, nothing recorded):
        a path already there that yoloworld did not write; one that an output of another kind wrote, unless
        `replace_kinds`; one whose folder is a symlink leading out of the output folder."""
        paths = list(paths)
        self.check_inside(paths)
        names = [self.key(p) for p in paths]
        for name in names:
            target = self.folder / name
            if name not in self.files and (target.exists() or target.is_symlink()):
                raise InputError(f"{target}: already there and yoloworld did not write it (not in {MANIFEST_NAME}); "
                                 f"move it away or choose another {self.flag}")
            if self.files.get(name, kind) != kind and not replace_kinds:
                raise InputError(f"{target}: holds an earlier output of another kind ({self.files[name]}); pass "
                                 f"--overwrite to replace it, or choose another {self.flag}")
        new = {name: kind for name in names if self.files.get(name) != kind}
        if new:
            self.files.update(new)
            self._save()
        return [self.folder / name for name in names]

    def check_inside(self, paths: Iterable[str | os.PathLike]) -> None:
        """One InputError for a path whose folder is a symlink leading out of the output folder (checked before any
        work whose results would go there)."""
        root = Path(os.path.realpath(self.folder))
        for path in paths:
            target = self.folder / self.key(path)
            if not _inside(root, target.parent):
                raise InputError(f"{target}: would be written through a link leading out of {self.folder}; remove "
                                 f"the link or choose another {self.flag}")

    def adopt(self, paths: Iterable[str | os.PathLike], kind: str) -> None:
        """Record files an earlier run of `kind` wrote before output records existed (its own record, such as
        `label`'s ledger, names them); links and paths through a link out of the folder are left out."""
        root = Path(os.path.realpath(self.folder))
        found = {self.key(p): kind for p in map(Path, paths)
                 if p.is_file() and not p.is_symlink() and _inside(root, p.parent)}
        if found:
            self.files.update(found)
            self._save()

    def remove(self, kinds: Iterable[str] | None = None) -> int:
        """Remove the recorded files (of `kinds`, or all) and the folders they leave empty; returns the count."""
        wanted = None if kinds is None else set(kinds)
        names = [name for name, kind in self.files.items() if wanted is None or kind in wanted]
        removed = 0
        for name in names:
            removed += _remove_inside(self.folder, name)
            del self.files[name]
        for name in sorted(names, key=lambda n: -n.count("/")):
            _prune_empty(self.folder, PurePosixPath(name).parent)
        if names:
            self._save()
        return removed

    def _save(self) -> None:
        if not self.files and not self.manifest.exists():
            return
        try:
            write_json(self.manifest, {"written_by": "yoloworld", "files": dict(sorted(self.files.items()))}, indent=0)
        except OSError as exc:  # a read-only folder, a parent that is a file: check_output names which
            check_output(self.folder, self.flag, folder=True)
            raise InputError(f"{self.flag} {self.folder}: cannot write there ({exc.strerror or exc})") from None


def _inside(root: Path, path: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents


def _remove_inside(folder: Path, name: str) -> int:
    """Unlink folder/name if it is a file or link whose folder really is inside `folder` (never a link's target)."""
    target = folder / name
    if not _inside(Path(os.path.realpath(folder)), target.parent):
        return 0  # a folder on the way is a link out of the output folder: not ours to touch
    if target.is_symlink() or target.is_file():
        target.unlink()
        return 1
    return 0


def _prune_empty(folder: Path, rel: PurePosixPath) -> None:
    root = Path(os.path.realpath(folder))
    while rel.parts:
        path = folder / rel
        if path.is_symlink() or not path.is_dir() or not _inside(root, path) or any(path.iterdir()):
            return
        path.rmdir()
        rel = rel.parent


def claim_files(paths: Iterable[str | os.PathLike], kind: str, flag: str = "--out",
                replace_kinds: bool = False) -> None:
    """`OutputFolder.claim` for single files that may lie in several folders (each folder keeps its record)."""
    by_folder: dict[Path, list[Path]] = {}
    for path in map(Path, paths):
        by_folder.setdefault(path.parent, []).append(path)
    for folder, files in by_folder.items():
        OutputFolder(folder, flag).claim(files, kind, replace_kinds)


def check_apart(out: str | os.PathLike, sources: Iterable[str | os.PathLike], flag: str = "--out") -> None:
    """One InputError when the output folder `out` is, holds or lies inside one of `sources` (files or folders)."""
    real_out = Path(os.path.realpath(out))
    for source in sources:
        real = Path(os.path.realpath(source))
        if real == real_out or real in real_out.parents or real_out in real.parents:
            where = "is" if real == real_out else "lies inside" if real in real_out.parents else "holds"
            raise InputError(f"{flag} {out}: {where} the source {source}; write outputs to a folder apart from "
                             "your inputs")


__all__ = ["MANIFEST_NAME", "OutputFolder", "check_apart", "claim_files"]
