"""Prompt embeddings: `.npy` files (with a JSON note beside them), the prompt-tuning detector and its freezing.

Prompt tuning (the official prompt-tuning recipe): the detector has no text model; it holds `embeddings` (N x 512, from an
`.npy` or random) and an optional residual MLP `adapter`. Backbone, neck and head are frozen (weights and
BatchNorm statistics), so only the prompts train.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from yoloworld.errors import CheckpointError, InputError
from yoloworld.files import atomic_write, write_json
from yoloworld.models.checkpoint import TEXT_PREFIX, load_weights, open_checkpoint
from yoloworld.models.detector import YOLOWorldDetector

PROMPT_PREFIXES = ("embeddings", "adapter.")  # keys an ordinary checkpoint lacks; they keep their initial values
FROZEN_FOR_PROMPT_TUNING = ("backbone", "neck", "bbox_head")


# ---------------------------------------------------------------- embedding files

def note_path(path: str | os.PathLike) -> Path:
    """`EMB.npy` -> `EMB.json`: what the rows are (texts, synonym mode, text model, padding row)."""
    return Path(path).with_suffix(".json")


def write_embeddings(path: str | os.PathLike, embeds: torch.Tensor | np.ndarray, note: dict) -> Path:
    """Write (N, D) float32 embeddings to `path` (.npy) and `note` next to it; folders are created."""
    path = Path(path)
    if path.suffix != ".npy":
        raise InputError(f"{path}: the embeddings file must end in .npy")
    array = embeds.detach().float().cpu().numpy() if isinstance(embeds, torch.Tensor) else np.asarray(embeds)
    atomic_write(path, lambda tmp: np.save(tmp, array.astype(np.float32)))
    write_json(note_path(path), {**note, "shape": list(array.shape)}, indent=2)
    return path


def read_embeddings(path: str | os.PathLike, dims: int | None = None) -> tuple[torch.Tensor, dict]:
    """(N, D) L2-normalised float32 embeddings and the note written beside them ({} if there is none)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: embeddings file not found (write one with: yoloworld embed)")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception:
        raise InputError(f"{path}: not a NumPy .npy array") from None
    if array.ndim != 2 or array.shape[0] == 0 or (dims is not None and array.shape[1] != dims):
        want = f"(N, {dims})" if dims else "(N, D)"
        raise InputError(f"{path}: embeddings have shape {array.shape}, expected {want}")
    embeds = torch.from_numpy(array.astype(np.float32))
    if not torch.isfinite(embeds).all() or (embeds.norm(dim=-1) == 0).any():
        raise InputError(f"{path}: embeddings contain NaN, inf or all-zero rows")
    return F.normalize(embeds, dim=-1), read_note(path)


