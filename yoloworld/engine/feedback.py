"""What a run tells its user while it trains: a progress bar (loss parts, lr, ETA), `scalars.jsonl` (one JSON
object per line, the official log's names for validation metrics) and TensorBoard events. Main process only."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .optim import describe_optimizer
from .state import STATE_FILE

logger = logging.getLogger(__name__)
SCALARS = "scalars.jsonl"


class ScalarLog:
    """Append-only JSON lines; on resume the lines past the resumed step are dropped first."""

    def __init__(self, out: Path, resume_step: int | None = None):
        self.path = Path(out) / SCALARS
        if resume_step is not None and self.path.exists():
            kept = [line for line in read_scalars(self.path) if line.get("step", 0) <= resume_step]
            tmp = self.path.with_name(f".{SCALARS}.tmp")
            tmp.write_text("".join(json.dumps(line) + "\n" for line in kept), encoding="utf-8")
            tmp.replace(self.path)
        elif resume_step is None and self.path.exists():
            self.path.unlink()

    def write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def read_scalars(path: Path) -> list[dict]:
    lines = []
    if not Path(path).exists():
        return lines
    for text in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return lines


class TensorBoard:
    def __init__(self, out: Path, enabled: bool, resume_step: int | None = None):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
            return
        self.writer = SummaryWriter(str(Path(out) / "tensorboard"), purge_step=resume_step)

    def scalars(self, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch", "iter"):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Progress:
    """Per-epoch tqdm bar with running means of the loss parts, the lr and the ETA of the whole run."""

    def __init__(self, enabled: bool, total_iters: int, done_iters: int):
        self.enabled = enabled
        self.total, self.done_at_start = total_iters, done_iters
        self.started = time.time()
        self.bar = None
        self.interactive = sys.stderr.isatty()

    def start_epoch(self, epoch: int, epochs: int, iters: int, first: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=iters, initial=first, desc=f"epoch {epoch + 1}/{epochs}", unit="it", leave=True,
                        dynamic_ncols=True, mininterval=0.5 if self.interactive else 30.0, file=sys.stderr)

    def update(self, step: int, losses: dict, lr: float) -> None:
        if self.bar is None:
            return
        parts = {k.replace("loss_", ""): f"{v:.3f}" for k, v in losses.items()}
        self.bar.set_postfix(**parts, lr=f"{lr:.2e}", eta=self.eta(step), refresh=False)
        self.bar.update(1)

    def eta(self, step: int) -> str:
        done = step - self.done_at_start
        if done <= 0:
            return "?"
        remaining = (time.time() - self.started) / done * max(self.total - step, 0)
        return format_seconds(remaining)

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class InterruptNotice:
    """On Ctrl-C, log `message()` at once (what was saved, how to resume).

    Python runs its SIGINT handler only between bytecodes, so a long backward pass on a CPU holds the
    KeyboardInterrupt back for as long as it runs. The C-level handler writes the signal number to the wakeup fd
    immediately, and a thread waiting on it speaks (torch releases the GIL while it computes).
    """

    def __init__(self, enabled: bool, message: Callable[[], str]):
        self.enabled, self.message = enabled, message
        self.fds, self.thread, self.previous = None, None, -1
        self.said, self.lock = False, threading.Lock()

    def __enter__(self) -> "InterruptNotice":
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return self
        read_fd, write_fd = os.pipe()
        try:
            os.set_blocking(write_fd, False)
            self.previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except (AttributeError, OSError, ValueError):  # a platform without it: __exit__ speaks, later
            os.close(read_fd)
            os.close(write_fd)
            return self
        self.fds = (read_fd, write_fd)
        self.thread = threading.Thread(target=self._watch, name="interrupt-notice", daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while data := os.read(self.fds[0], 64):  # b"" once __exit__ closes the write end
            if signal.SIGINT in data:
                self.say()

    def say(self) -> None:
        with self.lock:
            if self.said:
                return
            self.said = True
        logger.warning("\n%s", self.message())

    def __exit__(self, kind, exc, traceback) -> bool:
        if self.fds is not None:
            signal.set_wakeup_fd(self.previous)
            os.close(self.fds[1])
            self.thread.join(5)
            os.close(self.fds[0])
        if kind is KeyboardInterrupt and self.enabled:
            self.say()  # if the thread has not (or could not)
        return False


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class RunningMeans:
    """Means of the loss parts since the last log line."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def means(self) -> dict:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def reset(self) -> None:
        self.sums, self.count = {}, 0


