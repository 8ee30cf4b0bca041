"""The prediction loop every runtime shares: read images, letterbox, run, select, map boxes back, build `Results`.

    image -> as_bgr -> letterbox_batch -> [runtime forward] -> select (NMS) -> boxes_to_original -> Results
    (reading and letterboxing of the next batches run in a worker thread: `yoloworld.pipeline`)

The letterbox is square (`imgsz` x `imgsz`, the official test pipeline) unless `predict(..., rect=True)` asks for
the smallest multiple-of-32 canvas that holds the batch (Ultralytics' `rect`): same resize, fewer pixels.

A runtime (PyTorch in `yoloworld.api.YOLOWorld`, ONNX Runtime in `yoloworld.export.onnx_runtime.OnnxYOLOWorld`)
supplies only `encode_text` (and `encode_images` for reference images) and `forward`: per-image scores and boxes
in network-input pixels, plus mask coefficients and prototypes for a segmentation model. Selection and masks are
`yoloworld.postprocess.detections_from`, the same function validation during training uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from yoloworld.errors import InputError
from yoloworld.images import video_writer
from yoloworld.pipeline import PreparedBatch, prefetched, prepare_batch
from yoloworld.postprocess import Detections, detections_from
from yoloworld.prompts import encode_prompts
from yoloworld.results import Results
from yoloworld.transforms import LetterboxInfo
from yoloworld.vocabulary import Vocabulary

MAX_IMGSZ = 4096  # 4096^2 x 3 float32 = 200 MB per image; larger inputs are a typo, not a model


@dataclass(frozen=True)
class Settings:
    """What to keep: scores above `conf`, NMS at `iou`, at most `max_det` per image from the `nms_pre` best.
    `official_masks`: cut the letterbox padding from masks as the official code does (see yoloworld.masks)."""

    conf: float = 0.05
    iou: float = 0.7
    max_det: int = 300
    nms_pre: int = 30000
    official_masks: bool = False

    def __post_init__(self):
        for name in ("conf", "iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{name} {value!r}: must be a number")
        if not 0 <= self.conf <= 1:
            raise InputError(f"conf {self.conf}: must be between 0 and 1")
        if not 0 < self.iou <= 1:
            raise InputError(f"iou {self.iou}: must be in (0, 1]")
        for name in ("max_det", "nms_pre"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} {value!r}: must be a positive whole number")


def check_imgsz(imgsz, what: str = "imgsz") -> int:
    """The network input size: a positive multiple of 32 (the largest stride), at most MAX_IMGSZ."""
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < 32 or imgsz % 32 or imgsz > MAX_IMGSZ:
        raise InputError(f"{what} {imgsz!r}: must be a multiple of 32 between 32 and {MAX_IMGSZ} (e.g. 640)")
    return imgsz


class Predictor:
    """Base of the front objects. Subclasses set `imgsz` and `vocabulary`, and implement `encode_text` and
    `forward` (or `detect`, for a graph that selects detections itself)."""

    imgsz: int = 640
    vocabulary: Vocabulary | None = None
    text_embeds = None  # embeddings of vocabulary.texts; None where the vocabulary is baked in
    embed_dims: int | None = None  # width of a class embedding, where the runtime knows it

    @property
    def class_names(self) -> list[str]:
        return self.vocabulary.names if self.vocabulary else []

    def encode_text(self, texts: list[str]):
        raise NotImplementedError

    def encode_images(self, prompts: list):
        """(V, D) class embeddings of `VisualPrompt`s."""
        raise InputError("this runtime cannot encode reference images: write their embeddings with `yoloworld embed "
                         "--images ... --out refs.npy` and pass the .npy as the classes file (--classes-file refs.npy)")

    def encode_prompts(self, prompts: list):
        """(T, D) embeddings of a flat prompt list (texts, reference images, embeddings) in order."""
        return encode_prompts(prompts, self.encode_text, self.encode_images, getattr(self, "device", None),
                              self.embed_dims)

    def check_rect(self) -> None:
        """Raise `InputError` where this runtime cannot take non-square inputs (a fixed-size exported graph)."""

    def forward(self, batch: np.ndarray, text_embeds: list) -> tuple[torch.Tensor, ...]:
        """(B, 3, H, W) float32 RGB in [0, 1] and per-image embeddings -> scores (B, P, T) in [0, 1] and
        boxes (B, P, 4) xyxy in network-input pixels; segmentation models add mask coefficients (B, P, M) and
        prototypes (B, M, S / 4, S / 4)."""
        raise NotImplementedError

    def set_classes(self, classes, padding: bool = True):
        """`classes`: ["person", ["car", "automobile"], VisualPrompt("mug.jpg"), ...] or "person,car|automobile".
        The padding prompt is appended when the vocabulary has none (the released models were trained with it)."""
        vocabulary = Vocabulary.build(classes, padding)
        self.text_embeds = self.encode_prompts(vocabulary.texts)
        self.vocabulary = vocabulary
        return self

    def predict(self, images, conf: float = 0.05, iou: float = 0.7, max_det: int = 300, batch_size: int = 8,
                per_image_classes: list | None = None, nms_pre: int = 30000,
                official_masks: bool = False, rect: bool = False) -> list[Results]:
        """Detect the vocabulary in each image (a path, a BGR array or a PIL image, or a list of them).

        `per_image_classes`: one vocabulary per image instead of the shared one. Segmentation models also give
        `Results.masks`; `official_masks` reproduces the official padding cut (its bottom/right bug), for parity.
        `rect`: letterbox each batch to the smallest multiple of 32 holding it instead of `imgsz` x `imgsz` (faster
        on non-square images).
        """
        settings = Settings(conf, iou, max_det, nms_pre, official_masks)
        if rect:
            self.check_rect()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch size {batch_size!r}: must be a positive whole number")
        if not isinstance(images, (list, tuple)):
            images = [images]
        vocabularies = self._vocabularies(len(images), per_image_classes)
        chunks = [slice(start, start + batch_size) for start in range(0, len(images), batch_size)]
        results = []
        for chunk, prepared in zip(chunks, self.prepared([images[chunk] for chunk in chunks], rect)):
            results += self.results_of(prepared, settings, vocabularies[chunk])
        return results

    def prepared(self, batches: Iterable[list], rect: bool = False, skip_unreadable: bool = False
                 ) -> Iterator[PreparedBatch]:
        """Each batch of images read and letterboxed, the next ones in a worker thread while the caller runs the
        network on this one (`yoloworld.pipeline`). `skip_unreadable`: leave unreadable images out (see
        `PreparedBatch.skipped`) instead of raising."""
        return prefetched(batches, partial(prepare_batch, imgsz=self.imgsz, rect=rect,
                                           skip_unreadable=skip_unreadable))

    def results_of(self, prepared: PreparedBatch, settings: Settings, vocabularies: list | None = None
                   ) -> list[Results]:
        """The `Results` of a prepared batch; `vocabularies`: one (Vocabulary, embeddings) per image, default the
        current vocabulary."""
        if prepared.inputs is None:
            return []
        vocabularies = vocabularies or self._vocabularies(len(prepared.images), None)
        detections = self.detect(prepared.inputs, prepared.infos, vocabularies, settings)
        return [Results(det.boxes.cpu().numpy().astype(np.float32), det.scores.cpu().float().numpy(),
                        det.labels.cpu().numpy().astype(np.int64), vocabulary.names, image.shape[:2],
                        str(source) if isinstance(source, (str, Path)) else None,
                        masks=None if det.masks is None else det.masks.cpu().numpy())
                for det, image, (vocabulary, _), source in zip(detections, prepared.images, vocabularies,
                                                               prepared.sources)]

    def _vocabularies(self, count: int, per_image_classes) -> list[tuple[Vocabulary, object]]:
        if per_image_classes is None:
            if self.vocabulary is None:
                raise InputError("no classes set: call set_classes([...]) or pass --classes")
            return [(self.vocabulary, self.text_embeds)] * count
        if len(per_image_classes) != count:
            raise InputError(f"per_image_classes has {len(per_image_classes)} vocabularies for {count} images")
        built = {}
        for classes in per_image_classes:
            key = repr(classes)
            if key not in built:
                vocabulary = Vocabulary.build(classes)
                built[key] = (vocabulary, self.encode_prompts(vocabulary.texts))
        return [built[repr(classes)] for classes in per_image_classes]

    def detect(self, batch: np.ndarray, infos: list[LetterboxInfo], vocabularies: list,
               settings: Settings) -> list[Detections]:
        """Per-image detections in original-image pixels (with masks for a segmentation model)."""
        outputs = self.forward(batch, [embeds for _, embeds in vocabularies])
        return detections_from(outputs, infos, settings.conf, settings.iou, settings.max_det, settings.nms_pre,
                               [vocabulary.groups() for vocabulary, _ in vocabularies], settings.official_masks)


def predict_frames(model, frames, source: str, video: Path | None, fps: float, args, emit) -> None:
    """Detect in each (index, frame) of a video or stream; each record goes to `emit` as soon as it is made, the
    annotated frames to `video`, which is closed properly however the loop ends (Ctrl-C included)."""
    writer = None
    try:
        for index, frame in islice(frames, args.max_frames):
            result = model.predict([frame], args.conf, args.iou, args.max_det, rect=getattr(args, "rect", False))[0]
            result.file, result.extra = source, {"frame": index}
            emit(result.to_dict())
            if video:
                writer = writer or video_writer(video, fps, frame.shape)
                writer.write(result.plot(frame))
    finally:
        if writer is not None:
            writer.release()


__all__ = ["Predictor", "Settings", "check_imgsz", "MAX_IMGSZ", "predict_frames"]
