"""Shared by the segmentation tests: the official seg checkpoints rebuilt from the fixtures (README 13.3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def official_seg_checkpoint(fixtures: Path, name: str, folder: Path) -> tuple[Path, list]:
    """`name` = v1 or v2: the full official checkpoint (detector file + seg keys, in the official key order).
    Returns its path and the official [key, shape] listing."""
    det = torch.load(fixtures / f"{name}_n.pth", weights_only=True)["state_dict"]
    seg = torch.load(fixtures / "seg" / f"{name}_seg_n_seghead.pth", weights_only=True)
    merged = {**det, **seg["state_dict"]}
    listing = json.loads((fixtures / "seg" / f"{name}_seg_n_keys.json").read_text())
    path = folder / f"{name}_seg_n.pth"
    torch.save({"meta": seg["meta"], "state_dict": {k: merged[k] for k, _ in listing}}, path)
    return path, listing


def fixture_image(fixtures: Path) -> np.ndarray:
    """The fixture photo as BGR (427 x 640)."""
    return np.load(fixtures / "inputs.npz")["image_raw"][:, :, ::-1].copy()
