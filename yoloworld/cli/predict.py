"""`yoloworld predict`: detect a vocabulary in images, folders, videos, cameras or streams; write annotated files and JSON."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from yoloworld.cli.common import (
    add_fold_flag,
    add_model_flags,
    add_negative_flag,
    add_rect_flag,
    add_selection_flags,
    add_slice_flags,
    apply_vocabulary,
    chosen_classes,
    load_predictor,
    positive_int,
)
from yoloworld.cli.stream import RecordSink, add_stream_flags, stream_options
from yoloworld.errors import InputError
from yoloworld.files import check_output
from yoloworld.images import (
    expand_sources,
    is_video,
    video_frames,
    video_info,
)
from yoloworld.models.weights import DEMO_WEIGHTS
from yoloworld.outputs import OutputFolder, check_apart
from yoloworld.streams import LatestFrames, Stream, is_stream, stream_name

logger = logging.getLogger(__name__)

PREDICT_KIND = "predict"  # what the --save-dir manifest says wrote its files
DEMO_MODEL = DEMO_WEIGHTS


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="zero-shot detection of the classes you name")
    add_source_flags(p, "predict", conf=0.05)
    p.add_argument("--batch", type=positive_int, default=4, help="images per forward pass (default 4)")
    p.add_argument("--demo", action="store_true", help="run the built-in demo model on a synthetic image")
    p.add_argument("--seed", type=int, default=0, help="with --demo: which synthetic image to draw (default 0: the "
                   "same picture every run)")


def add_source_flags(p, kind: str, conf: float, calibrated: bool = True) -> None:
    """Sources, model, selection and output flags: one spelling for `predict` and `track`. `calibrated`: --conf
    left out means the model's calibrated thresholds (see add_selection_flags)."""
    p.add_argument("sources", nargs="*", help="image files, folders, videos, a camera index (0) or a stream URL "
                   "(rtsp://, http://...)")
    add_model_flags(p, weights_required=False)
    add_negative_flag(p)
    add_selection_flags(p, conf=conf, calibrated=calibrated)
    add_fold_flag(p)
    add_rect_flag(p)
    add_slice_flags(p)
    p.add_argument("--save-dir", default=f"runs/{kind}", help="where annotated images/videos go")
    p.add_argument("--json", dest="json_path", help="write all detections to this JSON file")
    p.add_argument("--no-save", action="store_true", help="do not write annotated images")
    add_stream_flags(p)
    p.set_defaults(output_kind=kind)


def run(args) -> int:
    if args.demo:
        return run_demo(args)
    return run_sources(args, predict_files)


def run_sources(args, process_files, stream_step=None) -> int:
    """The run of `predict` and `track`: check the outputs, load the model, `process_files(model, paths, args,
    targets, sink)` for files, then each live source frame by frame (`stream_step(model, stream)` makes the
    per-frame step; None: detection), each record into the sink; finally the JSON and the summary line."""
    if not args.sources:
        raise InputError(f"no sources given: yoloworld {args.output_kind} IMAGE_OR_FOLDER... --weights W "
                         "--classes \"a,b\"")
    if not args.weights:
        raise InputError("no --weights given: pass a checkpoint file or a name such as yolo_world_v2_s")
    save_dir = None if args.no_save else check_output(args.save_dir, "--save-dir", folder=True)
    if save_dir:
        check_apart(save_dir, [s for s in args.sources if not is_stream(s)], "--save-dir")
    check_output(args.json_path, "--json")
    check_output(None if args.stream_json == "-" else args.stream_json, "--stream-json")
    paths = expand_sources([s for s in args.sources if not is_stream(s)])
    targets, used_names = annotated_files(save_dir, paths, args.output_kind)
    classes = chosen_classes(args)
    model = apply_vocabulary(load_predictor(args), classes, negatives=args.negative)
    streams = [Stream(s, stream_options(args)) for s in args.sources if is_stream(s)]  # a bad address fails first
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
    sink, skipped, interrupted = RecordSink(args.stream_json, keep=bool(args.json_path)), 0, False
    try:
        skipped = process_files(model, paths, args, targets, sink)
        for stream in streams:  # stream.name, never the address: it may hold a password (records, names, logs)
            video = unique_name(save_dir, Path(f"{stream_name(stream.name)}.mp4"), used_names) if save_dir else None
            claim_outputs(save_dir, [video] if video else [], args.output_kind)
            run_stream(model, stream, video, args, sink, stream_step(model, stream) if stream_step else None)
    except KeyboardInterrupt:  # a live stream ends this way: finish the files written so far, then stop
        interrupted = True
    finally:
        sink.close()
        for stream in streams:
            stream.close()
    if not sink.count and not interrupted:
        raise InputError(f"no readable images among {len(args.sources)} source(s)")
    write_outputs(sink, args.json_path, save_dir, skipped, interrupted)
    return 130 if interrupted else 0


