"""Ctrl-C while an epoch is being saved: the weights and the resume state are one unit, the notice says what is
really on disk, and `--resume` continues the run."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_support import make_synth, tiny_config

from yoloworld.engine import state as state_module
from yoloworld.engine.train_config import build_train_config
from yoloworld.engine.trainer import train
from yoloworld.models.checkpoint import read_checkpoint


@pytest.fixture()
def config(tmp_path):
    coco = make_synth(tmp_path / "synth", images=8)
    data = tiny_config(coco, tmp_path / "run", schedule={"epochs": 2, "warmup_min_iters": 1, "warmup_epochs": 0.0})
    return build_train_config(data=data)


def saved_epoch(path) -> int:
    data = torch.load(path, map_location="cpu", weights_only=True)
    return int(data["epoch"]) if "epoch" in data else read_checkpoint(path)["meta"]["yoloworld"]["epoch"]


def interrupt_on(monkeypatch, calls: int, how):
    """Run `how` on the save's `calls`-th file write (counting every file of every save)."""
    real, count = state_module._save_file, [0]

    def save(contents, path):
        count[0] += 1
        if count[0] == calls:
            how()
        real(contents, path)
    monkeypatch.setattr(state_module, "_save_file", save)


def notice(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if "interrupted at epoch" in r.getMessage())


# A real SIGINT is sent only inside a child process: in a long-lived test process a library loaded by an earlier
# test can turn the signal into a crash (exit 139 in the full suite), and `yoloworld train` runs in its own process.
FIRST_SAVE_INTERRUPTED = """
import logging, os, signal, sys
from pathlib import Path
from test_train_support import make_synth, tiny_config
from yoloworld.engine import state as state_module
from yoloworld.engine.train_config import build_train_config
from yoloworld.engine.trainer import train

logging.basicConfig(level=logging.INFO, format="%(message)s")
signal.signal(signal.SIGINT, signal.default_int_handler)
root = Path(sys.argv[1])
coco = make_synth(root / "synth", images=8)
config = build_train_config(data=tiny_config(coco, root / "run", schedule={
    "epochs": 2, "warmup_min_iters": 1, "warmup_epochs": 0.0}))
real = state_module._save_file
writes = [0]

def save(contents, path):
    writes[0] += 1
    if writes[0] == 1:  # Ctrl-C right after last.pth of epoch 1: best.pth and last_state.pt are still to come
        os.kill(os.getpid(), signal.SIGINT)
    real(contents, path)

state_module._save_file = save
try:
    train(config)
except KeyboardInterrupt:
    sys.exit(130)
"""


def run_child(code: str, *args) -> subprocess.CompletedProcess:
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def test_ctrl_c_during_the_first_save_finishes_it_and_resume_continues(tmp_path, caplog):
    run = tmp_path / "run"
    child = run_child(FIRST_SAVE_INTERRUPTED, tmp_path)
    assert child.returncode == 130, child.stderr[-3000:]
    said = child.stderr[child.stderr.find("interrupted at epoch"):]  # the notice and the lines under it
    assert "nothing saved yet" not in said, said
    assert f"saved: {run / 'last_state.pt'} (resumes at epoch 2, iteration 0" in said, child.stderr[-3000:]
    assert "weights last.pth and best.pth beside it" in said, said
    assert {saved_epoch(run / name) for name in ("last.pth", "best.pth", "last_state.pt")} == {1}
    assert not list(run.glob(".*tmp*")), list(run.iterdir())  # no temp file left behind

    coco = tmp_path / "synth" / "coco"
    config = build_train_config(data=tiny_config(coco, run, schedule={"epochs": 2, "warmup_min_iters": 1,
                                                                       "warmup_epochs": 0.0}))
    with caplog.at_level(logging.INFO):
        train(config, resume=True)
    assert any("at epoch 2, iteration 0" in r.getMessage() for r in caplog.records if "resuming" in r.getMessage())
    assert saved_epoch(run / "last.pth") == 2 and saved_epoch(run / "last_state.pt") == 2


def test_an_interrupt_that_breaks_off_a_save_leaves_the_previous_save_whole(config, monkeypatch, caplog):
    run = Path(config.out)

    def stop():
        raise KeyboardInterrupt  # an interrupt not held back (raised inside the write itself)
    interrupt_on(monkeypatch, 4, stop)  # epoch 1 writes 3 files (last, best, state); the 4th is epoch 2's last.pth
    with caplog.at_level(logging.INFO), pytest.raises(KeyboardInterrupt):
        train(config)
    said = notice(caplog)
    assert f"saved: {run / 'last_state.pt'} (resumes at epoch 2, iteration 0" in said, said
    assert {saved_epoch(run / name) for name in ("last.pth", "best.pth", "last_state.pt")} == {1}
    assert not list(run.glob(".*tmp*")), list(run.iterdir())

    monkeypatch.setattr(state_module, "_save_file", lambda contents, path: torch.save(contents, path))
    train(config, resume=True)
    assert saved_epoch(run / "last.pth") == 2


def test_resume_without_a_resume_state_names_the_weights_that_are_there(tmp_path):
    from yoloworld.errors import CheckpointError

    (tmp_path / "last.pth").write_bytes(b"weights")
    with pytest.raises(CheckpointError, match=r"holds weights only: start a new run from them with model.weights="):
        state_module.load_resume_state(tmp_path)


HELD_INTERRUPT = """
import os, signal
from yoloworld.engine import state as state_module

calls = []
signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
with state_module.interrupts_held():
    os.kill(os.getpid(), signal.SIGINT)
    assert calls == [], calls  # held while the save runs
assert calls == [signal.SIGINT], calls
signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a run started in the background by a shell
with state_module.interrupts_held():
    os.kill(os.getpid(), signal.SIGINT)
assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
print("ok")
"""


def test_a_held_ctrl_c_goes_to_the_handler_that_was_there_and_an_ignored_one_stays_ignored():
    child = run_child(HELD_INTERRUPT)
    assert child.returncode == 0 and child.stdout.strip() == "ok", child.stderr[-3000:]
