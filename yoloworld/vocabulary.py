"""Class vocabularies: a class is a prompt (a text, a `VisualPrompt` or an `Embedding`, see `yoloworld.prompts`)
or a list of synonymous prompts; the padding prompt is added, never reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from yoloworld.errors import InputError
from yoloworld.prompts import PROMPT_TYPES, Embedding, prompt_name

if TYPE_CHECKING:
    import torch

PADDING_PROMPT = " "  # what the released models saw as padding; '' tokenizes the same


@dataclass
class Vocabulary:
    classes: list[list]  # synonymous prompts per class (texts, VisualPrompt, Embedding)
    padded: bool  # a padding prompt was appended to `texts`
    padding: object = PADDING_PROMPT  # the padding prompt (an Embedding when an embeddings file carries it)
    negatives: list = field(default_factory=list)  # prompts scored with the classes, never reported

    @classmethod
    def build(cls, classes, padding: bool = True, negatives=None) -> "Vocabulary":
        vocabulary = cls._build(classes, padding)
        vocabulary.negatives = normalise_negatives(negatives, vocabulary)
        return vocabulary

    @classmethod
    def _build(cls, classes, padding: bool) -> "Vocabulary":
        normalised = normalise_classes(classes)
        rows = [g for g in normalised if len(g) == 1 and isinstance(g[0], Embedding) and not g[0].name.strip()]
        if rows:  # the padding row of an embeddings file (`yoloworld embed --padding`): the padding, not a class
            kept = [g for g in normalised if not any(g is row for row in rows)]
            if not kept:
                raise InputError("the class list holds only a padding embedding: give at least one class")
            return cls(kept, True, rows[-1][0])
        if is_padding_text(normalised[-1]):  # the official texts end with the padding prompt ' '
            # padding=False keeps it as given, a class like any other, as the official evaluation does
            return cls(normalised[:-1], True, normalised[-1][0]) if padding else cls(normalised, False)
        return cls(normalised, padding)

    @property
    def names(self) -> list[str]:
        return [prompt_name(group[0]) for group in self.classes]

    @property
    def texts(self) -> list:
        """Flat prompt list fed to the encoders (and the network), padding prompt last; only texts for a text
        vocabulary."""
        flat = [t for group in self.classes for t in group] + self.negatives
        return flat + [self.padding] if self.padded else flat

    def negative_columns(self) -> slice:
        """Where the negatives sit in `texts`: after the class prompts."""
        start = sum(len(group) for group in self.classes)
        return slice(start, start + len(self.negatives))

    def stored_classes(self) -> list[list[str]]:
        """`classes` with every prompt by its name: what metadata (JSON, weights-only checkpoints) can hold."""
        return [[prompt_name(t) for t in group] for group in self.classes]

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


def normalise_classes(classes) -> list[list]:
    """Accept ["a", ["b", "b2"], VisualPrompt(...), ...] or a "a,b|b2" string; reject empty lists and entries
    that are not prompts."""
    if isinstance(classes, str):
        classes = parse_class_string(classes)
    if not isinstance(classes, (list, tuple)) or not classes:
        raise InputError("the class list is empty: give at least one class, e.g. --classes \"person,car\"")
    normalised = []
    for entry in classes:
        group = [entry] if isinstance(entry, PROMPT_TYPES) else entry
        if not isinstance(group, (list, tuple)) or not group or not all(isinstance(t, PROMPT_TYPES) for t in group):
            raise InputError(f"class entry {entry!r} is not a text, a VisualPrompt or a non-empty list of them")
        padding_last = len(normalised) == len(classes) - 1 and is_padding_text(group) and len(classes) > 1
        if any(isinstance(t, str) and not t.strip() for t in group) and not padding_last:
            raise InputError(f"class {len(normalised) + 1} ({entry!r}) is blank: give every class a name (the padding "
                             "prompt is added for you; padding=False leaves it out)")
        normalised.append(list(group))
    return normalised


def normalise_negatives(negatives, vocabulary: Vocabulary) -> list:
    """Negative prompts as a flat list ("wolf,toy dog" or ["wolf", "toy dog"]); a negative that is also a class's
    prompt is refused (it would claim that class's own boxes)."""
    if negatives is None or (isinstance(negatives, (list, tuple)) and not negatives):
        return []
    groups = parse_class_string(negatives, "negatives") if isinstance(negatives, str) else normalise_classes(negatives)
    flat = [prompt for group in groups for prompt in group]
    names = {prompt_name(prompt) for group in vocabulary.classes for prompt in group}
    clash = [prompt_name(p) for p in flat if prompt_name(p) in names]
    if clash:
        raise InputError(f"negative {clash[0]!r} is also a class: a negative names what to exclude, not a class")
    return flat


def is_padding_text(group) -> bool:
    """A class of one blank text: the padding prompt, when it comes last."""
    return isinstance(group, (list, tuple)) and len(group) == 1 and isinstance(group[0], str) and not group[0].strip()


def parse_class_string(text: str, flag: str = "classes") -> list[list[str]]:
    """"person, car|automobile, dog" -> [["person"], ["car", "automobile"], ["dog"]]; a JSON list
    ('["person", ["car", "automobile"]]') is read as JSON. Semicolons are refused: they look like separators.
    `flag` names the setting in messages (`--classes` on the command line)."""
    stripped = text.strip()
    if stripped.startswith("["):
        import json

        try:
            return normalise_classes(json.loads(stripped))
        except json.JSONDecodeError as exc:
            raise InputError(f"{flag} {text!r}: looks like a JSON list but is not valid JSON ({exc.msg}); "
                             "use e.g. '[\"person\", [\"car\", \"automobile\"]]' or \"person,car|automobile\"") from None
    if ";" in text:
        raise InputError(f"{flag} {text!r}: separate classes with ',' and synonyms with '|' (not ';')")
    classes = []
    for item in text.split(","):
        synonyms = [s.strip() for s in item.split("|") if s.strip()]
        if synonyms:
            classes.append(synonyms)
    if not classes:
        raise InputError(f"{flag} {text!r}: no class names; use e.g. \"person,car|automobile,dog\"")
    return classes


def load_class_file(path: str | Path) -> list[list]:
    """Official class-text JSON (a list of synonym lists), a .txt file with one class per line, or an embeddings
    .npy from `yoloworld embed` (one `Embedding` class per row, named by the note beside it)."""
    from yoloworld.data.class_texts import load_class_texts

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: class file not found")
    if path.suffix.lower() == ".npy":
        from yoloworld.prompts import load_embedding_classes

        return load_embedding_classes(path)
    if path.suffix.lower() != ".txt":
        return load_class_texts(path)
    from yoloworld.readers import read_lines

    lines = read_lines(path, "class list (one class a line)", InputError)
    if len(lines) == 1 and "," in lines[0]:  # one line "person,car|automobile": the --classes syntax
        return parse_class_string(lines[0], str(path))
    for number, line in enumerate(lines, start=1):
        if "," in line or ";" in line:
            raise InputError(f"{path}: line {number} ({line[:40]!r}) holds a ',' or ';': write one class a line "
                             "('|' between synonyms), or the whole list on one line as in --classes")
    classes = [[s.strip() for s in line.split("|") if s.strip()] for line in lines]
    if not any(classes):
        raise InputError(f"{path}: the class list is empty")
    return normalise_classes([group for group in classes if group])
