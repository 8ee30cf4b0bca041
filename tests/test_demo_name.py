"""The demo model has a name: `--weights demo`, `from_pretrained("demo")` and the recipes find the packaged file from
any folder, and running it on your own images says, once, what it is."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import cli_env, run_cli

from yoloworld.api import DEMO_WARNING
from yoloworld.data.synth import SynthConfig, draw_image
from yoloworld.engine.train_config import build_train_config
from yoloworld.errors import CheckpointError
from yoloworld.models.checkpoint import open_checkpoint
from yoloworld.models.weights import DEMO_WEIGHTS, resolve_weights


def test_weights_demo_predicts_from_any_folder_and_warns_once(tmp_path):
    for seed in (0, 1):
        image, _ = draw_image(np.random.default_rng(seed), SynthConfig(images=1))
        cv2.imwrite(str(tmp_path / f"photo{seed}.png"), image)
    result = run_cli("predict", "photo0.png", "photo1.png", "--weights", "demo", "--no-save", "--json", "out.json",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(DEMO_WARNING) == 1, result.stderr  # two images, one warning
    assert "using the model's input size 256 (stored in demo)" in result.stderr
    assert (tmp_path / "out.json").is_file()


def test_predict_demo_draws_its_own_image_and_does_not_warn(tmp_path):
    result = run_cli("predict", "--demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert DEMO_WARNING not in result.stderr + result.stdout
    assert "not a real-world detector" in result.stdout  # its own notice says what the model is


def test_from_pretrained_demo_in_a_fresh_process_elsewhere(tmp_path):
    code = ("from yoloworld import YOLOWorld, load\n"
            "model = YOLOWorld.from_pretrained('demo')\n"
            "assert type(load('demo')) is YOLOWorld\n"
            "print(model.imgsz, len(model.class_names))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["256", "9"]


def test_the_image_prompt_recipe_starts_from_the_demo_model_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = build_train_config("image_prompt_synth")
    assert config.model.weights == "demo"
    assert open_checkpoint(config.model.weights).path == DEMO_WEIGHTS


def test_an_unknown_name_lists_demo_among_the_known_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"dmeo: no such file, and not a known model name; did you mean demo\?"):
        resolve_weights("dmeo")
    with pytest.raises(CheckpointError, match=r"not a known model name \(demo, yolo_world_v2_s"):
        resolve_weights("nothing_like_it")
