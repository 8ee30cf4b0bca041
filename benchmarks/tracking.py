"""Tracking and small objects on generated data, with the demo model; metrics from independent libraries.

1. Tracking: a synthetic video (`yoloworld data synth --video`: same-class pairs that cross, a pillar that hides
   them, objects entering and leaving). The detections of each frame are made once and given to every tracker, so
   the trackers are compared on the same input; IDF1, MOTA and ID switches come from py-motmetrics against the
   MOTChallenge ground truth (objects less than 30% visible behind the pillar are not required, and a track on
   one is not a false positive). Time per frame: detection, and each tracker's update.
2. Small objects: large frames (1920x1080) scattered with 8-24 px shapes; COCO AP50 (faster-coco-eval) of a
   whole-frame pass vs sliced inference (`predict(..., slice=...)`), with the time per frame of each.

    python benchmarks/tracking.py --frames 150 --small-images 4
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import yoloworld
from yoloworld.data.synth_video import CLASSES, VideoConfig, small_object_image, video_frames_and_truth
from yoloworld.results import Results
from yoloworld.tracking import TRACKERS, ClassTracks

HIDDEN = 0.3  # ground truth less visible than this is not required


def tracking_table(model, config: VideoConfig, conf: float) -> list[str]:
    frames, truth = zip(*video_frames_and_truth(config))
    start = time.perf_counter()
    detections = [model.predict(frame, conf=conf)[0] for frame in frames]
    detect_ms = (time.perf_counter() - start) * 1000 / len(frames)
    rows = [f"| detections | tracker | IDF1 | MOTA | ID switches | tracker ms/frame (detection: {detect_ms:.0f}) |",
            "|---|---|---|---|---|---|"]
    # the same trackers fed the ground-truth boxes of the visible objects: what association alone achieves
    for source, inputs in (("demo model", detections), ("ground truth", [oracle(rows) for rows in truth])):
        for name in TRACKERS:
            idf1, mota, switches, ms = run_tracker(name, inputs, truth)
            rows.append(f"| {source} | {name} | {idf1:.3f} | {mota:.3f} | {switches} | {ms:.2f} |")
    rows.append(f"\n{count_crossings(truth)} same-class crossings, {len(config_tracks(truth))} ground-truth tracks")
    return rows


def run_tracker(name: str, inputs, truth) -> tuple[float, float, int, float]:
    import motmetrics

    tracks, accumulator, spent = ClassTracks(name, frame_rate=25.0), motmetrics.MOTAccumulator(auto_id=True), 0.0
    for result, rows_of_frame in zip(inputs, truth):
        start = time.perf_counter()
        tracked = tracks.update(result)
        spent += time.perf_counter() - start
        add_frame(accumulator, tracked, rows_of_frame)
    summary = motmetrics.metrics.create().compute(accumulator, metrics=["idf1", "mota", "num_switches"])
    return (float(summary["idf1"].iloc[0]), float(summary["mota"].iloc[0]), int(summary["num_switches"].iloc[0]),
            spent * 1000 / len(inputs))


def oracle(truth_rows) -> Results:
    """The ground truth of one frame as detections (objects at least HIDDEN visible), score 0.9."""
    rows = [(label, box) for _, label, box, visibility in truth_rows if visibility >= HIDDEN]
    boxes = np.array([box for _, box in rows], dtype=np.float32).reshape(-1, 4)
    return Results(boxes, np.full(len(rows), 0.9, np.float32), np.array([label for label, _ in rows], np.int64),
                   list(CLASSES), (0, 0))


def config_tracks(truth) -> set[int]:
    return {row[0] for rows in truth for row in rows}


def add_frame(accumulator, tracked, truth_rows) -> None:
    """One frame into the accumulator; predictions on a hidden object are left out, like its ground truth."""
    required = [(tid, box) for tid, _, box, visibility in truth_rows if visibility >= HIDDEN]
    hidden = [box for _, _, box, visibility in truth_rows if visibility < HIDDEN]
    keep = [i for i, box in enumerate(tracked.xyxy) if not any(iou(box, h) > 0.5 for h in hidden)]
    # 1 - IoU, no match below IoU 0.5 (motmetrics' own iou_matrix uses np.asfarray, gone in NumPy 2)
    distances = np.array([[1 - iou(box, tracked.xyxy[i]) for i in keep] for _, box in required]).reshape(
        len(required), len(keep))
    distances[distances > 0.5] = np.nan
    accumulator.update([tid for tid, _ in required], [int(tracked.track_ids[i]) for i in keep], distances)


def count_crossings(truth) -> int:
    """Frames where two visible objects of one class overlap, counted once per pair."""
    pairs = set()
    for rows in truth:
        for a, label_a, box_a, _ in rows:
            for b, label_b, box_b, _ in rows:
                if a < b and label_a == label_b and iou(box_a, box_b) > 0:
                    pairs.add((a, b))
    return len(pairs)


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def xywh(box) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def small_object_table(model, images: int, tile: int, conf: float) -> list[str]:
    scenes = [small_object_image(seed) for seed in range(images)]
    rows = ["| inference | AP50 | ms/frame |", "|---|---|---|"]
    for label, options in (("whole frame", {}), (f"sliced ({tile} px tiles, overlap 0.2, + whole frame)",
                                                  {"slice": tile, "slice_overlap": 0.2})):
        start = time.perf_counter()
        results = [model.predict(image, conf=conf, **options)[0] for image, _ in scenes]
        ms = (time.perf_counter() - start) * 1000 / images
        rows.append(f"| {label} | {ap50(scenes, results):.3f} | {ms:.0f} |")
    return rows


def ap50(scenes, results) -> float:
    from faster_coco_eval import COCO, COCOeval_faster

    images, annotations, detections = [], [], []
    for index, ((image, objects), result) in enumerate(zip(scenes, results)):
        images.append({"id": index, "width": image.shape[1], "height": image.shape[0]})
        annotations += [{"id": len(annotations) + k + 1, "image_id": index, "category_id": label + 1,
                         "bbox": xywh(box), "area": (box[2] - box[0]) * (box[3] - box[1]), "iscrowd": 0}
                        for k, (label, box) in enumerate(objects)]
        detections += [{"image_id": index, "category_id": int(c) + 1, "bbox": xywh(b), "score": float(s)}
                       for b, s, c in zip(result.xyxy, result.scores, result.class_ids)]
    truth = COCO()
    truth.dataset = {"images": images, "annotations": annotations,
                     "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}
    truth.createIndex()
    evaluation = COCOeval_faster(truth, truth.loadRes(detections), "bbox", print_function=lambda *a: None)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return float(evaluation.stats[1])  # AP at IoU 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--objects", type=int, default=6)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--small-images", type=int, default=4)
    parser.add_argument("--conf", type=float, default=0.1)
    args = parser.parse_args()
    model = yoloworld.load("demo", imgsz=args.imgsz).set_classes(CLASSES)
    config = VideoConfig(frames=args.frames, width=320, height=240, objects=args.objects)
    print(f"tracking: {args.frames} frames of 320x240, {args.objects} objects, demo model at {args.imgsz} px")
    print("\n".join(tracking_table(model, config, args.conf)))
    print(f"\nsmall objects: {args.small_images} frames of 1920x1080, 40 shapes of 8-24 px each, demo model at "
          f"{args.imgsz} px")
    print("\n".join(small_object_table(model, args.small_images, args.imgsz, args.conf)))


if __name__ == "__main__":
    main()
