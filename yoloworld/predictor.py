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

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from yoloworld.errors import InputError
from yoloworld.images import video_writer
from yoloworld.negatives import suppress_negatives
from yoloworld.pipeline import PreparedBatch, prefetched, prepare_batch
from yoloworld.postprocess import Detections, detections_from
from yoloworld.prompts import encode_prompts
from yoloworld.results import Results
from yoloworld.thresholds import ClassThresholds, keep_above, per_class_tensors
from yoloworld.transforms import LetterboxInfo
from yoloworld.vocabulary import Vocabulary

logger = logging.getLogger(__name__)
MAX_IMGSZ = 4096  # 4096^2 x 3 float32 = 200 MB per image; larger inputs are a typo, not a model
DEFAULT_CONF = 0.05  # the score threshold of a model without calibrated thresholds


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
    thresholds: ClassThresholds | None = None  # calibrated per-class thresholds stored with the model
    _said_thresholds = False  # which thresholds apply is said once per model

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

    def set_classes(self, classes, padding: bool = True, negatives=None):
        """`classes`: ["person", ["car", "automobile"], VisualPrompt("mug.jpg"), ...] or "person,car|automobile".
        The padding prompt is appended when the vocabulary has none (the released models were trained with it).
        `negatives`: prompts scored with the classes, never reported; a detection whose box a negative scores
        higher is dropped (see yoloworld.negatives)."""
        vocabulary = Vocabulary.build(classes, padding, negatives)
        self.text_embeds = self.encode_prompts(vocabulary.texts)
        self.vocabulary = vocabulary
        return self

    def predict(self, images, conf: float | None = None, iou: float = 0.7, max_det: int = 300, batch_size: int = 8,
                per_image_classes: list | None = None, nms_pre: int = 30000,
                official_masks: bool = False, rect: bool = False, slice: int | None = None,
                slice_overlap: float = 0.2, slice_full: bool = True) -> list[Results]:
        """Detect the vocabulary in each image (a path, a BGR array or a PIL image, or a list of them).

        `conf`: one score threshold for every class; None: the calibrated per-class thresholds stored with the
        model (`yoloworld calibrate`), else DEFAULT_CONF. `per_image_classes`: one vocabulary per image instead of
        the shared one. Segmentation models also give
        `Results.masks`; `official_masks` reproduces the official padding cut (its bottom/right bug), for parity.
        `rect`: letterbox each batch to the smallest multiple of 32 holding it instead of `imgsz` x `imgsz` (faster
        on non-square images). `slice`: detect in tiles of this many pixels overlapping by `slice_overlap`, plus
        the whole image unless `slice_full` is False, merged (small objects; see `yoloworld.slicing`).
        """
        from yoloworld.slicing import Slicing

        settings = Settings(DEFAULT_CONF if conf is None else conf, iou, max_det, nms_pre, official_masks)
        slicing = None if slice is None else Slicing(slice, slice_overlap, slice_full)
        if rect:
            self.check_rect()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch size {batch_size!r}: must be a positive whole number")
        if not isinstance(images, (list, tuple)):
            images = [images]
        vocabularies = self._vocabularies(len(images), per_image_classes)
        starts = range(0, len(images), batch_size)  # (`slice` is the tile-size argument here)
        results = []
        for start, prepared in zip(starts, self.prepared([images[s:s + batch_size] for s in starts], rect)):
            results += self.results_of(prepared, settings, vocabularies[start:start + batch_size],
                                       calibrated=conf is None, slicing=slicing)
        return results

    def _class_thresholds(self, vocabularies: list) -> list:
        """Per image its (C,) calibrated thresholds, or None each without stored thresholds; said once."""
        if self.thresholds is None:
            return [None] * len(vocabularies)
        if not self._said_thresholds:
            self._said_thresholds = True
            logger.info("using the model's %s (others %.3f); --conf / conf= sets one threshold for all",
                        self.thresholds.describe(vocabularies[0][0].classes), self.thresholds.fallback)
        return per_class_tensors(self.thresholds, [vocabulary for vocabulary, _ in vocabularies])

    def track(self, source, persist: bool = True, tracker: str = "bytetrack", conf: float = 0.1, iou: float = 0.7,
              max_det: int = 300, track_conf: float | None = None, class_conf: dict[str, float] | None = None,
              frame_rate: float = 30.0, keep_up: bool = True, stream_options=None, **options):
        """Yield one `Results` per frame of `source` with `track_ids` (see `yoloworld.tracking`): a video, a
        folder or list of frames, a camera index or stream URL, or one image per call (your own frame loop).

        `persist`: go on with the tracks of the previous call (same tracker settings), else start afresh.
        `track_conf`: the score that starts a track (default 0.25), `class_conf` per class name. `set_classes`
        between frames keeps the ids of the classes that stay. `keep_up`: a live source gives its newest frame
        and drops stale ones (`yoloworld.streams.LatestFrames`); `stream_options`: its `StreamOptions`.
        `options`: `predict`'s (`rect`, `slice`, `slice_overlap`, `slice_full`)."""
        from yoloworld.sources import source_frames
        from yoloworld.streams import StreamOptions
        from yoloworld.tracking import TRACK_CONF, ClassTracks

        Settings(conf, iou, max_det)  # bad settings fail here, not at the first frame
        settings = (tracker, frame_rate, TRACK_CONF if track_conf is None else track_conf, class_conf)
        tracks = getattr(self, "_tracks", None)
        if not persist or tracks is None or tracks[0] != settings:
            tracks = self._tracks = (settings, ClassTracks(*settings))
        frames = source_frames(source, stream_options or StreamOptions(), keep_up)
        return self._tracked(frames, tracks[1], conf, iou, max_det, options)

    def _tracked(self, frames, tracks, conf: float, iou: float, max_det: int, options: dict):
        for index, frame in frames:
            result = self.track_frame(frame, index, tracks, conf, iou, max_det, **options)
            if hasattr(frames, "dropped"):  # a live source: the stale frames skipped so far
                result.extra["dropped"] = frames.dropped
            yield result

    def track_frame(self, frame, index: int, tracks, conf: float, iou: float, max_det: int, **options) -> Results:
        """One frame through detection (`options`: `predict`'s) and `tracks` (a `yoloworld.tracking.ClassTracks`)."""
        result = self.predict([frame], conf, iou, max_det, **options)[0]
        result.extra = {"frame": index}
        return tracks.update(result, self.vocabulary.stored_classes())

    def prepared(self, batches: Iterable[list], rect: bool = False, skip_unreadable: bool = False
                 ) -> Iterator[PreparedBatch]:
        """Each batch of images read and letterboxed, the next ones in a worker thread while the caller runs the
        network on this one (`yoloworld.pipeline`). `skip_unreadable`: leave unreadable images out (see
        `PreparedBatch.skipped`) instead of raising."""
        return prefetched(batches, partial(prepare_batch, imgsz=self.imgsz, rect=rect,
                                           skip_unreadable=skip_unreadable))

    def results_of(self, prepared: PreparedBatch, settings: Settings, vocabularies: list | None = None,
                   calibrated: bool = False, slicing=None) -> list[Results]:
        """The `Results` of a prepared batch; `vocabularies`: one (Vocabulary, embeddings) per image, default the
        current vocabulary. `calibrated`: each class at the model's calibrated threshold where it stores them
        (`settings.conf` otherwise); `slicing`: a `yoloworld.slicing.Slicing` (tiles of the original images)."""
        from yoloworld.slicing import detect_sliced

        if prepared.inputs is None:
            return []
        vocabularies = vocabularies or self._vocabularies(len(prepared.images), None)
        per_class = self._class_thresholds(vocabularies) if calibrated else [None] * len(vocabularies)
        if per_class[0] is not None:  # one selection at the lowest, then each class at its own
            settings = replace(settings, conf=min(float(t.min()) for t in per_class))
        if slicing is None:
            detections = self.detect(prepared.inputs, prepared.infos, vocabularies, settings)
        else:
            detections = [detect_sliced(self, image, vocabulary, settings, prepared.rect, slicing)
                          for image, vocabulary in zip(prepared.images, vocabularies)]
        detections = [det if thresholds is None else keep_above(det, thresholds)
                      for det, thresholds in zip(detections, per_class)]
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
        outputs = suppress_negatives(self.forward(batch, [embeds for _, embeds in vocabularies]),
                                     [vocabulary for vocabulary, _ in vocabularies])
        return detections_from(outputs, infos, settings.conf, settings.iou, settings.max_det, settings.nms_pre,
                               [vocabulary.groups() for vocabulary, _ in vocabularies], settings.official_masks)


