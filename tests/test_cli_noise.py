"""What a user sees on standard error is our lines: no libjpeg warnings, no progress bars left open beside the next."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
from helpers import REPO, cli_env, run_cli

from yoloworld.data.synth import SynthConfig, draw_image
from yoloworld.images import video_writer

DEMO = REPO / "yoloworld" / "assets" / "demo.pt"


def test_a_truncated_jpeg_gives_our_warning_only(tmp_path):
    image, _ = draw_image(np.random.default_rng(0), SynthConfig(min_side=256, max_side=256))
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    done = run_cli("predict", tmp_path / "cut.jpg", "--weights", DEMO, "--imgsz", 256, "--no-save")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert any("cut.jpg: truncated JPEG" in line for line in lines), done.stderr
    assert all(line.startswith("warning: ") for line in lines), done.stderr  # libjpeg's line named no file


def test_each_video_has_one_progress_bar_closed_at_its_last_frame(tmp_path):
    rng = np.random.default_rng(0)
    for folder in "ab":  # two videos of the same name
        (tmp_path / folder).mkdir()
        frames = [draw_image(rng, SynthConfig(min_side=256, max_side=256))[0] for _ in range(6)]
        writer = video_writer(tmp_path / folder / "clip.mp4", 5, frames[0].shape)
        for frame in frames:
            writer.write(frame)
        writer.release()
    done = subprocess.run([sys.executable, "-m", "yoloworld", "predict", tmp_path / "a/clip.mp4", tmp_path / "b/clip.mp4",
                           "--weights", DEMO, "--imgsz", "256", "--max-frames", "3", "--save-dir", tmp_path / "out"],
                          capture_output=True, env=cli_env(), cwd=REPO, timeout=300)
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    # what stays on screen at each line end: a bar redraws itself after '\r', a finished one ends with '\n'
    shown = [line.rsplit("\r", 1)[-1] for line in stderr.split("\n") if line.strip("\r ")]
    bars = [line for line in shown if "frame" in line]
    assert len(bars) == 2 and all(" 3/3 " in bar for bar in bars), stderr  # each closed at its last frame
    assert all(line.startswith("warning: ") for line in shown if line not in bars), stderr  # none glued to a bar
    assert "\x1b[A" not in stderr  # a second bar drawn below one still open moves the cursor up
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == ["clip.mp4", "clip_2.mp4"]
