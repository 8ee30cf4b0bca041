"""Checkpoint safety and strictness: weights_only loading, clear errors, hub names offline."""

import pytest
import torch

from yoloworld.errors import CheckpointError
from yoloworld.models.checkpoint import load_detector, read_checkpoint, resolve_weights


class Payload:  # pickled code must never run on load
    def __reduce__(self):
        return (print, ("executed!",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"backbone.image_model.stem.conv.weight": torch.zeros(1)}, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="pickled"):
        read_checkpoint(path)


def test_mismatched_shape_names_the_key(fixtures, tmp_path):
    checkpoint = torch.load(fixtures / "v2_n.pth", weights_only=True)
    key = "bbox_head.head_module.reg_preds.0.2.bias"
    checkpoint["state_dict"][key] = torch.zeros(3)
    torch.save(checkpoint, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_detector(tmp_path / "bad.pth", text_model=fixtures / "tiny-clip")


def test_missing_keys_are_listed_but_benign_ones_tolerated(fixtures, tmp_path):
    checkpoint = torch.load(fixtures / "v2_n.pth", weights_only=True)
    state = checkpoint["state_dict"]
    for key in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[key]
    state["backbone.text_model.model.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    torch.save(checkpoint, tmp_path / "benign.pth")
    load_detector(tmp_path / "benign.pth", text_model=fixtures / "tiny-clip")  # loads fine
    del state["neck.top_down_layers.0.attn_block.bias"]
    torch.save(checkpoint, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing keys.*attn_block.bias"):
        load_detector(tmp_path / "missing.pth", text_model=fixtures / "tiny-clip")


def test_short_name_offline_says_how_to_pass_a_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="--weights"):
        resolve_weights("yolo_world_v2_s")
    with pytest.raises(CheckpointError, match="not a known model name"):
        resolve_weights("yolo_world_v9_q")


def test_short_name_without_network_fails_fast_with_one_line(tmp_path):
    """Offline without HF_HUB_OFFLINE: one quick attempt, not huggingface_hub's five retries (~23 s of backoff)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import time\nfrom yoloworld.models.checkpoint import resolve_weights\nstart = time.time()\n"
            "try:\n    resolve_weights('yolo_world_v2_s')\nexcept Exception as exc:\n"
            "    print(type(exc).__name__, round(time.time() - start, 1), exc)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    # nothing listens on port 9: every request is refused at once, as on a machine without network
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    kind, seconds, message = result.stdout.strip().split(" ", 2)
    assert kind == "CheckpointError" and "--weights" in message and "\n" not in message, result.stdout
    assert float(seconds) < 5, f"took {seconds} s: {result.stderr[-300:]}"
    assert "Retrying" not in result.stderr