def describe_run(run, source: str) -> None:
    """The opening lines of a run: data, schedule, optimiser, and what looks wrong in the data."""
    config = run.config
    logger.info("training from %s (%s mode) on %d images, %d iterations/epoch x %d epochs, "
                "batch %d x %d process(es), device %s, amp %s", source, config.model.mode, len(run.dataset),
                run.iters_per_epoch, config.schedule.epochs, config.optim.batch_size, run.info.world_size,
                run.device, config.amp)
    logger.info(describe_optimizer(run.optimizer, config.optim, run.info.world_size))
    logger.info("warmup %d iterations, then linear decay to lr x %g; EMA %s; output %s", run.schedule.warmup_iters,
                config.schedule.final_lr_factor, "on" if run.ema else "off", run.out)
    note = run.schedule.warmup_note()
    if note:
        logger.warning("warning: %s", note)
    if not any(len(record.boxes) for source in run.dataset.sources for record in source.records):
        names = ", ".join(source.ann_file or source.name for source in run.dataset.sources)
        logger.warning("warning: the training set (%s) has no boxes in its %d images: the box losses stay 0 and "
                       "the model learns to find nothing; check its labels with `yoloworld data check`", names,
                       len(run.dataset))
    if config.model.segment and not any(len(polygons) for source in run.dataset.sources
                                        for record in source.records for polygons in (record.polygons or [])):
        logger.warning("warning: model.segment is on but the training set has no polygons: every target mask "
                       "is empty and the mask head learns to find nothing")


def interrupt_notice(run) -> str:
    """What Ctrl-C leaves on disk and the command that continues the run. A save being written when Ctrl-C comes
    is finished first (the run's saves are one unit: engine/state.py), so it is what the notice describes."""
    lines = [f"interrupted at epoch {run.epoch + 1}/{run.config.schedule.epochs}, iteration {run.batch}/"
             f"{run.iters_per_epoch} (step {run.step}): stopping when the current step ends"]
    saving = getattr(run, "saving", None)
    if saving is None and run.saved_at is None:
        lines.append("  nothing saved yet (the first save comes at the end of epoch 1, or after "
                     "checkpoint.every_minutes / every_iters): run the same command again to start over")
        return "\n".join(lines)
    (epoch, batch, step), being_written = saving if saving is not None else (run.saved_at, [])
    if saving is not None:
        lines[0] = lines[0].replace("when the current step ends", "once the save in progress is on disk")
    weights = [name for name in ("last.pth", "best.pth") if name in being_written or (run.out / name).exists()]
    lines.append(f"  saved: {run.out / STATE_FILE} (resumes at epoch {epoch + 1}, iteration {batch}, step "
                 f"{step}; later steps are trained again)"
                 + (f", weights {' and '.join(weights)} beside it" if weights else ""))
    launcher = f"torchrun --nproc_per_node {run.info.world_size} -m " if run.info.enabled else ""
    lines.append(f"  resume with: {launcher}yoloworld train --resume {shlex.quote(str(run.out))}")
    return "\n".join(lines)


__all__ = ["SCALARS", "ScalarLog", "read_scalars", "TensorBoard", "Progress", "RunningMeans", "InterruptNotice",
           "format_seconds", "describe_run", "interrupt_notice"]
