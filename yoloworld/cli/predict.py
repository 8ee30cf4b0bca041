"""`yoloworld predict`: detect a vocabulary in images, folders or videos; write annotated images and JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
from tqdm import tqdm

from yoloworld.errors import InputError
from yoloworld.images import expand_sources, is_video, read_image, video_frames, video_info
from yoloworld.vocabulary import load_class_file, parse_class_string

log = logging.getLogger("yoloworld")

DEMO_MODEL = Path(__file__).resolve().parents[1] / "assets" / "demo.pt"


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="zero-shot detection of the classes you name")
    p.add_argument("sources", nargs="*", help="image files, folders or videos")
    p.add_argument("--weights", help="checkpoint (.pth/.pt/.onnx) or a name such as yolo_world_v2_s")
    p.add_argument("--text-model", help="Hugging Face CLIP folder (tokenizer / text weights), optional")
    p.add_argument("--classes", help='comma-separated classes; "|" separates synonyms: "person,car|automobile"')
    p.add_argument("--classes-file", help="class-text JSON (list of synonym lists) or a .txt, one class per line")
    p.add_argument("--conf", type=float, default=0.05, help="score threshold (default 0.05)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--max-det", type=int, default=300, help="detections kept per image (default 300)")
    p.add_argument("--imgsz", type=int, help="network input size (default: the model's own, else 640)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 or auto")
    p.add_argument("--batch", type=int, default=4, help="images per forward pass")
    p.add_argument("--save-dir", default="runs/predict", help="where annotated images/videos go")
    p.add_argument("--json", dest="json_path", help="write all detections to this JSON file")
    p.add_argument("--no-save", action="store_true", help="do not write annotated images")
    p.add_argument("--demo", action="store_true", help="run the built-in demo model on a synthetic image")
    p.add_argument("--seed", type=int, default=0, help="with --demo: which synthetic image to draw (default 0: the "
                   "same picture every run)")


def load_model(args):
    if str(args.weights).endswith(".onnx"):
        from yoloworld.export.onnx_runtime import OnnxDetector

        return OnnxDetector(args.weights, imgsz=args.imgsz)
    from yoloworld.api import YOLOWorld

    return YOLOWorld.from_pretrained(args.weights, text_model=args.text_model, device=args.device,
                                     imgsz=args.imgsz, fuse=True)


def chosen_classes(args):
    if args.classes_file:
        return load_class_file(args.classes_file)
    if args.classes:
        return parse_class_string(args.classes)
    return None


def run(args) -> int:
    if args.demo:
        return run_demo(args)
    if not args.sources:
        raise InputError("no sources given: yoloworld predict IMAGE_OR_FOLDER... --weights W --classes \"a,b\"")
    if not args.weights:
        raise InputError("no --weights given: pass a checkpoint file or a name such as yolo_world_v2_s")
    paths = expand_sources(args.sources)
    classes = chosen_classes(args)
    model = load_model(args)
    if classes is not None:
        model.set_classes(classes)
    elif not model.class_names:
        raise InputError("no classes given: use --classes \"person,car\" or --classes-file texts.json")
    records, skipped = [], 0
    save_dir = None if args.no_save else Path(args.save_dir)
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
    images = [p for p in paths if not is_video(p)]
    for video in (p for p in paths if is_video(p)):
        records += predict_video(model, video, args, save_dir)
    progress = tqdm(total=len(images), unit="img", disable=len(images) < 2)
    for start in range(0, len(images), args.batch):
        batch, arrays = [], []
        for path in images[start:start + args.batch]:
            try:
                arrays.append(read_image(path))
                batch.append(path)
            except InputError as exc:
                log.warning(f"skipped: {exc}")
                skipped += 1
        if batch:
            for path, image, result in zip(batch, arrays, model.predict(arrays, args.conf, args.iou, args.max_det)):
                result.file = str(path)
                records.append(result.to_dict())
                if save_dir:
                    cv2.imwrite(str(unique_name(save_dir, path)), result.plot(image))
        progress.update(len(images[start:start + args.batch]))
    progress.close()
    if not records:
        raise InputError(f"no readable images among {len(paths)} source(s)")
    write_outputs(records, args.json_path, save_dir, skipped)
    return 0


def unique_name(save_dir: Path, path: Path) -> Path:
    target = save_dir / path.name
    return target if not target.exists() else save_dir / f"{path.stem}_{abs(hash(str(path))) % 10**6}{path.suffix}"


def predict_video(model, video: Path, args, save_dir: Path | None) -> list[dict]:
    fps, count = video_info(video)
    writer, records = None, []
    for index, frame in tqdm(video_frames(video), total=count or None, unit="frame", desc=video.name):
        result = model.predict([frame], args.conf, args.iou, args.max_det)[0]
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
