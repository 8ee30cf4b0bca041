"""Run an exported `.onnx` detector with ONNX Runtime behind the same interface as `YOLOWorld`:

    model = OnnxYOLOWorld("model.onnx")           # reads the `yoloworld` metadata written at export
    model.set_classes(["person", "car"])          # dynamic vocabulary: encoded by model.text.onnx
    results = model.predict(images, conf=0.05)    # list of Results, original-image pixels

Only the graph run is specific: reading images, the letterbox, selection (synonym merge, padding prompt dropped,
class-aware NMS) and mapping boxes back are `yoloworld.predictor.Predictor`'s, shared with `YOLOWorld`. Another
runtime of the same graphs (`yoloworld.export.openvino_runtime`) overrides only `_open`, `_open_text` and `_infer`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from yoloworld.errors import CheckpointError, InputError
from yoloworld.postprocess import Detections
from yoloworld.predictor import Predictor, Settings, check_imgsz
from yoloworld.thresholds import ClassThresholds
from yoloworld.transforms import boxes_to_original
from yoloworld.vocabulary import Vocabulary

logger = logging.getLogger(__name__)
METADATA_KEY = "yoloworld"


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise InputError("ONNX support is not installed: pip install 'yoloworld[export]' (onnx, onnxruntime)") from None
    return onnxruntime


def _session(path: Path, providers: list[str] | None):
    ort = import_onnxruntime()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    try:
        return ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:
        raise CheckpointError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from None


def parse_metadata(path: Path, raw: str | None) -> dict:
    """The `yoloworld` metadata (JSON) written at export, checked."""
    if raw is None:
        raise CheckpointError(f"{path}: not exported by yoloworld (no '{METADATA_KEY}' metadata); "
                              "export it with: yoloworld export --weights W --format onnx")
    try:
        meta = json.loads(raw)
        meta["imgsz"], meta["vocabulary"] = int(meta["imgsz"]), str(meta["vocabulary"])
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path}: damaged '{METADATA_KEY}' metadata") from None
    return meta


class OnnxYOLOWorld(Predictor):
    """The front object on ONNX Runtime: an exported graph with the metadata written at export."""

    def __init__(self, path: str | os.PathLike, imgsz: int | None = None, providers: list[str] | None = None):
        self.path = Path(path)
        self.meta = self._open(providers)
        self.imgsz = self._input_size(imgsz)
        self.dynamic = self.meta["vocabulary"] == "dynamic"
        self.embed_dims = self.meta.get("embed_dims")  # a class embedding of another width is a one-line error
        self.vocabulary: Vocabulary | None = None
        self.text_embeds: np.ndarray | None = None
        self._text_session = self._tokenizer = None
        if self.dynamic and self.meta.get("text_encoder"):
            self._text_session = self._open_text(self.path.parent / self.meta["text_encoder"], providers)
        self.thresholds = ClassThresholds.from_meta(self.meta.get("thresholds"), str(self.path))
        negatives = self.meta.get("negatives") or []
        if self.meta.get("classes"):
            if self.dynamic:
                self.set_classes(self.meta["classes"], negatives=negatives)
            else:
                self.vocabulary = Vocabulary(self.meta["classes"], bool(self.meta["padded"]), negatives=negatives)

    # ------------------------------------------------------------------ the runtime-specific part
    def _open(self, providers) -> dict:
        """Load the detector graph; returns its `yoloworld` metadata."""
        self.session = _session(self.path, providers)
        return parse_metadata(self.path, self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY))

    def _open_text(self, path: Path, providers):
        return _session(path, providers)

    def _infer(self, feeds: dict, text: bool = False) -> list[np.ndarray]:
        """Every output of the detector graph (or of the text encoder) for these named inputs."""
        return (self._text_session if text else self.session).run(None, feeds)

    # ------------------------------------------------------------------ input size
    def _input_size(self, imgsz: int | None) -> int:
        """The letterbox size: any multiple of 32 for a graph exported with dynamic height and width, else the
        size it was exported for."""
        if self.meta.get("dynamic_shape"):
            return self.meta["imgsz"] if imgsz is None else check_imgsz(imgsz)
        if imgsz is not None and imgsz != self.meta["imgsz"]:
            size = self.meta["imgsz"]
            logger.warning(f"warning: {self.path.name} was exported for fixed {size}x{size} inputs: imgsz (--imgsz) "
                           f"{imgsz} is ignored and the export's size {size} is used (export with --dynamic-shape "
                           "to choose the size at run time)")
        return self.meta["imgsz"]

    def check_rect(self) -> None:
        if not self.meta.get("dynamic_shape"):
            raise InputError(f"{self.path.name} was exported for fixed {self.imgsz}x{self.imgsz} inputs; rect "
                             "inference needs a graph exported with --dynamic-shape")

    # ------------------------------------------------------------------ vocabulary
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(T, D) L2-normalised embeddings from the exported text encoder (dynamic-vocabulary exports)."""
        if not self.dynamic:
            raise InputError(f"{self.path}: the vocabulary is baked in; export with --vocab dynamic to change it")
        if self._text_session is None:
            raise InputError(f"{self.path}: exported without a text encoder; re-export from a checkpoint with one")
        if self._tokenizer is None:
            from yoloworld.models.text import TextEncoder, load_tokenizer

            # the PyTorch path's own tokenizer call (padding to the longest text), without a text model
            self._tokenizer = TextEncoder(None, load_tokenizer(self.path.parent / self.meta["tokenizer"]))
        tokens = self._tokenizer.tokenize(list(texts))
        feeds = {"input_ids": tokens["input_ids"].numpy(), "attention_mask": tokens["attention_mask"].numpy()}
        return self._infer(feeds, text=True)[0]

    def set_classes(self, classes, padding: bool = True, negatives=None) -> "OnnxYOLOWorld":
        if self.dynamic:
            return super().set_classes(classes, padding, negatives)
        vocabulary = Vocabulary.build(classes, padding, negatives)
        baked = ", ".join(self.class_names) or "none"
        if any(not isinstance(prompt, str) for group in vocabulary.classes for prompt in group):
            raise InputError(f"{self.path}: the vocabulary is baked in at export ({baked}): reference images "
                             "(--visual-prompt) and embeddings cannot replace it; use the PyTorch checkpoint, or "
                             "export with --vocab dynamic and pass `yoloworld embed --images` output as --classes-file")
        if self.vocabulary is None or vocabulary.texts != self.vocabulary.texts:
            raise InputError(f"{self.path}: the vocabulary is baked in at export ({baked}"
                             f"{self._baked_negatives()}); re-export with these --classes / --negative, or export "
                             "with --vocab dynamic to choose classes at run time")
        return self

    def _baked_negatives(self) -> str:
        negatives = self.vocabulary.negatives if self.vocabulary else []
        return f"; negatives {', '.join(negatives)}" if negatives else ""

    # ------------------------------------------------------------------ inference
    def run(self, batch: np.ndarray, text_embeds: np.ndarray | None = None) -> list[np.ndarray]:
        """Raw graph outputs for a letterboxed float32 RGB batch in [0, 1] (B, 3, S, S)."""
        feeds = {"images": batch}
        if self.dynamic:
            text_embeds = self.text_embeds if text_embeds is None else text_embeds
            if text_embeds is None:
                raise InputError("no classes set: call set_classes([...]) or pass --classes")
            feeds["text_embeds"] = np.asarray(text_embeds, dtype=np.float32)
        if self.meta["dynamic_batch"] or len(batch) == 1:
            return self._infer(feeds)
        parts = [self._infer({**feeds, "images": batch[i:i + 1]}) for i in range(len(batch))]
        if self.meta["nms"]:  # rows carry the image index: renumber them
            for i, (detections,) in enumerate(parts):
                detections[:, 0] = i
        return [np.concatenate(outputs) for outputs in zip(*parts)]

    def forward(self, batch: np.ndarray, text_embeds: list) -> tuple[torch.Tensor, ...]:
        """Scores and boxes (and a segmentation graph's coefficients and prototypes) as torch tensors."""
        # the graph takes one vocabulary: images with different vocabularies run one by one
        if any(e is not text_embeds[0] for e in text_embeds):
            outputs = [self.run(batch[i:i + 1], e) for i, e in enumerate(text_embeds)]
            scores = [torch.from_numpy(o[0][0]) for o in outputs]
            longest = max(s.shape[-1] for s in scores)
            scores = [torch.nn.functional.pad(s, (0, longest - s.shape[-1]), value=0.0) for s in scores]
            rest = [torch.stack([torch.from_numpy(o[k][0]) for o in outputs]) for k in range(1, len(outputs[0]))]
            return (torch.stack(scores), *rest)
        return tuple(torch.from_numpy(output) for output in self.run(batch, text_embeds[0]))

    def detect(self, batch, infos, vocabularies, settings: Settings) -> list[Detections]:
        if not self.meta["nms"]:
            return super().detect(batch, infos, vocabularies, settings)
        nms_pre = self.meta.get("nms_pre")  # None: exported before the in-graph top-k existed
        if (settings.conf < self.meta["conf"] or settings.iou != self.meta["iou"]
                or settings.max_det > self.meta["max_det"] or (nms_pre is not None and settings.nms_pre != nms_pre)):
            logger.warning(f"{self.path.name} has NMS built in (conf {self.meta['conf']}, iou {self.meta['iou']}, "
                           f"max_det {self.meta['max_det']}, nms_pre {nms_pre}); lower conf / other iou / more "
                           "detections / another nms_pre need a re-export")
        (rows,) = self.run(batch)
        return [self._from_nms_rows(rows, i, info, settings) for i, info in enumerate(infos)]

    @staticmethod
    def _from_nms_rows(rows: np.ndarray, index: int, info, settings: Settings) -> Detections:
        """In-graph NMS rows (image, x1, y1, x2, y2, score, class) of one image -> detections."""
        rows = rows[(rows[:, 0] == index) & (rows[:, 5] > settings.conf)]
        rows = torch.from_numpy(rows[np.argsort(-rows[:, 5], kind="stable")][:settings.max_det].copy())
        return Detections(boxes_to_original(rows[:, 1:5], info), rows[:, 5], rows[:, 6].long())


__all__ = ["OnnxYOLOWorld", "import_onnxruntime", "parse_metadata"]
