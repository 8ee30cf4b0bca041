"""What a run writes to disk, always atomically (temp file + rename: a kill never leaves half a file).

  last.pth, best.pth, epoch_N.pth  official layout {'meta', 'state_dict' (EMA weights + text tower)}: what
                                   `yoloworld predict` / `val` and the official tools read
  last_state.pt                    everything an exact resume needs: raw model, EMA, optimiser, AMP scaler,
                                   epoch / iteration, RNG states, best metric and validation history

Every file loads with torch.load(weights_only=True): tensors, dicts, lists, numbers and strings only.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from yoloworld.errors import CheckpointError
from yoloworld.files import atomic_save
from yoloworld.models.checkpoint import load_file

STATE_FILE = "last_state.pt"
STATE_VERSION = 1


# ---------------------------------------------------------------- RNG states as plain tensors / lists

def rng_state() -> dict:
    numpy_state = np.random.get_state()
    python_version, python_internal, python_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": numpy_state[0], "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
                  "pos": int(numpy_state[2]), "has_gauss": int(numpy_state[3]), "gauss": float(numpy_state[4])},
        "python": {"version": python_version, "internal": list(python_internal), "gauss": python_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- resume state

def save_resume_state(out: Path, *, model, ema, optimizer, scaler, epoch: int, batch: int, step: int, progress: dict,
                      rng_states: list[dict], model_meta: dict, skip_keys: set[str] = frozenset()) -> Path:
    """`epoch`/`batch`: where training continues (the next batch to run); `step`: iterations done.
    `skip_keys`: weights that never change (a frozen text tower; its fingerprint is in `model_meta`)."""
    state = {
        "version": STATE_VERSION,
        "epoch": epoch, "batch": batch, "step": step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items() if k not in skip_keys},
        "ema": None if ema is None else {"steps": ema.steps,
                                         "weights": {k: v.cpu() for k, v in ema.state_dict()["weights"].items()}},
        "optimizer": _to_cpu(optimizer.state_dict()),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "progress": progress,
        "rng": rng_states,
        "meta": model_meta,
    }
    path = Path(out) / STATE_FILE
    atomic_save(state, path)
    return path


RESUME_FIELDS = {"epoch": int, "batch": int, "step": int, "model": dict, "optimizer": dict, "progress": dict,
                 "rng": list, "meta": dict}


def load_resume_state(out: Path) -> dict:
    path = Path(out) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: nothing to resume (no {STATE_FILE}); start the run without --resume")
    state = load_file(path, "resume state")
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        found = state.get("version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a yoloworld resume state (version {found!r})")
    for name, kind in RESUME_FIELDS.items():
        if not isinstance(state.get(name), kind):
            raise CheckpointError(f"{path}: damaged resume state ({name!r} missing or not a {kind.__name__})")
    return state


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


__all__ = ["STATE_FILE", "rng_state", "set_rng_state", "save_resume_state",
           "load_resume_state"]
