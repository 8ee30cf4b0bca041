"""Run an exported `.onnx` detector with ONNX Runtime behind the same interface as `YOLOWorld`:

    model = OnnxDetector("model.onnx")            # reads the `yoloworld` metadata written at export
    model.set_classes(["person", "car"])          # dynamic vocabulary: encoded by model.text.onnx
    results = model.predict(images, conf=0.05)    # list of Results, original-image pixels

Pre- and post-processing are the PyTorch path's own: `letterbox`, and `yoloworld.postprocess.select`
(synonym merge, padding prompt dropped, class-aware NMS, un-letterbox), so results match `YOLOWorld.predict`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from yoloworld.data.letterbox import letterbox_batch
from yoloworld.errors import CheckpointError, InputError
from yoloworld.images import as_bgr
from yoloworld.postprocess import select, to_original
from yoloworld.results import Results
from yoloworld.vocabulary import Vocabulary

log = logging.getLogger("yoloworld")
METADATA_KEY = "yoloworld"


def _session(path: Path, providers: list[str] | None):
    import onnxruntime as ort

    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    try:
        return ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:
        raise CheckpointError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from None


class OnnxDetector:
    def __init__(self, path: str | os.PathLike, imgsz: int | None = None, providers: list[str] | None = None):
        self.path = Path(path)
        self.session = _session(self.path, providers)
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise CheckpointError(f"{self.path}: not exported by yoloworld (no '{METADATA_KEY}' metadata); "
                                  "export it with: yoloworld export --weights W --format onnx")
        self.meta = json.loads(raw)
        self.imgsz = int(self.meta["imgsz"])
        if imgsz is not None and imgsz != self.imgsz:
            log.warning(f"{self.path.name} was exported for {self.imgsz}x{self.imgsz} inputs; using that, not {imgsz}")
        self.dynamic = self.meta["vocabulary"] == "dynamic"
        self.vocabulary: Vocabulary | None = None
        self._text_embeds: np.ndarray | None = None
        self._text_session = self._tokenizer = None
        if self.dynamic and self.meta.get("text_encoder"):
            self._text_session = _session(self.path.parent / self.meta["text_encoder"], providers)
        if self.meta.get("classes"):
            if self.dynamic:
                self.set_classes(self.meta["classes"])
            else:
                self.vocabulary = Vocabulary(self.meta["classes"], bool(self.meta["padded"]))

    @property
    def class_names(self) -> list[str]:
        return self.vocabulary.names if self.vocabulary else []

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
        return self._text_session.run(["text_embeds"], feeds)[0]

    def set_classes(self, classes, padding: bool = True) -> "OnnxDetector":
        vocabulary = Vocabulary.build(classes, padding)
        if not self.dynamic:
            if self.vocabulary is None or vocabulary.texts != self.vocabulary.texts:
                baked = ", ".join(self.class_names) or "none"
                raise InputError(f"{self.path}: the vocabulary is baked in at export ({baked}); re-export with "
                                 "these --classes, or export with --vocab dynamic to choose classes at run time")
            return self
        self._text_embeds = self.encode_text(vocabulary.texts)
        self.vocabulary = vocabulary
        return self

    # ------------------------------------------------------------------ inference
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Raw graph outputs for a letterboxed float32 RGB batch in [0, 1] (B, 3, S, S)."""
        feeds = {"images": batch}
        if self.dynamic:
            if self._text_embeds is None:
                raise InputError("no classes set: call set_classes([...]) or pass --classes")
            feeds["text_embeds"] = self._text_embeds.astype(np.float32)
        if self.meta["dynamic_batch"] or len(batch) == 1:
            return self.session.run(None, feeds)
        parts = [self.session.run(None, {**feeds, "images": batch[i:i + 1]}) for i in range(len(batch))]
        if self.meta["nms"]:  # rows carry the image index: renumber them
            for i, (detections,) in enumerate(parts):
                detections[:, 0] = i
        return [np.concatenate(outputs) for outputs in zip(*parts)]

    def predict(self, images, conf: float = 0.05, iou: float = 0.7, max_det: int = 300, batch_size: int = 8,
                nms_pre: int = 30000) -> list[Results]:
        if self.vocabulary is None:
            raise InputError("no classes set: call set_classes([...]) or pass --classes")
        if not isinstance(images, (list, tuple)):
            images = [images]
        if self.meta["nms"] and (conf < self.meta["conf"] or iou != self.meta["iou"] or max_det > self.meta["max_det"]):
            log.warning(f"{self.path.name} has NMS built in (conf {self.meta['conf']}, iou {self.meta['iou']}, "
                        f"max_det {self.meta['max_det']}); lower conf / other iou / more detections need a re-export")
        results = []
        for start in range(0, len(images), batch_size):
            results += self._predict_batch(list(images[start:start + batch_size]), conf, iou, max_det, nms_pre)
        return results

    def _predict_batch(self, images, conf, iou, max_det, nms_pre) -> list[Results]:
        bgr = [as_bgr(image) for image in images]
        batch, infos = letterbox_batch(bgr, self.imgsz)
        outputs = self.run(batch)
        results = []
        for i, (image, info, source) in enumerate(zip(bgr, infos, images)):
            if self.meta["nms"]:
                xyxy, scores, labels = self._from_nms(outputs[0], i, info, conf, max_det)
            else:
                scores_i, boxes_i = torch.from_numpy(outputs[0][i]), torch.from_numpy(outputs[1][i])
                det = select(scores_i, boxes_i, info, conf, iou, max_det, nms_pre, self.vocabulary.groups())
                xyxy, scores, labels = det.boxes.numpy(), det.scores.numpy(), det.labels.numpy()
            results.append(Results(xyxy.astype(np.float32), scores.astype(np.float32), labels.astype(np.int64),
                                   self.vocabulary.names, image.shape[:2],
                                   str(source) if isinstance(source, (str, Path)) else None))
        return results

    @staticmethod
    def _from_nms(detections: np.ndarray, index: int, info, conf: float, max_det: int):
        rows = detections[(detections[:, 0] == index) & (detections[:, 5] > conf)]
        rows = rows[np.argsort(-rows[:, 5], kind="stable")][:max_det]
        boxes = to_original(torch.from_numpy(rows[:, 1:5].copy()), info)
        h, w = info.orig_hw
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        return boxes.numpy(), rows[:, 5], rows[:, 6].astype(np.int64)


__all__ = ["OnnxDetector"]
