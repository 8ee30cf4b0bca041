"""Class prompts besides texts: reference images (`VisualPrompt`) and ready-made embeddings (`Embedding`).

A vocabulary entry is a text, a `VisualPrompt` or an `Embedding`; a class is one entry or a list of them
(synonyms: the best one's score wins). `encode_prompts` turns a flat entry list into (T, D) embeddings: texts
through the runtime's text encoder (in one call, so a text-only vocabulary is encoded exactly as before),
references through its image-prompt encoder, embeddings as they are.

    VisualPrompt("ref.jpg", box=(x1, y1, x2, y2), name="my mug")   # a box on a reference image
    VisualPrompt(["a.jpg", ("b.jpg", (10, 20, 200, 220))], name="mug")  # several references, averaged
    VisualPrompt("crops/mug/")                                      # every image of a folder; named "mug"
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from yoloworld.errors import InputError

BOX_SUFFIX = re.compile(r"^(?P<path>.+):(?P<box>[-+\d.eE]+(?:,[-+\d.eE]+){3})$")


class VisualPrompt:
    """A class given by example: reference images, each whole or a box (x1, y1, x2, y2 in its pixels) on it, or
    a folder of crops. Several references are averaged (raw CLIP embeddings, renormalised) into one class."""

    def __init__(self, source, box=None, name: str | None = None):
        """`source`: a path (image or folder), a BGR array or a PIL image; or a list of them and of
        (source, box) pairs. `name`: the class name (default: the first file's stem or folder's name)."""
        items = list(source) if isinstance(source, list) else [(source, box)]
        if isinstance(source, list) and box is not None:
            raise InputError("VisualPrompt: give the box with each reference, e.g. [(\"a.jpg\", (x1, y1, x2, y2))]")
        if not items:
            raise InputError("VisualPrompt: no reference images given")
        self.references = tuple(_reference(item) for item in items)
        self.name = str(name) if name is not None else _default_name(self.references[0][0])
        if not self.name.strip():
            raise InputError("VisualPrompt: the class name is empty")

    def __repr__(self) -> str:  # also the per-image vocabulary cache key: arrays by identity, never by a summary
        refs = ", ".join(f"{_describe(source)}{'' if box is None else list(box)}" for source, box in self.references)
        return f"VisualPrompt({self.name!r}: {refs})"


class Embedding:
    """A class given as a ready-made (D,) embedding, e.g. a row of a `yoloworld embed` file."""

    def __init__(self, vector, name: str):
        self.vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        self.name = str(name)
        if not np.isfinite(self.vector).all() or not np.abs(self.vector).sum():
            raise InputError(f"embedding {self.name!r}: holds NaN, inf or only zeros")

    def __repr__(self) -> str:
        return f"Embedding({self.name!r}, #{id(self.vector):x})"


PROMPT_TYPES = (str, VisualPrompt, Embedding)


def prompt_name(prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt.name


def _reference(item) -> tuple[object, tuple[float, ...] | None]:
    """`source` or `(source, box)` -> (source, box as four floats or None)."""
    source, box = item if isinstance(item, tuple) and len(item) == 2 else (item, None)
    if isinstance(source, (str, Path)) and Path(source).is_dir() and box is not None:
        raise InputError(f"{source}: a box needs one image, not a folder of crops")
    if box is None:
        return source, None
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{_describe(source)}: box {box!r} is not four numbers x1, y1, x2, y2")
    return source, values


def _default_name(source) -> str:
    if isinstance(source, (str, Path)):
        path = Path(source)
        return path.name if path.is_dir() else path.stem
    return "image prompt"


def _describe(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__} #{id(source):x}>"


# ---------------------------------------------------------------- reading references

def reference_images(prompt: VisualPrompt) -> list[tuple[str, np.ndarray, tuple | None]]:
    """(label, BGR image, box) per reference; a folder gives each of its images (whole)."""
    from yoloworld.images import as_bgr, list_images

    out = []
    for source, box in prompt.references:
        if isinstance(source, (str, Path)) and Path(source).is_dir():
            files = list_images(Path(source))
            if not files:
                raise InputError(f"{source}: folder of reference crops for {prompt.name!r} holds no images")
            out += [(str(f), as_bgr(f), None) for f in files]
        else:
            out.append((_describe(source), as_bgr(source), box))
    return out


def check_box(box, shape: tuple[int, ...], label: str) -> tuple[float, float, float, float]:
    """The reference box, or the whole image; a box outside the image or without pixels is a one-line error."""
    height, width = shape[:2]
    if box is None:
        return 0.0, 0.0, float(width), float(height)
    x1, y1, x2, y2 = box
    # a pixel of slack: annotation tools round box edges onto the border; the crop clips them to the image
    if x1 < -1 or y1 < -1 or x2 > width + 1 or y2 > height + 1:
        raise InputError(f"{label}: box {_box_text(box)} lies outside the {width}x{height} image "
                         "(x1,y1,x2,y2 in its pixels)")
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise InputError(f"{label}: box {_box_text(box)} is an empty crop (needs x2 > x1 and y2 > y1, at least "
                         "one pixel each way)")
    return box


def _box_text(box) -> str:
    return ",".join(f"{v:g}" for v in box)


def reference_crops(prompt: VisualPrompt, size: int):
    """(K, 3, size, size) float RGB crops in [0, 1] of the prompt's references (the encoder's input)."""
    import torch

    from yoloworld.models.image_prompt import crop_resized

    crops = []
    for label, image, box in reference_images(prompt):
        rgb = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).permute(2, 0, 1).float().div_(255)
        crops.append(crop_resized(rgb, check_box(box, image.shape, label), size))
    return torch.stack(crops)


def encode_visual_prompts(encoder, prompts: list[VisualPrompt], device=None):
    """(V, D) class embeddings from an `ImagePromptEncoder`: per prompt, its reference crops averaged."""
    import torch

    with torch.no_grad():
        return torch.stack([encoder.class_embedding(reference_crops(p, encoder.image_size).to(device or "cpu"))
                            for p in prompts])


# ---------------------------------------------------------------- the command line

def parse_visual_prompts(specs: list[str], flag: str = "--visual-prompt") -> list[VisualPrompt]:
    """CLI specs -> prompts, one per class name in first-seen order; a name given twice gets both references.

        NAME=IMAGE                   the whole image          NAME=IMAGE:x1,y1,x2,y2   a box on it
        NAME=FOLDER                  every image in FOLDER    FOLDER                   one class per subfolder
    """
    references: dict[str, list] = {}
    for spec in specs:
        if "=" not in spec:
            for name, folder in _class_folders(spec, flag):
                references.setdefault(name, []).append(str(folder))
            continue
        name, _, target = (part.strip() for part in spec.partition("="))
        if not name or not target:
            raise InputError(f"{flag} {spec!r}: use NAME=IMAGE[:x1,y1,x2,y2], NAME=FOLDER or a FOLDER of class folders")
        path, box = _split_box(target, flag, spec)
        if not Path(path).exists():
            raise InputError(f"{flag} {spec!r}: {path}: no such file or folder")
        references.setdefault(name, []).append((path, box))
    return [VisualPrompt(refs, name=name) for name, refs in references.items()]


def _split_box(target: str, flag: str, spec: str) -> tuple[str, tuple | None]:
    match = BOX_SUFFIX.match(target)
    if match is None or Path(target).exists():
        return target, None
    try:
        return match["path"], tuple(float(v) for v in match["box"].split(","))
    except ValueError:
        raise InputError(f"{flag} {spec!r}: the box is not four numbers x1,y1,x2,y2") from None


def _class_folders(spec: str, flag: str) -> list[tuple[str, Path]]:
    folder = Path(spec)
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not subfolders:
        raise InputError(f"{flag} {spec!r}: not a folder of class folders (FOLDER/NAME/*.jpg); name a single "
                         "reference with NAME=IMAGE[:x1,y1,x2,y2] or NAME=FOLDER")
    return [(sub.name, sub) for sub in subfolders]


def load_embedding_classes(path: str | Path) -> list[list[Embedding]]:
    """An embeddings file (`yoloworld embed`) as classes: one `Embedding` per row, named by the JSON note beside
    it (else "class N"); its padding row, if any, stays last and becomes the vocabulary's padding."""
    from yoloworld.models.prompt import read_embeddings

    embeds, note = read_embeddings(path)
    names = [group[0] for group in note.get("classes") or []]  # read_embeddings checked the note
    padded = bool(note.get("padded", False))
    if len(names) + int(padded) != len(embeds):
        names = [f"class {i}" for i in range(len(embeds) - int(padded))]
    names += [" "] * int(padded)  # a blank name marks the padding row (Vocabulary.build)
    return [[Embedding(row.numpy(), name)] for row, name in zip(embeds, names)]


