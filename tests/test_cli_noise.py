"""What a user sees on standard error is our lines: no libjpeg warnings, no progress bars left open beside the next."""

from __future__ import annotations

import cv2
import numpy as np
from helpers import REPO, run_cli

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
    assert len(lines) == 1 and "cut.jpg: truncated JPEG" in lines[0], done.stderr  # libjpeg says it unnamed


def test_each_video_has_one_progress_bar_closed_at_its_last_frame(tmp_path):
    rng, writer = np.random.default_rng(0), None
    for _ in range(6):
        frame, _ = draw_image(rng, SynthConfig(min_side=256, max_side=256))
        writer = writer or video_writer(tmp_path / "clip.mp4", 5, frame.shape)
        writer.write(frame)
    writer.release()
    done = run_cli("predict", tmp_path / "clip.mp4", tmp_path / "clip.mp4", "--weights", DEMO, "--imgsz", 256,
                   "--max-frames", 3, "--save-dir", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    # text mode reads tqdm's '\r' as a line end; a bar closes with an empty line after its last state
    bars = [block.splitlines() for block in done.stderr.split("\n\n") if "frame/s" in block]
    assert len(bars) == 2 and all(" 3/3 " in lines[-1] for lines in bars), done.stderr
    assert "\x1b[A" not in done.stderr  # a second bar drawn below one still open moves the cursor up
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4", "clip_2.mp4"]