def read_note(path: Path) -> dict:
    """The JSON note beside an embeddings file ({} if there is none), checked: an object whose `classes` (if
    any) are names or non-empty lists of names and whose `padded` (if any) is true or false."""
    where = note_path(path)
    if not where.is_file():
        return {}
    try:
        note = json.loads(where.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InputError(f"{where}: malformed JSON next to {path.name}") from None
    if not isinstance(note, dict):
        raise InputError(f"{where}: expected a JSON object (the note `yoloworld embed` writes), got a "
                         f"{type(note).__name__}")
    classes = note.get("classes")
    if classes is not None:
        groups = [[c] if isinstance(c, str) else c for c in classes] if isinstance(classes, list) else None
        if groups is None or not all(isinstance(g, list) and g and all(isinstance(t, str) and t.strip() for t in g)
                                     for g in groups):
            raise InputError(f"{where}: 'classes' must be a list of class names or of non-empty lists of names "
                             f'(synonyms), like ["person", ["car", "automobile"]]; got {json.dumps(classes)[:60]}')
        note = {**note, "classes": groups}
    if not isinstance(note.get("padded", False), bool):
        raise InputError(f"{where}: 'padded' must be true or false, got {json.dumps(note['padded'])[:20]}")
    return note


# ---------------------------------------------------------------- the prompt-tuning detector

@dataclass
class LoadReport:
    """What a non-strict load left out, in the official places only."""

    source: str
    ignored: list[str] = field(default_factory=list)  # checkpoint keys with no place in the model (text tower)
    kept: list[str] = field(default_factory=list)  # model keys the checkpoint lacks (prompts, adapter)

    def lines(self) -> list[str]:
        out = []
        if self.ignored:
            out.append(f"{self.source}: ignored {len(self.ignored)} keys with no place in a prompt detector "
                       f"({_summarise(self.ignored)})")
        if self.kept:
            out.append(f"{self.source}: not in the checkpoint, kept as initialised: {_summarise(self.kept)}")
        return out


def _summarise(keys: list[str]) -> str:
    prefixes = sorted({k.split(".")[0] + "." + k.split(".")[1] + ".*" if k.startswith(TEXT_PREFIX) else k
                       for k in keys})
    return ", ".join(prefixes[:6]) + (", ..." if len(prefixes) > 6 else "")


def build_prompt_detector(weights: str | os.PathLike, embeddings: torch.Tensor | None = None,
                          num_prompts: int | None = None, adapter: bool = False
                          ) -> tuple[YOLOWorldDetector, LoadReport]:
    """A prompt-tuning detector from an official or yoloworld checkpoint (text-conditioned or prompt-tuned).

    Like the official `load_from` (non-strict), only two kinds of keys may differ: the text tower in the file
    is ignored, and `embeddings` / `adapter.*` absent from the file keep their initial values (the given
    `embeddings`, else random L2-normalised rows). Prompts stored in the file win over `embeddings`, as
    officially. Every other missing, unexpected or mis-shaped key is a CheckpointError.
    """
    checkpoint = open_checkpoint(weights)
    path, state, base = checkpoint.path, checkpoint.state, checkpoint.config
    if base.contrastive == "rep":
        raise CheckpointError(f"{path}: a reparameterized model has no text path to prompt; "
                              "start prompt tuning from a text-conditioned checkpoint")
    count = _prompt_count(path, state, embeddings, num_prompts)
    config = replace(base, text_hidden=None, num_prompts=count,
                     prompt_adapter=adapter or any(k.startswith("adapter.") for k in state))
    model = YOLOWorldDetector(config, None)
    if embeddings is not None:
        if embeddings.shape != model.embeddings.shape:
            raise InputError(f"prompt embeddings have shape {tuple(embeddings.shape)}, this model needs "
                             f"(N, {config.embed_dims})")
        with torch.no_grad():
            model.embeddings.copy_(F.normalize(embeddings.float(), dim=-1))
    result = load_weights(model, state, str(path), ignore_prefixes=(TEXT_PREFIX, *PROMPT_PREFIXES))
    report = LoadReport(str(path), ignored=list(result.unexpected_keys),
                        kept=[k for k in result.missing_keys if k.startswith(PROMPT_PREFIXES)])
    return model.eval(), report


def _prompt_count(path: Path, state: dict, embeddings: torch.Tensor | None, num_prompts: int | None) -> int:
    if embeddings is not None:
        return int(embeddings.shape[0])
    if num_prompts:
        return int(num_prompts)
    if "embeddings" in state:
        return int(state["embeddings"].shape[0])
    raise InputError(f"{path}: holds no prompts; give prompt embeddings (.npy) or a number of prompts")


def freeze_for_prompt_tuning(model: YOLOWorldDetector) -> list[str]:
    """Official prompt-tuning freezing: backbone (all 4 stages), neck and head get no gradients and keep their
    BatchNorm statistics (they stay in eval mode through `model.train()`). Returns the trainable names."""
    if not model.config.num_prompts:
        raise ValueError("freeze_for_prompt_tuning needs a prompt detector (build_prompt_detector)")
    trainable = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(PROMPT_PREFIXES))
        if parameter.requires_grad:
            trainable.append(name)
    model.frozen_modules = FROZEN_FOR_PROMPT_TUNING
    model.train(model.training)
    return trainable


__all__ = ["note_path", "write_embeddings", "read_embeddings", "LoadReport", "build_prompt_detector",
           "freeze_for_prompt_tuning"]