def run_stream(model, stream: Stream, video: Path | None, args, sink: RecordSink, step) -> None:
    """One live source: its newest frames (stale ones dropped and counted, so the delay stays bounded), or with
    --every-frame all of them in order."""
    from yoloworld.predictor import predict_frames

    frames = stream if args.every_frame else LatestFrames(stream, stream.name)
    try:
        predict_frames(model, frames, stream.name, video, stream.fps, args, sink.add, step)
    finally:
        if frames is not stream:
            frames.close()  # the reader thread releases the capture: no second thread touches it
            if frames.dropped:
                logger.warning("%s: %d stale frame(s) dropped to keep up (the model is slower than the source; "
                               "--every-frame processes them all)", stream.name, frames.dropped)


def claim_outputs(save_dir: Path | None, files: list[Path], kind: str = PREDICT_KIND) -> list[Path]:
    """Record `files` as this command's in --save-dir before writing them: a file there that it did not write
    is never replaced (one line instead)."""
    return OutputFolder(save_dir, "--save-dir").claim(files, kind) if save_dir and files else files


def annotated_files(save_dir: Path | None, paths: list[Path], kind: str = PREDICT_KIND
                    ) -> tuple[dict[Path, Path], set[Path]]:
    """Each source's annotated file in --save-dir (none without one), claimed before any work, and the names
    taken (streams take theirs after)."""
    used: set[Path] = set()
    if not save_dir:
        return {}, used
    targets = {p: unique_name(save_dir, p.with_suffix(".mp4") if is_video(p) else p, used)
               for p in dict.fromkeys(paths)}  # a source given twice is written once, under one name
    claim_outputs(save_dir, list(targets.values()), kind)
    return targets, used


def predict_files(model, paths: list[Path], args, targets: dict[Path, Path], sink: RecordSink) -> int:
    """Videos, then images in batches, each annotated into `targets[path]` if given; returns the number of
    unreadable files skipped."""
    from yoloworld.predictor import DEFAULT_CONF, Settings, prediction_options
    from yoloworld.slicing import Slicing

    skipped = 0
    images = [p for p in paths if not is_video(p)]
    for video in (p for p in paths if is_video(p)):
        try:
            predict_video(model, video, targets.get(video), args, sink)
        except InputError as exc:  # an unreadable video is skipped like an unreadable image
            logger.warning(f"skipped: {exc}")
            skipped += 1
    progress = tqdm(total=len(images), unit="img", disable=len(images) < 2)
    settings = Settings(DEFAULT_CONF if args.conf is None else args.conf, args.iou, args.max_det)
    options = prediction_options(args)
    slicing = Slicing(options["slice"], options["slice_overlap"], options["slice_full"]) if "slice" in options else None
    batches = [images[start:start + args.batch] for start in range(0, len(images), args.batch)]
    # the next batches are read and letterboxed in a worker thread while the network runs on this one
    for prepared in model.prepared(batches, options["rect"], skip_unreadable=True):
        for error in prepared.skipped:
            logger.warning(f"skipped: {error}")
        skipped += len(prepared.skipped)
        for path, image, result in zip(prepared.sources, prepared.images, model.results_of(
                prepared, settings, calibrated=args.conf is None, slicing=slicing)):
            result.file = str(path)
            sink.add(result.to_dict())
            if path in targets:
                cv2.imwrite(str(targets[path]), result.plot(image))
        progress.update(len(prepared.sources) + len(prepared.skipped))
    progress.close()
    return skipped


