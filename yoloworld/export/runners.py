"""Which runtime runs an exported model, from its path: ONNX Runtime for `.onnx`, OpenVINO for an `.xml` file or
the folder `yoloworld export --format openvino` writes."""

from __future__ import annotations

import os
from pathlib import Path


def is_openvino(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.suffix.lower() == ".xml" or (path.is_dir() and any(path.glob("*.xml")))


def is_exported(path: str | os.PathLike) -> bool:
    """An exported model (not a PyTorch checkpoint, a release name or a training run folder)."""
    return str(path).lower().endswith(".onnx") or is_openvino(path)


def open_exported(path: str | os.PathLike, imgsz: int | None = None):
    """The front object (a `yoloworld.predictor.Predictor`) for an exported model."""
    if is_openvino(path):
        from yoloworld.export.openvino_runtime import OpenVinoYOLOWorld

        return OpenVinoYOLOWorld(path, imgsz=imgsz)
    from yoloworld.export.onnx_runtime import OnnxYOLOWorld

    return OnnxYOLOWorld(path, imgsz=imgsz)


__all__ = ["is_exported", "is_openvino", "open_exported"]
