"""Run a model exported with `yoloworld export --format openvino` (fp32 or INT8) behind the same interface as
`YOLOWorld`:

    model = OpenVinoYOLOWorld("yolo_world_v2_s_openvino_model")   # the folder, or the .xml inside it
    results = model.predict(images, conf=0.05)

The graphs are the ONNX export's, converted; the runner is `OnnxYOLOWorld` with OpenVINO doing the graph runs
(metadata, vocabulary, batching, in-graph NMS rows and everything `Predictor` does are shared).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from yoloworld.errors import CheckpointError, InputError
from yoloworld.export.onnx_runtime import METADATA_KEY, OnnxYOLOWorld, parse_metadata

TEXT_SUFFIX = ".text.xml"


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise InputError("OpenVINO support is not installed: pip install 'yoloworld[openvino]' (openvino)") from None
    return openvino


def detector_xml(path: str | os.PathLike) -> Path:
    """The detector's `.xml` in an export folder (the text encoder's `NAME.text.xml` beside it is not it)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.glob("*.xml") if not p.name.endswith(TEXT_SUFFIX))
        if len(found) != 1:
            raise CheckpointError(f"{path}: expected one OpenVINO model (.xml) in the folder, found {len(found)}")
        return found[0]
    if not path.is_file():
        raise CheckpointError(f"{path}: no such OpenVINO model (.xml) or export folder")
    return path


class CompiledGraph:
    """One OpenVINO model compiled for the CPU, with a reusable infer request; called like an ONNX session run."""

    def __init__(self, path: Path, threads: int | None = None):
        ov = import_openvino()
        core = ov.Core()
        try:
            self.model = core.read_model(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path}: not a loadable OpenVINO model ({type(exc).__name__})") from None
        # f32: on CPUs with bf16 units the plugin would otherwise run fp32 layers in bf16 (scores off by ~1e-2);
        # INT8 layers stay INT8 under this hint
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(self.model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def metadata(self) -> str | None:
        if not self.model.has_rt_info([METADATA_KEY]):
            return None
        return self.model.get_rt_info([METADATA_KEY]).astype(str)

    def __call__(self, feeds: dict) -> list[np.ndarray]:
        self.request.infer({name: np.ascontiguousarray(value) for name, value in feeds.items()})
        return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]


class OpenVinoYOLOWorld(OnnxYOLOWorld):
    """The front object on OpenVINO: an export folder (or its `.xml`) with the metadata written at export.
    `threads`: CPU threads per inference (default: OpenVINO's choice, the physical cores)."""

    def __init__(self, path: str | os.PathLike, imgsz: int | None = None, threads: int | None = None):
        self.threads = threads
        super().__init__(detector_xml(path), imgsz)

    def _open(self, providers) -> dict:
        self.session = CompiledGraph(self.path, self.threads)
        return parse_metadata(self.path, self.session.metadata())

    def _open_text(self, path: Path, providers) -> CompiledGraph:
        return CompiledGraph(path, self.threads)

    def _infer(self, feeds: dict, text: bool = False) -> list[np.ndarray]:
        return (self._text_session if text else self.session)(feeds)


__all__ = ["OpenVinoYOLOWorld", "CompiledGraph", "detector_xml", "import_openvino"]
