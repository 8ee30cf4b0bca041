"""Synthetic tracking videos: the coloured shapes of `yoloworld.data.synth`, moving, with ground-truth tracks.

    OUT/video.mp4            the frames (mp4v)
    OUT/gt/gt.txt            MOTChallenge ground truth: frame (from 1), id, x, y, w, h, 1, class (from 1), visibility
    OUT/class_texts.json     [["red circle"], ...]: the class of gt column 8 is its 1-based row

Objects enter on one side and leave on the other along smooth (gently waving) paths, at staggered times; they come
in pairs of one class on opposite headings, so same-class objects cross; an optional grey pillar in the middle hides
every object fully for a few frames. Deterministic for a given seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from yoloworld.data.synth import COLOURS, SHAPES, shape_polygon
from yoloworld.errors import InputError

CLASSES = [f"{c} {s}" for c in list(COLOURS)[:3] for s in SHAPES[:3]]  # what the demo model knows
PILLAR_GREY = (95, 95, 95)


@dataclass(frozen=True)
class VideoConfig:
    frames: int = 60
    width: int = 320
    height: int = 240
    objects: int = 4  # in same-class pairs that cross (an odd last one goes alone)
    pillar: bool = True  # a grey column in the middle that hides whatever passes behind it
    min_radius: float = 0.06  # object half-size as a fraction of the shorter side
    max_radius: float = 0.09
    seed: int = 0

    def __post_init__(self):
        if self.frames < 2 or self.objects < 1 or min(self.width, self.height) < 32:
            raise InputError("data synth --video: needs --frames >= 2, --objects >= 1 and sides of 32 px or more")


@dataclass(frozen=True)
class Mover:
    track_id: int
    label: int
    radius: float
    start: int  # first frame of its path (it enters from outside the frame)
    x0: float
    dx: float  # pixels per frame
    y0: float
    wave: float  # amplitude of the vertical wave, pixels
    phase: float

    def centre(self, frame: int) -> tuple[float, float]:
        t = frame - self.start
        return self.x0 + self.dx * t, self.y0 + self.wave * np.sin(self.phase + t / 6)


def plan_movers(config: VideoConfig) -> list[Mover]:
    rng, side, movers = np.random.default_rng(config.seed), min(config.width, config.height), []
    for pair in range((config.objects + 1) // 2):
        label, y = int(rng.integers(len(CLASSES))), float(rng.uniform(0.25, 0.75) * config.height)
        start = int(rng.integers(0, max(1, config.frames // 3)))
        for member in range(min(2, config.objects - 2 * pair)):
            radius = float(rng.uniform(config.min_radius, config.max_radius) * side)
            heading = 1 if member == 0 else -1  # the pair runs towards each other: a same-class crossing
            speed = (config.width + 2 * radius) / (config.frames * float(rng.uniform(0.55, 0.8)))
            x0 = -radius if heading > 0 else config.width + radius
            movers.append(Mover(len(movers) + 1, label, radius, start, x0, heading * speed,
                                y + float(rng.uniform(-0.3, 0.3)) * radius, float(rng.uniform(0, 0.04) * side),
                                float(rng.uniform(0, 2 * np.pi))))
    return movers


def draw_frame(config: VideoConfig, movers: list[Mover], frame: int, background: np.ndarray):
    """The frame and its ground truth rows [(id, label, (x1, y1, x2, y2) clipped, visibility)]."""
    image, truth = background.copy(), []
    # a little wider than the largest object: every object is fully hidden for a few frames (a short occlusion)
    half = int(1.1 * config.max_radius * min(config.width, config.height))
    pillar = (config.width // 2 - half, config.width // 2 + half)
    for mover in movers:
        if frame < mover.start:
            continue
        cx, cy = mover.centre(frame)
        box = np.array([cx - mover.radius, cy - mover.radius, cx + mover.radius, cy + mover.radius])
        clipped = np.clip(box, 0, [config.width, config.height, config.width, config.height])
        if clipped[2] - clipped[0] < 2 or clipped[3] - clipped[1] < 2:
            continue  # not (or no longer) in view
        colour_name, shape_name = CLASSES[mover.label].split()
        polygon = shape_polygon(shape_name, cx, cy, mover.radius)
        cv2.fillPoly(image, [np.round(polygon).astype(np.int32)], COLOURS[colour_name], lineType=cv2.LINE_AA)
        hidden = max(0.0, min(clipped[2], pillar[1]) - max(clipped[0], pillar[0])) if config.pillar else 0.0
        truth.append((mover.track_id, mover.label, tuple(float(v) for v in clipped),
                      1.0 - hidden / (clipped[2] - clipped[0])))
    if config.pillar:
        image[:, pillar[0]:pillar[1]] = PILLAR_GREY
    return image, truth


def video_frames_and_truth(config: VideoConfig):
    """Yield (frame BGR, ground-truth rows) for each frame (see `draw_frame`)."""
    rng = np.random.default_rng(config.seed + 1)
    noise = rng.integers(-20, 21, size=(config.height, config.width, 3), dtype=np.int16)
    background = np.clip(noise + 130, 0, 255).astype(np.uint8)
    movers = plan_movers(config)
    for frame in range(config.frames):
        yield draw_frame(config, movers, frame, background)


VIDEO_KIND = "data synth --video"  # what the output manifest says wrote the files


def write_video_set(out: str | Path, config: VideoConfig, fps: float = 25.0) -> dict[str, int]:
    """OUT/video.mp4, OUT/gt/gt.txt (MOTChallenge) and OUT/class_texts.json; returns counts. Replaces only files
    an earlier run of this wrote (`yoloworld.outputs`)."""
    from yoloworld.outputs import OutputFolder

    out = Path(out)
    OutputFolder(out).claim([out / "video.mp4", out / "gt" / "gt.txt", out / "class_texts.json"], VIDEO_KIND)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                             (config.width, config.height))
    rows, ids = [], set()
    try:
        for index, (image, truth) in enumerate(video_frames_and_truth(config)):
            writer.write(image)
            for track_id, label, (x1, y1, x2, y2), visibility in truth:
                rows.append(f"{index + 1},{track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,{label + 1},"
                            f"{visibility:.3f}")
                ids.add(track_id)
    finally:
        writer.release()
    (out / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    (out / "class_texts.json").write_text(json.dumps([[name] for name in CLASSES]))
    return {"frames": config.frames, "tracks": len(ids), "boxes": len(rows)}





def small_object_image(seed: int, width: int = 1920, height: int = 1080, objects: int = 40, min_px: int = 8,
                       max_px: int = 24) -> tuple[np.ndarray, list[tuple[int, tuple[float, float, float, float]]]]:
    """A large frame scattered with small shapes (`min_px`..`max_px` wide, apart from each other): the small-object
    set of sliced inference. Returns the BGR image and [(label into CLASSES, xyxy box)]."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-20, 21, size=(height, width, 3), dtype=np.int16)
    image = np.clip(noise + int(rng.uniform(90, 150)), 0, 255).astype(np.uint8)
    placed: list[tuple[int, tuple]] = []
    for _ in range(objects * 20):  # rejection sampling: shapes never touch
        if len(placed) == objects:
            break
        r = float(rng.uniform(min_px, max_px)) / 2
        cx, cy = float(rng.uniform(r + 1, width - r - 1)), float(rng.uniform(r + 1, height - r - 1))
        box = (cx - r, cy - r, cx + r, cy + r)
        if any(not (box[2] + 4 < b[0] or b[2] + 4 < box[0] or box[3] + 4 < b[1] or b[3] + 4 < box[1])
               for _, b in placed):
            continue
        label = int(rng.integers(len(CLASSES)))
        colour_name, shape_name = CLASSES[label].split()
        cv2.fillPoly(image, [np.round(shape_polygon(shape_name, cx, cy, r)).astype(np.int32)], COLOURS[colour_name],
                     lineType=cv2.LINE_AA)
        placed.append((label, box))
    return image, placed

__all__ = ["VideoConfig", "CLASSES", "video_frames_and_truth", "write_video_set", "plan_movers", "small_object_image"]