def predict_video(model, video: Path, annotated: Path | None, args, sink: RecordSink, make_step=None) -> None:
    """One video with one progress bar, closed when the video ends or --max-frames stops it (a bar left open
    stays on screen beside the next one). `make_step(fps)`: the per-frame step (None: detection)."""
    from yoloworld.predictor import predict_frames

    fps, count = video_info(video)
    # log lines (a warning on the first frame) go through tqdm.write: on their own line, not glued to the bar
    with logging_redirect_tqdm(), tqdm(total=min(count, args.max_frames or count) or None, unit="frame",
                                       desc=video.name) as bar:
        def add(record: dict) -> None:
            sink.add(record)
            bar.update()

        predict_frames(model, video_frames(video), str(video), annotated, fps, args, add,
                       make_step(fps) if make_step else None)


def unique_name(save_dir: Path, path: Path, used: set[Path]) -> Path:
    """`save_dir/name`, or `name_2`, `name_3`... when another source of this run already took that name
    (`a/img.jpg` and `b/img.jpg`): the same command always writes the same names."""
    target, count = save_dir / path.name, 1
    while target in used:
        count += 1
        target = save_dir / f"{path.stem}_{count}{path.suffix}"
    used.add(target)
    return target


def write_outputs(sink: RecordSink, json_path: str | None, save_dir: Path | None, skipped: int,
                  interrupted: bool = False) -> None:
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(sink.records, indent=1))
    where = f", annotated files in {save_dir}" if save_dir else ""
    print(("stopped by Ctrl-C: " if interrupted else "") + f"{sink.count} image(s)/frame(s), {sink.detections} "
          f"detection(s){where}" + (f", JSON in {json_path}" if json_path else "")
          + (f", {skipped} unreadable file(s) skipped" if skipped else ""),
          file=sys.stderr if sink.to_stdout else sys.stdout)


def run_demo(args) -> int:
    """The built-in demo: a tiny model trained on synthetic shapes, run on a synthetic image drawn from --seed."""
    import numpy as np

    from yoloworld.api import YOLOWorld
    from yoloworld.data.synth import SynthConfig, draw_image

    if not DEMO_MODEL.exists():
        raise InputError(f"{DEMO_MODEL}: the demo model is missing from this installation")
    model = YOLOWorld.from_pretrained(DEMO_MODEL, device=args.device, imgsz=args.imgsz, fuse=True, fold=args.fold)
    model.warn_demo = False  # it draws its own synthetic image, and says what the model is below
    image, _ = draw_image(np.random.default_rng(args.seed), SynthConfig(images=1))
    result = model.predict([image], conf=max(args.conf or 0, 0.25), iou=args.iou, max_det=args.max_det)[0]
    save_dir = check_output(args.save_dir, "--save-dir", folder=True)
    json_path = args.json_path or str(save_dir / "demo.json")
    claim_outputs(save_dir, [save_dir / "demo_input.png", save_dir / "demo.png"]
                  + ([] if args.json_path else [Path(json_path)]))
    save_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(save_dir / "demo_input.png"), image)
    cv2.imwrite(str(save_dir / "demo.png"), result.plot(image))
    result.file = str(save_dir / "demo_input.png")
    Path(json_path).write_text(json.dumps([result.to_dict()], indent=1))
    for name, score in zip(result.class_names, result.scores):
        print(f"  {name:<16} {score:.2f}")
    print(f"Demo: {len(result)} shape(s) found; annotated image {save_dir / 'demo.png'}, JSON {json_path}.\n"
          "This is a tiny demo model trained on synthetic coloured shapes (vocabulary: "
          f"{', '.join(model.class_names)}), not a real-world detector.\n"
          "For real images use the official weights: yoloworld predict photo.jpg --weights yolo_world_v2_s "
          "--classes \"person,car\" (downloaded from huggingface.co/wondervictor/YOLO-World, or pass a local .pth).")
    return 0
