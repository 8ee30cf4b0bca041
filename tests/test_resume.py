"""Kill -9 mid-epoch, resume: training continues from the last saved iteration, finished checkpoints survive, and
the result equals an uninterrupted run (model, EMA, optimiser, schedule, data order and RNG all restored)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from test_train_support import (
    REPO,
    cli_env,
    make_synth,
    run_cli,
    state_weights,
    tiny_config,
    write_yaml,
)

from yoloworld.models.checkpoint import read_checkpoint


def read_state(run):
    for _ in range(20):  # the file is replaced atomically; a read can only meet the old or the new one
        try:
            return torch.load(run / "last_state.pt", map_location="cpu", weights_only=True)
        except (FileNotFoundError, RuntimeError, EOFError):
            time.sleep(0.02)
    raise AssertionError("last_state.pt never became readable")


def start_training(config_path):
    return subprocess.Popen([sys.executable, "-m", "yoloworld", "train", str(config_path)], cwd=REPO, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOWORLD_CACHE", str(tmp_path / "cache"))
    return make_synth(tmp_path / "synth", images=12)


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(env, tmp_path):
    settings = dict(optim={"batch_size": 1, "lr": 0.002}, schedule={"epochs": 2, "warmup_min_iters": 3,
                                                                    "warmup_epochs": 0.0},
                    checkpoint={"every_iters": 1, "every_minutes": 0.0}, eval={"interval": 1, "batch_size": 4})
    killed = tmp_path / "killed"
    process = start_training(write_yaml(tmp_path / "killed.yaml", tiny_config(env, killed, **settings)))
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # wait until the run is inside its second epoch, then kill it hard
            if (killed / "last_state.pt").exists():
                state = read_state(killed)
                if state["epoch"] == 1 and state["batch"] >= 3:
                    break
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.01)
        else:
            raise AssertionError("the run never reached its second epoch")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    saved = read_state(killed)
    iters_per_epoch = 9  # 9 training images, batch 1
    assert saved["epoch"] == 1 and 0 < saved["batch"] < iters_per_epoch, "not killed mid-epoch"
    assert saved["step"] == iters_per_epoch + saved["batch"]
    finished = read_checkpoint(killed / "last.pth")  # epoch 1's checkpoints survive the kill intact
    assert finished["meta"]["yoloworld"]["epoch"] == 1
    assert read_checkpoint(killed / "best.pth")["meta"]["yoloworld"]["epoch"] == 1

    resumed = run_cli("train", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    where = re.search(r"resuming \S+ at epoch (\d+), iteration (\d+) \(step (\d+)\)", resumed.stderr)
    assert where and (int(where[1]), int(where[2]), int(where[3])) == (2, saved["batch"], saved["step"])

    reference = tmp_path / "reference"
    straight = run_cli("train", str(write_yaml(tmp_path / "reference.yaml", tiny_config(env, reference, **settings))))
    assert straight.returncode == 0, straight.stderr
    final, expected = state_weights(killed), state_weights(reference)
    assert final.keys() == expected.keys()
    for key in expected:
        assert torch.allclose(final[key].float(), expected[key].float(), atol=1e-6), key
    ema = read_checkpoint(killed / "last.pth")["state_dict"]
    ema_expected = read_checkpoint(reference / "last.pth")["state_dict"]
    assert all(torch.allclose(ema[k].float(), ema_expected[k].float(), atol=1e-6) for k in ema_expected)

    steps = [json.loads(line)["step"] for line in (killed / "scalars.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == list(range(1, 2 * iters_per_epoch + 1))  # no step lost, none logged twice


def test_resume_without_a_saved_state_is_a_one_line_error(env, tmp_path):
    run = tmp_path / "nothing"
    run.mkdir()
    write_yaml(run / "config.yaml", tiny_config(env, run))
    result = run_cli("train", "--resume", str(run))
    assert result.returncode == 2 and "nothing to resume" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_resume_of_a_finished_run_says_it_is_complete_and_how_to_extend_it(env, tmp_path):
    run = tmp_path / "done"
    finished = run_cli("train", str(write_yaml(tmp_path / "done.yaml", tiny_config(env, run, schedule={
        "epochs": 1, "warmup_min_iters": 2, "warmup_epochs": 0.0}))))
    assert finished.returncode == 0, finished.stderr
    written = {name: (run / name).stat().st_mtime_ns for name in ("last_state.pt", "last.pth", "summary.json")
               if (run / name).exists()}

    again = run_cli("train", "--resume", str(run))
    assert again.returncode == 0, again.stderr
    assert "complete (1 of 1 epochs)" in again.stderr, again.stderr
    hint = re.search(r"yoloworld train --resume (\S+) schedule\.epochs=N", again.stderr)
    assert hint and hint[1] == str(run), again.stderr
    assert written == {name: (run / name).stat().st_mtime_ns for name in written}  # nothing trained or rewritten

    extended = run_cli("train", "--resume", str(run), "schedule.epochs=2")  # the hint, followed
    assert extended.returncode == 0, extended.stderr
    assert re.search(r"resuming \S+ at epoch 2, iteration 0", extended.stderr), extended.stderr
    assert read_checkpoint(run / "last.pth")["meta"]["yoloworld"]["epoch"] == 2


SLOW_STEP_RUN = """
import hashlib, logging, sys, time
from yoloworld.engine.train_config import build_train_config
from yoloworld.engine.trainer import Trainer