# ---------------------------------------------------------------- encoding

def encode_prompts(prompts: list, encode_text, encode_images, device=None, dims: int | None = None):
    """(T, D) embeddings of a flat prompt list, in order. Texts go to `encode_text` in one call (a text-only list
    is exactly `encode_text(prompts)`), `VisualPrompt`s to `encode_images`, `Embedding`s as given."""
    if all(isinstance(p, str) for p in prompts):
        return encode_text(list(prompts))
    import torch

    texts = [p for p in prompts if isinstance(p, str)]
    images = [p for p in prompts if isinstance(p, VisualPrompt)]
    pools = {str: iter(_rows(encode_text(texts)) if texts else ()),
             VisualPrompt: iter(_rows(encode_images(images)) if images else ())}
    rows = [torch.from_numpy(p.vector) if isinstance(p, Embedding) else next(pools[type(p)]) for p in prompts]
    widths = {(prompt_name(p), int(r.shape[-1])) for p, r in zip(prompts, rows)}
    expected = dims or int(rows[0].shape[-1])
    wrong = next(((name, width) for name, width in widths if width != expected), None)
    if wrong is not None:
        raise InputError(f"class {wrong[0]!r}: its embedding has {wrong[1]} dimensions, the model's classes {expected}")
    device = device if device is not None else next((r.device for r in rows if r.device.type != "cpu"), "cpu")
    return torch.stack([r.float().to(device) for r in rows])


def _rows(embeds):
    import torch

    return list(torch.as_tensor(np.asarray(embeds)) if isinstance(embeds, np.ndarray) else embeds)


__all__ = ["VisualPrompt", "Embedding", "PROMPT_TYPES", "prompt_name", "reference_crops", "check_box",
           "encode_visual_prompts", "parse_visual_prompts", "load_embedding_classes", "encode_prompts"]
