"""`yoloworld predict`: detect a vocabulary in images, folders or videos; write annotated images and JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
from tqdm import tqdm

from yoloworld.cli.common import (
    add_model_flags,
    add_rect_flag,
    add_selection_flags,
    apply_vocabulary,
    chosen_classes,
    load_predictor,
    positive_int,
)
from yoloworld.errors import InputError
from yoloworld.files import check_output
from yoloworld.images import (
    expand_sources,
    is_video,
    read_image,
    video_frames,
    video_info,
)

logger = logging.getLogger(__name__)

DEMO_MODEL = Path(__file__).resolve().parents[1] / "assets" / "demo.pt"


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="zero-shot detection of the classes you name")
    p.add_argument("sources", nargs="*", help="image files, folders or videos")
    add_model_flags(p, weights_required=False)
    add_selection_flags(p, conf=0.05)
    add_rect_flag(p)
    p.add_argument("--batch", type=positive_int, default=4, help="images per forward pass (default 4)")
    p.add_argument("--save-dir", default="runs/predict", help="where annotated images/videos go")
    p.add_argument("--json", dest="json_path", help="write all detections to this JSON file")
    p.add_argument("--no-save", action="store_true", help="do not write annotated images")
    p.add_argument("--demo", action="store_true", help="run the built-in demo model on a synthetic image")
    p.add_argument("--seed", type=int, default=0, help="with --demo: which synthetic image to draw (default 0: the "
                   "same picture every run)")


def run(args) -> int:
    if args.demo:
        return run_demo(args)
    if not args.sources:
        raise InputError("no sources given: yoloworld predict IMAGE_OR_FOLDER... --weights W --classes \"a,b\"")
    if not args.weights:
        raise InputError("no --weights given: pass a checkpoint file or a name such as yolo_world_v2_s")
    save_dir = None if args.no_save else check_output(args.save_dir, "--save-dir", folder=True)
    check_output(args.json_path, "--json")
    paths = expand_sources(args.sources)
    classes = chosen_classes(args)
    model = apply_vocabulary(load_predictor(args), classes)
    records, skipped, used_names = [], 0, set()
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
    images = [p for p in paths if not is_video(p)]
    for video in (p for p in paths if is_video(p)):
        try:
            records += predict_video(model, video, args, save_dir)
        except InputError as exc:  # an unreadable video is skipped like an unreadable image
            logger.warning(f"skipped: {exc}")
            skipped += 1
    progress = tqdm(total=len(images), unit="img", disable=len(images) < 2)
    for start in range(0, len(images), args.batch):
        batch, arrays = [], []
        for path in images[start:start + args.batch]:
            try:
                arrays.append(read_image(path))
                batch.append(path)
            except InputError as exc:
                logger.warning(f"skipped: {exc}")
                skipped += 1
        if batch:
            results = model.predict(arrays, args.conf, args.iou, args.max_det, rect=args.rect)
            for path, image, result in zip(batch, arrays, results):
                result.file = str(path)
                records.append(result.to_dict())
                if save_dir:
                    cv2.imwrite(str(unique_name(save_dir, path, used_names)), result.plot(image))
        progress.update(len(images[start:start + args.batch]))
    progress.close()
    if not records:
        raise InputError(f"no readable images among {len(paths)} source(s)")
    write_outputs(records, args.json_path, save_dir, skipped)
    return 0


def unique_name(save_dir: Path, path: Path, used: set[Path]) -> Path:
    """`save_dir/name`, or `name_2`, `name_3`... when another source of this run already took that name
    (`a/img.jpg` and `b/img.jpg`): the same command always writes the same names."""
    target, count = save_dir / path.name, 1
    while target in used:
        count += 1
        target = save_dir / f"{path.stem}_{count}{path.suffix}"
    used.add(target)
    return target


def predict_video(model, video: Path, args, save_dir: Path | None) -> list[dict]:
    fps, count = video_info(video)
    writer, records = None, []
    for index, frame in tqdm(video_frames(video), total=count or None, unit="frame", desc=video.name):
        result = model.predict([frame], args.conf, args.iou, args.max_det, rect=args.rect)[0]
        result.file, result.extra = str(video), {"frame": index}
        records.append(result.to_dict())
        if save_dir:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(save_dir / f"{video.stem}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            writer.write(result.plot(frame))
    if writer is not None:
        writer.release()
    return records


def write_outputs(records: list[dict], json_path: str | None, save_dir: Path | None, skipped: int) -> None:
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(records, indent=1))
    total = sum(len(r["detections"]) for r in records)
    where = f", annotated files in {save_dir}" if save_dir else ""
    print(f"{len(records)} image(s)/frame(s), {total} detection(s){where}"
          + (f", JSON in {json_path}" if json_path else "") + (f", {skipped} unreadable file(s) skipped" if skipped else ""))


def run_demo(args) -> int:
    """The built-in demo: a tiny model trained on synthetic shapes, run on a synthetic image drawn from --seed."""
    import numpy as np

    from yoloworld.api import YOLOWorld
    from yoloworld.data.synth import SynthConfig, draw_image

    if not DEMO_MODEL.exists():
        raise InputError(f"{DEMO_MODEL}: the demo model is missing from this installation")
    model = YOLOWorld.from_pretrained(DEMO_MODEL, device=args.device, imgsz=args.imgsz, fuse=True)
    image, _ = draw_image(np.random.default_rng(args.seed), SynthConfig(images=1))
    result = model.predict([image], conf=max(args.conf, 0.25), iou=args.iou, max_det=args.max_det)[0]
    save_dir = Path(args.save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(save_dir / "demo_input.png"), image)
    cv2.imwrite(str(save_dir / "demo.png"), result.plot(image))
    result.file = str(save_dir / "demo_input.png")
    json_path = args.json_path or str(save_dir / "demo.json")
    Path(json_path).write_text(json.dumps([result.to_dict()], indent=1))
    for name, score in zip(result.class_names, result.scores):
        print(f"  {name:<16} {score:.2f}")
    print(f"Demo: {len(result)} shape(s) found; annotated image {save_dir / 'demo.png'}, JSON {json_path}.\n"
          "This is a tiny demo model trained on synthetic coloured shapes (vocabulary: "
          f"{', '.join(model.class_names)}), not a real-world detector.\n"
          "For real images use the official weights: yoloworld predict photo.jpg --weights yolo_world_v2_s "
          "--classes \"person,car\" (downloaded from huggingface.co/wondervictor/YOLO-World, or pass a local .pth).")
    return 0