logging.basicConfig(level=logging.INFO, format="%(message)s")
trainer = Trainer(build_train_config(sys.argv[1]))
loss, calls = trainer.loss, [0]
start = time.time()
hashlib.pbkdf2_hmac("sha256", b"k", b"s", 200000)
rate = 200000 / (time.time() - start)

def slow_loss(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 4:  # one ~6 s C call, like a long backward pass on a CPU: Python's SIGINT handler waits for it
        print("slow step", file=sys.stderr, flush=True)
        hashlib.pbkdf2_hmac("sha256", b"k", b"s", int(6 * rate))
    return loss(*args, **kwargs)

trainer.loss = slow_loss
try:
    trainer.fit()
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_says_at_once_what_was_saved_and_how_to_resume(env, tmp_path):
    run = tmp_path / "run"
    config = write_yaml(tmp_path / "run.yaml", tiny_config(env, run, optim={"batch_size": 1, "lr": 0.002},
                                                           schedule={"epochs": 1, "warmup_min_iters": 2},
                                                           checkpoint={"every_iters": 2, "every_minutes": 0.0}))
    process = subprocess.Popen([sys.executable, "-c", SLOW_STEP_RUN, str(config)], cwd=REPO, env=cli_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # its own process group, as a terminal's Ctrl-C reaches it
    lines, slow = [], threading.Event()

    def read():
        for line in process.stderr:
            lines.append((time.time(), line.rstrip()))
            if "slow step" in line:
                slow.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.time() + 180
        while not slow.wait(0.5) and process.poll() is None and time.time() < deadline:
            pass  # a run that dies before its slow step fails the test at once, not after the deadline
        assert slow.is_set(), "\n".join(line for _, line in lines)
        time.sleep(0.5)
        pressed = time.time()
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(120) == 130
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    text = "\n".join(line for _, line in lines)
    said = [when for when, line in lines if "resume with:" in line]
    assert said and said[0] - pressed < 3, text  # while the slow step still runs
    assert f"saved: {run / 'last_state.pt'}" in text, text
    position = re.search(r"resumes at epoch (\d+), iteration (\d+)", text)
    command = re.search(r"resume with: yoloworld (train --resume \S+)$", text, re.MULTILINE)
    assert position and command and command[1] == f"train --resume {run}", text

    resumed = run_cli(*command[1].split())
    assert resumed.returncode == 0, resumed.stderr
    where = re.search(r"resuming \S+ at epoch (\d+), iteration (\d+)", resumed.stderr)
    assert where and where.groups() == position.groups(), resumed.stderr