def predict_frames(model, frames, source: str, video: Path | None, fps: float, args, emit, step=None) -> None:
    """Detect in each (index, frame) of a video or stream; each record goes to `emit` as soon as it is made, the
    annotated frames to `video`, which is closed properly however the loop ends (Ctrl-C included). `step`:
    (frame, index) -> (Results, annotated frame or None) instead of plain detection (tracking)."""
    writer, step = None, step or _detect_step(model, args)
    try:
        for index, frame in islice(frames, args.max_frames):
            result, annotated = step(frame, index)
            result.file, result.extra = source, {"frame": index, **result.extra}
            if hasattr(frames, "dropped"):  # a live source read newest-first: the stale frames skipped so far
                result.extra["dropped"] = frames.dropped
            emit(result.to_dict())
            if video:
                writer = writer or video_writer(video, fps, frame.shape)
                writer.write(annotated if annotated is not None else result.plot(frame))
    finally:
        if writer is not None:
            writer.release()


def prediction_options(args) -> dict:
    """`predict`'s keyword options from the CLI flags a command has (--rect, --slice...)."""
    options = {"rect": getattr(args, "rect", False)}
    if getattr(args, "slice", None):
        options.update(slice=args.slice, slice_overlap=args.slice_overlap, slice_full=not args.slice_no_full)
    return options


def _detect_step(model, args):
    def step(frame, index):
        return model.predict([frame], args.conf, args.iou, args.max_det, **prediction_options(args))[0], None
    return step


__all__ = ["DEFAULT_CONF", "Predictor", "Settings", "check_imgsz", "MAX_IMGSZ", "predict_frames", "prediction_options"]
