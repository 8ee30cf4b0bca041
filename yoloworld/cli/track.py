"""`yoloworld track`: detect and follow objects over the frames of videos, folders of frames, cameras and streams.

The sources, model, selection and output flags are `predict`'s (`add_source_flags`); each record is a `predict`
record with a `track_id` per detection (and `counts` with --line / --zone). Each video, each live source and the
images given (one sequence, in order) are tracked on their own.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2

from yoloworld.cli.common import number_list, probability
from yoloworld.cli.label import class_threshold
from yoloworld.cli.predict import add_source_flags, predict_video, run_sources
from yoloworld.cli.stream import RecordSink
from yoloworld.errors import InputError
from yoloworld.images import is_video, read_image
from yoloworld.tracking import FrameTracker

logger = logging.getLogger(__name__)
TRACKER_NAMES = ("bytetrack", "sort", "ocsort")  # as yoloworld.tracking.TRACKERS (kept here: --help needs no numpy)


def line_points(text: str) -> tuple[float, ...]:
    values = number_list(text, 4)
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: expected x1,y1,x2,y2")
    return values


def zone_points(text: str) -> list[tuple[float, float]]:
    values = number_list(text, 6, pairs=True)
    return list(zip(values[::2], values[1::2]))


def add_parser(sub) -> None:
    p = sub.add_parser("track", help="follow the objects of the classes you name over video frames (ids per object)")
    add_source_flags(p, "track", conf=0.1, calibrated=False)  # low boxes feed the trackers' second association
    p.add_argument("--tracker", choices=TRACKER_NAMES, default="bytetrack",
                   help="association method of Roboflow's trackers library (default bytetrack)")
    p.add_argument("--track-conf", type=probability, default=0.25,
                   help="score a detection needs to start a track (default 0.25); lower ones only extend tracks")
    p.add_argument("--class-track-conf", type=class_threshold, action="append", default=[], metavar="NAME=T",
                   help="the score that starts a track of one class (its first synonym), repeatable: "
                   "--class-track-conf \"forklift=0.4\"")
    p.add_argument("--line", type=line_points, metavar="X1,Y1,X2,Y2", help="count tracks crossing this line, per "
                   "class and direction (frame pixels)")
    p.add_argument("--zone", type=zone_points, metavar="X,Y,X,Y,...", help="count tracks inside this polygon, per "
                   "class (frame pixels, three points or more)")


def run(args) -> int:
    sequences: list[FrameTracker] = []

    def start(model, source: str, fps: float):
        sequences.append(FrameTracker(model, args, source, fps))
        return sequences[-1].step

    code = run_sources(args, lambda model, *rest: track_files(model, *rest, start=start),
                       lambda model, stream: start(model, stream.name, stream.fps))
    for sequence in sequences:
        for line in sequence.counters.summary() if sequence.counters else []:
            print(f"{sequence.source}: {line}", file=sys.stderr if args.stream_json == "-" else sys.stdout)
    return code


def track_files(model, paths: list[Path], args, targets: dict[Path, Path], sink: RecordSink, start) -> int:
    """Each video, then the images as one sequence of frames; returns the number of unreadable files skipped.
    `start(model, source, fps)`: the step of a new sequence."""
    skipped = 0
    for video in (p for p in paths if is_video(p)):
        try:
            predict_video(model, video, targets.get(video), args, sink, lambda fps: start(model, str(video), fps))
        except InputError as exc:
            logger.warning(f"skipped: {exc}")
            skipped += 1
    images = [p for p in dict.fromkeys(paths) if not is_video(p)]
    step, index = start(model, "images", 30.0) if images else None, 0
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
