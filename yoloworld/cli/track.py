"""`yoloworld track`: detect and follow objects over the frames of videos, folders of frames, cameras and streams.

The sources, model, selection and output flags are `predict`'s (`add_source_flags`); each record is a `predict`
record with a `track_id` per detection. Each video, each live source and the images given (one sequence, in order)
are tracked on their own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2

from yoloworld.cli.common import probability
from yoloworld.cli.predict import add_source_flags, predict_video, run_sources
from yoloworld.cli.stream import RecordSink
from yoloworld.errors import InputError
from yoloworld.images import is_video, read_image

logger = logging.getLogger(__name__)
TRACKER_NAMES = ("bytetrack", "sort", "ocsort")  # as yoloworld.tracking.TRACKERS (kept here: --help needs no numpy)


def add_parser(sub) -> None:
    p = sub.add_parser("track", help="follow the objects of the classes you name over video frames (ids per object)")
    add_source_flags(p, "track", conf=0.1)
    p.add_argument("--tracker", choices=TRACKER_NAMES, default="bytetrack",
                   help="association method of Roboflow's trackers library (default bytetrack)")
    p.add_argument("--track-conf", type=probability, default=0.25,
                   help="score a detection needs to start a track (default 0.25); lower ones only extend tracks")


def run(args) -> int:
    return run_sources(args, track_files, lambda model, stream: FrameTracker(model, args, stream.fps).step)


class FrameTracker:
    """The per-frame step of one sequence: detect, track, draw ids and trails."""

    def __init__(self, model, args, fps: float):
        from yoloworld.tracking import ClassTracks, Trails

        self.model, self.args = model, args
        self.tracks = ClassTracks(args.tracker, fps, args.track_conf)
        self.trails = Trails()

    def step(self, frame, index: int):
        from yoloworld.predictor import prediction_options

        args = self.args
        result = self.model.track_frame(frame, index, self.tracks, args.conf, args.iou, args.max_det,
                                        **prediction_options(args))
        self.trails.add(result)
        return result, None if args.no_save else self.trails.draw(result.plot(frame))


def track_files(model, paths: list[Path], args, targets: dict[Path, Path], sink: RecordSink) -> int:
    """Each video, then the images as one sequence of frames; returns the number of unreadable files skipped."""
    skipped = 0
    for video in (p for p in paths if is_video(p)):
        try:
            predict_video(model, video, targets.get(video), args, sink, lambda fps: FrameTracker(model, args, fps).step)
        except InputError as exc:
            logger.warning(f"skipped: {exc}")
            skipped += 1
    images = [p for p in dict.fromkeys(paths) if not is_video(p)]
    step, index = FrameTracker(model, args, fps=30.0).step, 0
    for path in images:
        try:
            frame = read_image(path)
        except InputError as exc:
            logger.warning(f"skipped: {exc}")
            skipped += 1
            continue
        result, annotated = step(frame, index)
        result.file = str(path)
        sink.add(result.to_dict())
        if path in targets:
            cv2.imwrite(str(targets[path]), annotated)
        index += 1
    return skipped
