"""Shared helpers for the training tests (no tests here): a small synthetic dataset and a tiny, fast config."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import REPO, cli_env, run_cli  # noqa: F401 (re-exported to the training tests)


def make_synth(root: Path, images: int = 12, seed: int = 0) -> Path:
    """Small images (96-128 px), 9 classes, a val split; returns the coco folder."""
    from yoloworld.data.synth import SynthConfig, synthesize

    synthesize(root, SynthConfig(images=images, seed=seed, min_side=96, max_side=128, max_objects=3,
                                 val_fraction=0.25))
    return root / "coco"


def tiny_config(coco: Path, out: Path, **sections) -> dict:
    """A config dict for a ~1M-parameter model at 64 px: a few iterations take seconds on one CPU core."""
    config = {
        "model": {"size": "n", "random_text": {"hidden": 32, "layers": 1, "heads": 2, "seed": 0},
                  "arch": {"widen": 0.125, "min_cls_channels": 16}},
        "data": {
            "train": [{"kind": "coco", "ann": str(coco / "annotations.json"), "images": str(coco / "images"),
                       "classes_file": str(coco / "class_texts.json")}],
            "val": [{"kind": "coco", "ann": str(coco / "annotations_val.json"), "images": str(coco / "images"),
                     "classes_file": str(coco / "class_texts.json")}],
            "num_texts": 10, "workers": 0,
            "augment": {"image_size": 64, "close_mosaic_epochs": 1},
        },
        "optim": {"batch_size": 2, "lr": 0.002},
        "schedule": {"epochs": 2, "warmup_min_iters": 2, "warmup_epochs": 0.0},
        "eval": {"interval": 1, "batch_size": 4},
        "checkpoint": {"every_minutes": 0.0},
        "log_every": 1,
        "tensorboard": False,
        "out": str(out),
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def state_weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "last_state.pt", map_location="cpu", weights_only=True)
    return state["model"]




def make_base_checkpoint(path: Path) -> Path:
    """A tiny text-conditioned checkpoint (random weights, seeded text tower) to fine-tune from."""
    from yoloworld.config import ModelConfig
    from yoloworld.engine.modes import random_text_encoder
    from yoloworld.engine.train_config import RandomTextConfig
    from yoloworld.models.checkpoint import save_checkpoint
    from yoloworld.models.detector import YOLOWorldDetector
    from yoloworld.models.text import text_config_meta

    torch.manual_seed(0)
    encoder = random_text_encoder(RandomTextConfig(hidden=32, layers=1, heads=2, seed=0))
    config = ModelConfig(deepen=0.33, widen=0.125, last_stage_channels=1024, min_cls_channels=16, text_hidden=32)
    model = YOLOWorldDetector(config, encoder)
    model.init_weights(10)
    save_checkpoint(path, model, {"text_config": text_config_meta(encoder)})
    return path


def make_embeddings(path: Path, rows: int, seed: int = 0) -> Path:
    from yoloworld.models.prompt import write_embeddings

    generator = torch.Generator().manual_seed(seed)
    embeds = torch.nn.functional.normalize(torch.randn(rows, 512, generator=generator), dim=-1)
    return write_embeddings(path, embeds, {"classes": [[f"class{i}"] for i in range(rows)], "padded": False})


def finetune_config(coco: Path, out: Path, mode: str, weights: Path, embeddings: Path | None = None, **sections):
    data = tiny_config(coco, out, **sections)
    data["model"] = {"mode": mode, "weights": str(weights)}
    if embeddings is not None:
        data["model"]["embeddings"] = str(embeddings)
    return data


__all__ = ["REPO", "make_synth", "tiny_config", "write_yaml", "cli_env", "run_cli", "state_weights",
           "make_base_checkpoint", "make_embeddings", "finetune_config"]
