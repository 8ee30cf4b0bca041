"""What the web app does, without Gradio: pick weights, detect in an image or a video, export to ONNX.

The page chooses only among the weights offered when the server started (unless it was started with
`--allow-any-weights`): a browser never names a server file. Each action writes its downloadable files into a
fresh folder of its own under the session's temporary folder, which Gradio serves; one lock around the models,
because Gradio runs events in threads and a vocabulary is model state.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from yoloworld.errors import InputError
from yoloworld.files import write_json

WEIGHT_SUFFIXES = (".pt", ".pth", ".onnx")
# files with a weights suffix that are not models: a run's resume state, the text encoder of a dynamic ONNX export
NOT_MODELS = ("last_state.pt", ".text.onnx")
NOT_OFFERED = "not one of the offered weights: choose weights from the list"


@dataclass
class Detection:
    image: np.ndarray | None  # annotated RGB image (None for a video)
    video: Path | None  # annotated video
    summary: str
    records: list[dict]
    json_file: Path


def is_model_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(WEIGHT_SUFFIXES) and not name.endswith(NOT_MODELS) and path.is_file()


def find_weights(folders: list[Path], limit: int = 200) -> list[str]:
    """Model files in `folders` (three levels deep at most): the app's weights picker."""
    found = []
    for folder in folders:
        for depth in range(4):
            found += sorted(str(p) for p in Path(folder).glob("/".join(["*"] * (depth + 1))) if is_model_file(p))
    return list(dict.fromkeys(found))[:limit]


