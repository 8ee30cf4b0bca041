"""Ctrl-C while an epoch is being saved: the weights and the resume state are one unit, the notice says what is
really on disk, and `--resume` continues the run."""

from __future__ import annotations

import logging
import os
import signal
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


@pytest.fixture()
def python_sigint():
    """Python's own Ctrl-C handler, as in a fresh `yoloworld train`: a library loaded by an earlier test of this
    process may have left a native SIGINT handler behind (a real SIGINT then crashed the test process)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def test_ctrl_c_during_the_first_save_finishes_it_and_resume_continues(config, monkeypatch, caplog, python_sigint):
    run = Path(config.out)
    # Ctrl-C right after last.pth of epoch 1 is written: best.pth and last_state.pt are still to come
    interrupt_on(monkeypatch, 1, lambda: os.kill(os.getpid(), signal.SIGINT))
    with caplog.at_level(logging.INFO), pytest.raises(KeyboardInterrupt):
        train(config)
    said = notice(caplog)
    assert "nothing saved yet" not in said, said
    assert f"saved: {run / 'last_state.pt'} (resumes at epoch 2, iteration 0" in said, said
    assert "weights last.pth and best.pth beside it" in said, said
    assert {saved_epoch(run / name) for name in ("last.pth", "best.pth", "last_state.pt")} == {1}
    assert not list(run.glob(".*tmp*")), list(run.iterdir())  # no temp file left behind

    monkeypatch.setattr(state_module, "_save_file", lambda contents, path: torch.save(contents, path))
    caplog.clear()
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


def test_a_held_ctrl_c_goes_to_the_handler_that_was_there_and_an_ignored_one_stays_ignored():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with state_module.interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            assert calls == []  # held while the save runs
        assert calls == [signal.SIGINT]
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a run started in the background by a shell
        with state_module.interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
