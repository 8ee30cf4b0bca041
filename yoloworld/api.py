"""`YOLOWorld`: the one front object. Load weights, set a vocabulary, predict.

    model = YOLOWorld.from_pretrained("yolo_world_v2_s")
    model.set_classes(["person", ["car", "automobile"], "traffic light"])
    results = model.predict(["street.jpg"], conf=0.05)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from yoloworld.data.letterbox import letterbox_batch
from yoloworld.errors import InputError
from yoloworld.images import as_bgr
from yoloworld.models.boxes import dfl_integral
from yoloworld.models.checkpoint import TEXT_PREFIX, is_fused, load_detector, save_checkpoint
from yoloworld.models.detector import YOLOWorldDetector
from yoloworld.models.text import TextEmbeddingCache
from yoloworld.models.weights import default_imgsz
from yoloworld.postprocess import postprocess
from yoloworld.results import Results
from yoloworld.vocabulary import Vocabulary


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device} requested but CUDA is not available: use --device cpu")
    return device


class YOLOWorld:
    def __init__(self, model: YOLOWorldDetector, device="cpu", imgsz: int = 640):
        self.device = resolve_device(device)
        # channels_last: the fastest layout on CPU here (benchmarks/latency.py), and its conv kernels match the
        # official outputs most closely (tests/test_parity.py)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.imgsz = imgsz
        self.vocabulary: Vocabulary | None = None
        self._text_embeds: torch.Tensor | None = None  # (T, D) for self.vocabulary.texts
        self._cache = TextEmbeddingCache(model.text_model) if model.text_model is not None else None

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, text_model: str | os.PathLike | None = None,
                        device="cpu", imgsz: int | None = None, fuse: bool = False) -> "YOLOWorld":
        """An official `.pth`, a yoloworld checkpoint, an Ultralytics `.pt`, or a short name (`yolo_world_v2_s`,
        `yolov8s-worldv2`, downloaded once). `imgsz`: network input size; default the size stored with the model,
        else the size the named release was trained at, else 640."""
        model, checkpoint = load_detector(name_or_path, text_model=text_model)
        if fuse:
            model.fuse()
        stored = (checkpoint.get("meta") or {}).get("yoloworld", {})
        api = cls(model, device, imgsz or int(stored.get("imgsz") or default_imgsz(name_or_path) or 640))
        if "class_embeddings" in checkpoint and stored.get("classes"):
            api._use_vocabulary(Vocabulary(stored["classes"], bool(stored.get("padded", False))),
                                checkpoint["class_embeddings"].float())
        elif not model.needs_text and stored.get("classes"):
            api._use_vocabulary(Vocabulary(stored["classes"], bool(stored.get("padded", False))), None)
        return api

    def save(self, path: str | os.PathLike, keep_text_model: bool = False, half: bool = False) -> None:
        """Save weights with the current vocabulary baked in; without the text tower unless asked to keep it."""
        if self.vocabulary is None:
            raise InputError("set_classes() first: the vocabulary is saved with the model")
        model = self.model
        entries = {}
        if self._text_embeds is not None:
            entries["class_embeddings"] = self._text_embeds.detach().cpu().to(torch.float16 if half else torch.float32)
        if not keep_text_model and model.text_model is not None:
            model = YOLOWorldDetector(_without_text(model.config), None)
            state = {k: v for k, v in self.model.state_dict().items() if not k.startswith(TEXT_PREFIX)}
            if is_fused(state):
                model.fuse()
            model.load_state_dict(state)
        if half:
            model = _half_copy(model)
        save_checkpoint(path, model, {"classes": self.vocabulary.classes, "padded": self.vocabulary.padded}, **entries)

    # ------------------------------------------------------------------ vocabulary
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(N, D) L2-normalised text embeddings (cached in memory and on disk)."""
        if self._cache is None:
            raise InputError("this model has no text encoder: load it with a text model (--text-model) "
                             "or use a model saved with its vocabulary")
        return self._cache.encode(list(texts))

    def set_classes(self, classes, padding: bool = True) -> "YOLOWorld":
        """`classes`: ["person", ["car", "automobile"], ...] or "person,car|automobile". The padding prompt is
        appended when the vocabulary has none (the released models were trained with padding)."""
        vocabulary = Vocabulary.build(classes, padding)
        self._use_vocabulary(vocabulary, self.encode_text(vocabulary.texts))
        return self

    def _use_vocabulary(self, vocabulary: Vocabulary, text_embeds: torch.Tensor | None) -> None:
        self.vocabulary = vocabulary
        self._text_embeds = None if text_embeds is None else text_embeds.to(self.device)

    @property
    def class_names(self) -> list[str]:
        return self.vocabulary.names if self.vocabulary else []

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def forward_raw(self, images: torch.Tensor, text_embeds: torch.Tensor | None = None):
        """Network outputs in the official layouts: cls logits (B, N, H, W) and box distances (B, 4, H, W)
        in stride units, one tensor per level. `images`: (B, 3, H, W) RGB in [0, 1]."""
        images = images.to(self.device).contiguous(memory_format=torch.channels_last)
        text_embeds = None if text_embeds is None else text_embeds.to(self.device)
        cls_logits, reg_logits = self.model(images, text_embeds)
        return cls_logits, [dfl_integral(r) for r in reg_logits]

    @torch.no_grad()
    def predict(self, images, conf: float = 0.05, iou: float = 0.7, max_det: int = 300, batch_size: int = 8,
                per_image_classes: list | None = None, nms_pre: int = 30000) -> list[Results]:
        """Detect the current vocabulary in each image (a path, a BGR array or a PIL image, or a list of them).

        `per_image_classes`: one vocabulary per image instead of the shared one.
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
        vocabularies = self._vocabularies(len(images), per_image_classes)
        results = []
        for start in range(0, len(images), batch_size):
            chunk = list(images[start:start + batch_size])
            results += self._predict_batch(chunk, vocabularies[start:start + batch_size], conf, iou, max_det, nms_pre)
        return results

    def _vocabularies(self, count: int, per_image_classes) -> list[tuple[Vocabulary, torch.Tensor | None]]:
        if per_image_classes is None:
            if self.vocabulary is None:
                raise InputError("no classes set: call set_classes([...]) or pass --classes")
            return [(self.vocabulary, self._text_embeds)] * count
        if len(per_image_classes) != count:
            raise InputError(f"per_image_classes has {len(per_image_classes)} vocabularies for {count} images")
        built = {}
        out = []
        for classes in per_image_classes:
            key = repr(classes)
            if key not in built:
                vocabulary = Vocabulary.build(classes)
                built[key] = (vocabulary, self.encode_text(vocabulary.texts).to(self.device))
            out.append(built[key])
        return out

    def _predict_batch(self, images, vocabularies, conf, iou, max_det, nms_pre) -> list[Results]:
        bgr = [as_bgr(image) for image in images]
        batch, infos = letterbox_batch(bgr, self.imgsz)
        batch = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
        text = stack_texts([embeds for _, embeds in vocabularies])
        cls_logits, reg_logits = self.model(batch, text)
        dets = postprocess(cls_logits, reg_logits, infos, conf, iou, max_det, nms_pre,
                           groups=[v.groups() for v, _ in vocabularies])
        results = []
        for image, det, (vocabulary, _), source in zip(bgr, dets, vocabularies, images):
            results.append(Results(det.boxes.cpu().numpy().astype(np.float32), det.scores.cpu().numpy(),
                                   det.labels.cpu().numpy().astype(np.int64), vocabulary.names, image.shape[:2],
                                   str(source) if isinstance(source, (str, Path)) else None))
        return results


def stack_texts(embeds: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Per-image (T_i, D) embeddings -> (B, T_max, D); shorter lists are padded by repeating their last row
    (the padding prompt), which leaves the max-over-texts attention and the kept columns unchanged."""
    if embeds[0] is None:
        return None
    longest = max(e.shape[0] for e in embeds)
    rows = [torch.cat([e, e[-1:].expand(longest - e.shape[0], -1)]) if e.shape[0] < longest else e for e in embeds]
    return torch.stack(rows)


def _without_text(config):
    from dataclasses import replace

    return replace(config, text_hidden=None)


def _half_copy(model: YOLOWorldDetector) -> YOLOWorldDetector:
    copy = YOLOWorldDetector(model.config, model.text_model)
    if is_fused(model.state_dict()):
        copy.fuse()
    copy.load_state_dict(model.state_dict())
    return copy.half()
