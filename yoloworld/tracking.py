"""Tracking: detections of consecutive frames -> `Results.track_ids`, ids that follow one object over time.

The trackers are Roboflow's `trackers` library (ByteTrack, SORT, OC-SORT; Apache-2.0, numpy only, no torch):
supervision deprecated its own `sv.ByteTrack` in 0.28 in favour of that library and no longer ships it (0.31), so
it is where ByteTrack is maintained now; its SORT and OC-SORT come with it.
We add what an open vocabulary needs, not the association itself:

- one library tracker per class ("lane"): an id never jumps between classes, and each class has its own threshold
  to start a track (`class_conf`, e.g. a rare class tracked from a lower score);
- lanes are keyed by class *name* and its synonyms, never by index: when `set_classes` changes the vocabulary
  between frames, a class that stays (even at another index, or under a synonym it shares) keeps its lane and its
  ids; a removed class ends its tracks;
- ids are unique across lanes and start at 1.

Only confirmed tracks are reported (the library confirms a track after a frame or two): a detection without an id
is left out, as in Ultralytics' `track`.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from yoloworld.errors import InputError
from yoloworld.results import Results, palette

TRACKERS = ("bytetrack", "sort", "ocsort")
TRACK_CONF = 0.25  # the score that starts a track (Ultralytics' new_track_thresh); open-vocabulary scores run low


def check_tracker(name: str) -> str:
    if name not in TRACKERS:
        raise InputError(f"tracker {name!r}: choose one of {', '.join(TRACKERS)}")
    return name


def library_tracker(name: str, frame_rate: float, threshold: float):
    """A fresh tracker of the `trackers` library; `threshold`: the score a detection needs to start a track."""
    try:
        import trackers
    except ModuleNotFoundError as exc:
        if exc.name != "trackers":
            raise
        raise InputError("tracking needs Roboflow's trackers library: pip install 'yoloworld[track]'") from None
    if name == "bytetrack":  # detections below `threshold` still extend tracks (ByteTrack's second association)
        return trackers.ByteTrackTracker(frame_rate=frame_rate, track_activation_threshold=threshold,
                                         high_conf_det_threshold=threshold)
    if name == "sort":
        return trackers.SORTTracker(frame_rate=frame_rate, track_activation_threshold=threshold)
    return trackers.OCSORTTracker(frame_rate=frame_rate, high_conf_det_threshold=threshold)


@dataclass
class Lane:
    tracker: object  # the library tracker of one class
    texts: frozenset  # the class's prompt names (its synonyms): how a renamed or reordered class is found again
    serial: int  # tells lanes apart in the id table


class ClassTracks:
    """Track ids for a stream of `Results`, per class name (see the module docstring)."""

    def __init__(self, tracker: str = "bytetrack", frame_rate: float = 30.0, track_conf: float = TRACK_CONF,
                 class_conf: dict[str, float] | None = None):
        self.tracker, self.frame_rate = check_tracker(tracker), float(frame_rate) or 30.0
        for name, value in [("track_conf", track_conf), *((f"class_conf[{k!r}]", v) for k, v in (class_conf or {}).items())]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InputError(f"{name} {value!r}: must be a score between 0 and 1")
        self.track_conf, self.class_conf = track_conf, dict(class_conf or {})
        self._lanes: dict[str, Lane] = {}
        self._ids: dict[tuple[int, int], int] = {}  # (lane serial, library id) -> our id
        self._serials, self._next_id = itertools.count(), 1

    def update(self, result: Results, classes: list[list[str]] | None = None) -> Results:
        """`result` of the next frame -> its tracked detections with `track_ids`. `classes`: the prompt names of
        each class of `result.names` (synonyms), default each name alone."""
        import supervision as sv

        self._follow_vocabulary(result.names, classes or [[name] for name in result.names])
        rows, ids = [], []
        for class_id, name in enumerate(result.names):
            lane, index = self._lanes[name], np.flatnonzero(result.class_ids == class_id)
            found = sv.Detections(xyxy=result.xyxy[index].reshape(-1, 4), confidence=result.scores[index],
                                  data={"row": index})  # every lane is updated, so its unseen tracks age
            tracked = lane.tracker.update(found)
            for row, library_id in zip(tracked.data.get("row", []), tracked.tracker_id):
                if library_id >= 0:
                    rows.append(int(row))
                    ids.append(self._our_id(lane.serial, int(library_id)))
        order = np.argsort(rows, kind="stable")  # the detections' own order (best score first)
        return result.take(np.asarray(rows, dtype=np.int64)[order], np.asarray(ids, dtype=np.int64)[order])

    def _follow_vocabulary(self, names: list[str], classes: list[list[str]]) -> None:
        """One lane per current class: the lane of the same name, else of a class sharing a synonym, else new."""
        lanes, taken = {}, set()
        for name, texts in zip(names, classes):
            texts = frozenset(texts)
            lane = self._lanes.get(name)
            if lane is None or lane.serial in taken:
                lane = next((old for old in self._lanes.values() if old.texts & texts and old.serial not in taken),
                            None)
            if lane is None:
                threshold = self.class_conf.get(name, self.track_conf)
                lane = Lane(library_tracker(self.tracker, self.frame_rate, threshold), texts, next(self._serials))
            lane.texts = texts
            lanes[name] = lane
            taken.add(lane.serial)
        if taken != {lane.serial for lane in self._lanes.values()}:  # a class left: its ids end with it
            self._ids = {key: value for key, value in self._ids.items() if key[0] in taken}
        self._lanes = lanes

    def _our_id(self, serial: int, library_id: int) -> int:
        key = (serial, library_id)
        if key not in self._ids:
            self._ids[key] = self._next_id
            self._next_id += 1
        return self._ids[key]


class Trails:
    """The last `length` centres of each track, drawn as a fading line behind it."""

    def __init__(self, length: int = 20):
        self.length, self._points, self._frame = length, {}, 0
        self._seen: dict[int, int] = {}

    def add(self, result: Results) -> None:
        self._frame += 1
        for track_id, (x1, y1, x2, y2) in zip(result.track_ids, result.xyxy):
            self._points.setdefault(int(track_id), deque(maxlen=self.length)).append((int((x1 + x2) / 2),
                                                                                       int((y1 + y2) / 2)))
            self._seen[int(track_id)] = self._frame
        for track_id in [t for t, last in self._seen.items() if self._frame - last > self.length]:
            del self._points[track_id], self._seen[track_id]  # a track gone for a while leaves no trail

    def draw(self, canvas: np.ndarray) -> np.ndarray:
        for track_id, points in self._points.items():
            if len(points) > 1:
                cv2.polylines(canvas, [np.array(points, dtype=np.int32)], False, palette(track_id), 2, cv2.LINE_AA)
        return canvas



class FrameTracker:
    """The per-frame step of one sequence: detect, track, count, draw ids, trails, the line and the zone. `args`:
    the `track` command's flags (tracker, track_conf, class_track_conf, line, zone, conf, iou, max_det, no_save and
    predict's options), or a namespace with those names (the web app's video tab)."""

    def __init__(self, model, args, source: str, fps: float):
        from yoloworld.counting import Counters

        self.model, self.args, self.source = model, args, source
        self.tracks = ClassTracks(args.tracker, fps, args.track_conf, dict(args.class_track_conf))
        self.trails, self.counters = Trails(), Counters(args.line, args.zone)

    def step(self, frame, index: int):
        from yoloworld.predictor import prediction_options

        args = self.args
        result = self.model.track_frame(frame, index, self.tracks, args.conf, args.iou, args.max_det,
                                        **prediction_options(args))
        if self.counters:
            result.extra["counts"] = self.counters.update(result)
        if args.no_save:
            return result, None
        self.trails.add(result)
        return result, self.counters.draw(self.trails.draw(result.plot(frame)))


__all__ = ["ClassTracks", "FrameTracker", "Trails", "TRACKERS", "TRACK_CONF", "check_tracker"]
