"""What a run writes to disk, and reading it back to resume.

  last.pth, best.pth, epoch_N.pth  official layout {'meta', 'state_dict' (EMA weights + text tower)}: what
                                   `yoloworld predict` / `val` and the official tools read
  last_state.pt                    everything an exact resume needs: raw model, EMA, optimiser, AMP scaler,
                                   epoch / iteration, RNG states, best metric and validation history

A save is one unit: every file goes to a temp name first, then all are renamed, weights before the resume state,
with Ctrl-C held back until the last rename. An interrupt never leaves half a save; a hard kill between two
renames leaves weights newer than the resume state, which a resume trains again and overwrites.
Every file loads with torch.load(weights_only=True): tensors, dicts, lists, numbers and strings only.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from yoloworld.errors import CheckpointError
from yoloworld.models.checkpoint import load_file

from . import distributed as dist_utils

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

def resume_state_contents(*, model, ema, optimizer, scaler, epoch: int, batch: int, step: int, progress: dict,
                          rng_states: list[dict], model_meta: dict, skip_keys: set[str] = frozenset()) -> dict:
    """`epoch`/`batch`: where training continues (the next batch to run); `step`: iterations done.
    `skip_keys`: weights that never change (a frozen text tower; its fingerprint is in `model_meta`)."""
    return {
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


# ---------------------------------------------------------------- one save, all files or none

def _save_file(contents, path: Path) -> None:
    torch.save(contents, path)


@contextlib.contextmanager
def interrupts_held():
    """Ctrl-C waits until the block ends, then goes to the handler that was there (Python's raises
    KeyboardInterrupt); an ignored SIGINT stays ignored."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
            signal.SIG_IGN, None):
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous):
            previous(signal.SIGINT, None)
        else:  # SIG_DFL: the default action, now that the save is whole
            signal.raise_signal(signal.SIGINT)


def write_together(files: dict[Path, object]) -> None:
    """torch.save every value to a temp name beside its path, then rename them all in order (the resume state
    last); with Ctrl-C held back, the save happens whole or (on an error while writing) not at all."""
    temps = {path: path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}") for path in files}
    try:
        with interrupts_held():
            for path, contents in files.items():
                _save_file(contents, temps[path])
            for path in files:
                os.replace(temps[path], path)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def save_run(run, epoch_files: dict[Path, dict] | None = None) -> None:
    """Save `run` (a Trainer) where it stands: the resume state, with the weight files an epoch ends with."""
    states = dist_utils.all_gather_objects(rng_state(), run.info)
    if run.info.is_main:
        files = dict(epoch_files or {})
        files[run.out / STATE_FILE] = resume_state_contents(
            model=run.model, ema=run.ema, optimizer=run.optimizer, scaler=run.scaler, epoch=run.epoch,
            batch=run.batch, step=run.step, progress=dict(run.progress), rng_states=states,
            model_meta=run.weights.resume_meta(run.model), skip_keys=run.frozen_keys)
        run.saving = ((run.epoch, run.batch, run.step), [path.name for path in files])
        try:
            write_together(files)
        finally:
            run.saving = None
        run.saved_at = (run.epoch, run.batch, run.step)
    run.last_save = time.time()
    dist_utils.barrier(run.info)


def save_resume_state(out: Path, **state) -> Path:
    """Only the resume state (see `resume_state_contents` for the fields)."""
    path = Path(out) / STATE_FILE
    write_together({path: resume_state_contents(**state)})
    return path


RESUME_FIELDS = {"epoch": int, "batch": int, "step": int, "model": dict, "optimizer": dict, "progress": dict,
                 "rng": list, "meta": dict}


def load_resume_state(out: Path) -> dict:
    path = Path(out) / STATE_FILE
    if not path.is_file():
        weights = Path(out) / "last.pth"
        hint = (f"; its {weights.name} holds weights only: start a new run from them with model.weights={weights}"
                if weights.is_file() else "")
        raise CheckpointError(f"{path}: nothing to resume (no {STATE_FILE}); start the run without --resume{hint}")
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


# ---------------------------------------------------------------- resuming

def restore_run(run, state: dict) -> None:
    """Put a loaded resume state back into `run` (a Trainer): weights, EMA, optimiser, scaler, position, RNGs."""
    run.weights.check_resume_meta(state["meta"], run.model)
    path = run.out / STATE_FILE
    try:
        result = run.model.load_state_dict(state["model"], strict=False)
        if set(result.missing_keys) - run.frozen_keys or result.unexpected_keys:
            raise CheckpointError(f"{path}: model weights do not fit this config")
        if run.ema is not None and state["ema"] is not None:
            run.ema.load_state_dict(state["ema"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.scaler is not None and state["scaler"]:
            run.scaler.load_state_dict(state["scaler"])
        run.epoch, run.batch, run.step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        run.saved_at = (run.epoch, run.batch, run.step)
        run.progress.update(state["progress"])
        rngs = state["rng"]
        set_rng_state(rngs[run.info.rank] if len(rngs) == run.info.world_size else rngs[0])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{path}: damaged resume state ({type(exc).__name__}); start the run again without "
                              "--resume") from None


def fresh_out_dir(out: Path) -> Path:
    """`out` itself if it is new or empty, else out2, out3, ...: a finished run is never overwritten, nor a
    file of the user's replaced by the run's config.yaml, logs or weights."""
    def used(path: Path) -> bool:
        return path.is_dir() and any(path.iterdir())
    if not used(out):
        return out
    index = 2
    while used(out.with_name(f"{out.name}{index}")):
        index += 1
    return out.with_name(f"{out.name}{index}")


__all__ = ["STATE_FILE", "rng_state", "set_rng_state", "resume_state_contents", "interrupts_held", "write_together",
           "save_run", "save_resume_state", "load_resume_state", "restore_run", "fresh_out_dir"]
