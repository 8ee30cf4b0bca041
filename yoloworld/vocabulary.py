"""Class vocabularies: a class is a text or a list of synonyms; the padding prompt is added, never reported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from yoloworld.errors import InputError

if TYPE_CHECKING:
    import torch

PADDING_PROMPT = " "  # what the released models saw as padding; '' tokenizes the same


@dataclass
class Vocabulary:
    classes: list[list[str]]  # synonyms per class
    padded: bool  # a padding prompt was appended to `texts`

    @classmethod
    def build(cls, classes, padding: bool = True) -> "Vocabulary":
        normalised = normalise_classes(classes)
        has_padding = any(t.strip() == "" for group in normalised for t in group)
        return cls(normalised, padding and not has_padding)

    @property
    def names(self) -> list[str]:
        return [group[0] for group in self.classes]

    @property
    def texts(self) -> list[str]:
        """Flat text list fed to the text encoder (and the network), padding prompt last."""
        flat = [t for group in self.classes for t in group]
        return flat + [PADDING_PROMPT] if self.padded else flat

    def groups(self) -> torch.Tensor:
        """(C, S) indices into `texts` per class (-1 = unused slot); texts outside it are never reported."""
        import torch

        width = max(len(g) for g in self.classes)
        index = torch.full((len(self.classes), width), -1, dtype=torch.long)
        start = 0
        for row, group in enumerate(self.classes):
            index[row, :len(group)] = torch.arange(start, start + len(group))
            start += len(group)
        return index


def normalise_classes(classes) -> list[list[str]]:
    """Accept ["a", ["b", "b2"], ...] or a "a,b|b2" string; reject empty lists and non-text entries."""
    if isinstance(classes, str):
        classes = parse_class_string(classes)
    if not isinstance(classes, (list, tuple)) or not classes:
        raise InputError("the class list is empty: give at least one class, e.g. --classes \"person,car\"")
    normalised = []
    for entry in classes:
        group = [entry] if isinstance(entry, str) else entry
        if not isinstance(group, (list, tuple)) or not group or not all(isinstance(t, str) for t in group):
            raise InputError(f"class entry {entry!r} is not a text or a non-empty list of texts")
        normalised.append([str(t) for t in group])
    return normalised


def parse_class_string(text: str) -> list[list[str]]:
    """"person, car|automobile, dog" -> [["person"], ["car", "automobile"], ["dog"]]; a JSON list
    ('["person", ["car", "automobile"]]') is read as JSON. Semicolons are refused: they look like separators."""
    stripped = text.strip()
    if stripped.startswith("["):
        import json

        try:
            return normalise_classes(json.loads(stripped))
        except json.JSONDecodeError as exc:
            raise InputError(f"classes {text!r}: looks like a JSON list but is not valid JSON ({exc.msg}); "
                             "use e.g. '[\"person\", [\"car\", \"automobile\"]]' or \"person,car|automobile\"") from None
    if ";" in text:
        raise InputError(f"classes {text!r}: separate classes with ',' and synonyms with '|' (not ';')")
    classes = []
    for item in text.split(","):
        synonyms = [s.strip() for s in item.split("|") if s.strip()]
        if synonyms:
            classes.append(synonyms)
    if not classes:
        raise InputError(f"no class names in {text!r}: use e.g. \"person,car|automobile,dog\"")
    return classes


def load_class_file(path: str | Path) -> list[list[str]]:
    """Official class-text JSON (a list of synonym lists), or a .txt file with one class per line."""
    from yoloworld.data.class_texts import load_class_texts

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: class file not found")
    if path.suffix.lower() != ".txt":
        return load_class_texts(path)
    from yoloworld.readers import read_lines

    lines = read_lines(path, "class list (one class a line)", InputError)
    classes = [[s.strip() for s in line.split("|") if s.strip()] for line in lines]
    if not any(classes):
        raise InputError(f"{path}: the class list is empty")
    return normalise_classes([group for group in classes if group])