class AppSession:
    """`offered`: the weights the page may use (the first is the default); `allow_any`: also any path or name a
    browser sends. At most `cache_size` models stay loaded (the least recently used goes first)."""

    def __init__(self, offered: list[str], text_model: str | None = None, device: str = "auto",
                 imgsz: int | None = None, max_video_frames: int = 300, allow_any: bool = False,
                 cache_size: int = 2, vision_model: str | None = None):
        self.offered, self.allow_any = list(offered), allow_any
        self.text_model, self.device, self.imgsz = text_model, device, imgsz
        self.vision_model = vision_model  # the CLIP vision tower of image prompts (default: the weights', else CLIP)
        self.max_video_frames, self.cache_size = max_video_frames, cache_size
        self.folder = Path(tempfile.mkdtemp(prefix="yoloworld-app-"))
        self._models: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def check_weights(self, weights: str) -> str:
        """`weights` when the page may use them; else one message that says nothing about the server's files."""
        if not weights:
            raise InputError("choose weights first")
        if weights not in self.offered and not self.allow_any:
            raise InputError(NOT_OFFERED)
        return weights

    @property
    def loaded(self) -> list[str]:
        """The weights whose models are in memory, least recently used first."""
        return list(self._models)

    def model(self, weights: str):
        """The loaded model for `weights` (kept while among the `cache_size` most recently used)."""
        from yoloworld.api import load

        self.check_weights(weights)
        if weights in self._models:
            self._models.move_to_end(weights)
            return self._models[weights]
        model = load(weights, device=self.device, imgsz=self.imgsz, text_model=self.text_model, fuse=True,
                     vision_model=self.vision_model)
        self._models[weights] = model
        while len(self._models) > self.cache_size:
            self._models.popitem(last=False)
        return model

    def _vocabulary(self, model, classes: str, negatives: str = "", image_prompt=None):
        """The typed classes (our syntax: ',' between classes, '|' between synonyms), else the stored ones, plus
        the image-prompt class, with the typed negative prompts. What an earlier action added (its image prompt,
        its negatives) is gone when its box is emptied."""
        from yoloworld.cli.common import apply_vocabulary, merge_prompts
        from yoloworld.prompts import VisualPrompt
        from yoloworld.vocabulary import parse_class_string

        typed = parse_class_string(classes) if classes.strip() else None
        stored = model.vocabulary
        if typed is None and stored is not None and (image_prompt or stored.negatives or any(
                isinstance(p, VisualPrompt) for group in stored.classes for p in group)):
            typed = [kept for group in stored.classes
                     if (kept := [p for p in group if not isinstance(p, VisualPrompt)])]
        if image_prompt is not None:
            typed = merge_prompts(typed or [], [image_prompt])
        return apply_vocabulary(model, typed, "the Classes box (\"person, car|automobile\")",
                                negatives=negatives.strip() or None)

    @staticmethod
    def _conf(model, score: float, calibrated: bool) -> float | None:
        """None (each class at the model's calibrated threshold) when asked for and the model has them."""
        return None if calibrated and model.thresholds is not None else score

    def _run_folder(self) -> Path:
        """A new folder for one action's files; concurrent actions never share one."""
        return Path(tempfile.mkdtemp(prefix="run", dir=self.folder))

    def detect_image(self, image_rgb: np.ndarray | None, weights: str, classes: str, max_boxes: int, score: float,
                     iou: float, negatives: str = "", calibrated: bool = True, reference: np.ndarray | None = None,
                     reference_box: str = "", reference_name: str = "") -> Detection:
        """Detect in one image. `reference` (RGB), `reference_box` ("x1,y1,x2,y2" on it, empty: all of it) and
        `reference_name`: a class given by example (the library's `VisualPrompt`), beside the typed ones."""
        if image_rgb is None:
            raise InputError("upload an image first")
        image = cv2.cvtColor(np.asarray(image_rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR)
        with self._lock:
            prompt = image_prompt(reference, reference_box, reference_name)
            model = self._vocabulary(self.model(weights), classes, negatives, prompt)
            result = model.predict([image], conf=self._conf(model, score, calibrated), iou=iou,
                                   max_det=int(max_boxes))[0]
        result.file = "upload"
        records = [result.to_dict()]
        json_file = write_json(self._run_folder() / "detections.json", records, indent=1)
        return Detection(cv2.cvtColor(result.plot(image), cv2.COLOR_BGR2RGB), None, summarize(records), records,
                         json_file)

    def detect_video(self, video: str | None, weights: str, classes: str, max_boxes: int, score: float,
                     iou: float, negatives: str = "", calibrated: bool = True, reference: np.ndarray | None = None,
                     reference_box: str = "", reference_name: str = "", track: bool = False) -> Detection:
        """Detections in each frame; `track`: with track ids (ByteTrack), drawn with short trails."""
        from yoloworld.images import video_frames, video_info
        from yoloworld.predictor import predict_frames
        from yoloworld.tracking import TRACK_CONF, FrameTracker

        if not video:
            raise InputError("upload a video first")
        folder, records = self._run_folder(), []
        annotated = folder / f"{Path(video).stem}_detections.webm"
        with self._lock:
            prompt = image_prompt(reference, reference_box, reference_name)
            model = self._vocabulary(self.model(weights), classes, negatives, prompt)
            settings = SimpleNamespace(conf=self._conf(model, score, calibrated), iou=iou, max_det=int(max_boxes),
                                       max_frames=self.max_video_frames, tracker="bytetrack", track_conf=TRACK_CONF,
                                       class_track_conf={}, line=None, zone=None, no_save=False)
            fps = video_info(Path(video))[0]
            step = FrameTracker(model, settings, Path(video).name, fps).step if track else None
            predict_frames(model, video_frames(Path(video)), Path(video).name, annotated, fps, settings,
                           records.append, step)
        json_file = write_json(folder / "detections.json", records, indent=1)
        cut = f" (the first {self.max_video_frames} frames)" if len(records) == self.max_video_frames else ""
        tracked = f"; {summarize_tracks(records)}" if track else ""
        return Detection(None, annotated, summarize(records) + cut + tracked, records, json_file)

    def export_onnx(self, weights: str, classes: str) -> Path:
        """The chosen weights as ONNX with the typed vocabulary baked in (`yoloworld export --vocab baked`)."""
        from yoloworld.api import YOLOWorld
        from yoloworld.export.onnx_export import export_onnx, import_onnx, plan_export

        self.check_weights(weights)
        import_onnx()
        if str(weights).lower().endswith(".onnx"):
            raise InputError(f"{weights}: is already an ONNX model; choose PyTorch weights to export")
        # unfused, as `yoloworld export` loads it: reparameterization works on the training-time layers
        model = YOLOWorld.from_pretrained(weights, text_model=self.text_model, device="cpu", imgsz=self.imgsz)
        vocabulary = self._vocabulary(model, classes).vocabulary
        out = self._run_folder() / f"{Path(weights).stem}_{len(vocabulary.classes)}classes.onnx"
        export_onnx(plan_export(model, vocabulary.classes), out, model.imgsz)
        return out

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def image_prompt(reference: np.ndarray | None, box: str, name: str):
    """The page's image prompt as a `VisualPrompt` (None without a reference image); a box or name without an
    image, or a box that is not four numbers, is one message."""
    from yoloworld.prompts import VisualPrompt

    box, name = (box or "").strip(), (name or "").strip()
    if reference is None:
        if box or name:
            raise InputError("image prompt: upload a reference image (or clear its box and class name)")
        return None
    if not name:
        raise InputError("image prompt: name the class the reference image shows")
    bgr = cv2.cvtColor(np.asarray(reference, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    return VisualPrompt(bgr, reference_box(box, bgr.shape) if box else None, name=name)


def box_from_clicks(text: str, x: float, y: float) -> str:
    """Drawing the box with two clicks on the reference image: a click after one corner ("x1, y1") completes the
    box (corners in either order); any other click starts a new one."""
    parts = [part.strip() for part in (text or "").split(",")]
    try:
        first = [float(part) for part in parts] if len(parts) == 2 else None
    except ValueError:
        first = None
    if first is None:
        return f"{x:g}, {y:g}"
    (x1, x2), (y1, y2) = sorted((first[0], x)), sorted((first[1], y))
    return f"{x1:g}, {y1:g}, {x2:g}, {y2:g}"


def reference_box(text: str, shape: tuple[int, ...]) -> tuple[float, ...]:
    """"x1,y1,x2,y2" typed on the page -> the box, checked against the reference image (one message if not)."""
    from yoloworld.prompts import check_box

    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)):
        raise InputError(f"image prompt: box {text!r} is not x1,y1,x2,y2 (pixels on the reference image)")
    return check_box(values, shape, "image prompt")


def summarize_tracks(records: list[dict]) -> str:
    """'tracked: 2 red circle, 1 blue square' (distinct track ids per class over the video)."""
    ids: dict[str, set] = {}
    for record in records:
        for detection in record["detections"]:
            if detection.get("track_id") is not None:
                ids.setdefault(detection["class_name"], set()).add(detection["track_id"])
    counts = ", ".join(f"{len(found)} {name}" for name, found in sorted(ids.items()))
    return f"tracked: {counts or 'no object'}"


def summarize(records: list[dict]) -> str:
    """'3 detections: red circle 0.93, blue square 0.88, ...' (per frame counts summed for a video)."""
    detections = [d for record in records for d in record["detections"]]
    if len(records) > 1:
        counts: dict[str, int] = {}
        for d in detections:
            counts[d["class_name"]] = counts.get(d["class_name"], 0) + 1
        listed = ", ".join(f"{name} x{count}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1]))
        return f"{len(records)} frames, {len(detections)} detections" + (f": {listed}" if listed else "")
    listed = ", ".join(f"{d['class_name']} {d['score']:.2f}" for d in detections)
    return f"{len(detections)} detection{'s' * (len(detections) != 1)}" + (f": {listed}" if listed else "")
