"""`yoloworld convert`: datasets and checkpoints between formats.

    yolo2coco DIR        a YOLO txt dataset (every split found) to COCO JSON files
    ultralytics X.pt     an Ultralytics YOLO-World model to an official-format checkpoint (.pth)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from yoloworld.data.class_texts import write_class_texts
from yoloworld.data.convert import output_path, yolo_to_coco
from yoloworld.data.problems import ProblemLog
from yoloworld.data.yolo_format import find_yolo_splits
from yoloworld.files import check_output
from yoloworld.outputs import claim_files


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert datasets between formats")
    formats = parser.add_subparsers(dest="convert_command", required=True)
    yolo = formats.add_parser("yolo2coco", help="YOLO txt dataset (images/, labels/, classes.txt or data.yaml) "
                              "to COCO JSON, one file per split")
    yolo.add_argument("source", help="dataset folder (one split, or train/val/test inside) or its data.yaml")
    yolo.add_argument("--out", help="output JSON for one split (default DIR/annotations.json); with several "
                      "splits a folder (default DIR/annotations/<split>.json) or FILE.json -> FILE_<split>.json")
    yolo.add_argument("--texts", help="also write the class-text JSON (one synonym list per class) here")
    ultra = formats.add_parser("ultralytics", help="Ultralytics YOLO-World .pt (yolov8s-worldv2.pt, a fine-tune, a "
                               "trainer checkpoint) to an official-format .pth with its vocabulary")
    ultra.add_argument("source", help="the .pt file, or a name such as yolov8s-worldv2")
    ultra.add_argument("--out", help="output .pth (default: next to the source, same name)")
    ultra.add_argument("--text-model", help="Hugging Face CLIP folder whose text tower is stored in the file too, "
                       "so it carries every key of an official checkpoint")


def run(args: argparse.Namespace) -> int:
    if args.convert_command == "ultralytics":
        return convert_ultralytics(args)
    check_output(args.texts, "--texts")
    claim_files(planned_coco_files(args.source, args.out), "convert yolo2coco", "--out")
    if args.texts:
        claim_files([args.texts], "convert yolo2coco", "--texts")
    problems = ProblemLog()
    written = yolo_to_coco(args.source, args.out, problems)
    for line in problems.lines():
        print(f"warning: {line}")
    if len(problems):
        print(problems.summary())
    for split in written:
        print(f"{split.split}: {split.images} images, {split.boxes} boxes -> {split.path}")
    if args.texts:
        _, names = find_yolo_splits(args.source)
        write_class_texts([[name] for name in names], args.texts)
        print(f"class texts: {args.texts} ({len(names)} classes)")
    print(f"fine-tune on it: {training_command(written, args.texts)}")
    return 0


def planned_coco_files(source: str, out: str | None) -> list[Path]:
    """The JSON files `yolo_to_coco` writes (one per split with images), recorded as convert's before writing:
    an annotations file of the user's there is refused in one line, never replaced."""
    splits, _ = find_yolo_splits(source)
    root = Path(source)
    base = root.parent if root.is_file() else root
    several = len(splits) > 1
    return [output_path(Path(out) if out else None, base, split, several) for split, images in splits.items()
            if images]


def training_command(written: list, texts: str | None) -> str:
    """The `yoloworld train` line that trains on the converted splits (val: the split named val, if any)."""
    by_name = {split.split: split for split in written}
    train = by_name.get("train", written[0])
    val = by_name.get("val")
    settings = []
    for key, split in (("train", train), ("val", val)):
        if split is None:
            settings.append(f"data.{key}=[]")
            continue
        settings += [f"data.{key}.0.ann={split.path}", f"data.{key}.0.images={split.images_root}"]
        settings += [f"data.{key}.0.classes_file={texts}"] if texts else []
    return "yoloworld train finetune_coco " + " ".join(settings)


def convert_ultralytics(args: argparse.Namespace) -> int:
    from yoloworld.errors import CheckpointError
    from yoloworld.models.checkpoint import TEXT_PREFIX, infer_config, is_fused, load_weights, resolve_weights, save_checkpoint
    from yoloworld.models.detector import YOLOWorldDetector
    from yoloworld.models.text import TextEncoder
    from yoloworld.models.ultralytics import read_ultralytics, unfused_state

    check_output(args.out, "--out")
    source = resolve_weights(args.source)
    out = Path(args.out) if args.out else source.with_suffix(".pth")
    claim_files([out], "convert ultralytics", "--out")
    converted = read_ultralytics(source)
    if converted is None:
        raise CheckpointError(f"{source}: not an Ultralytics YOLO-World file (a torch zip pickling a WorldModel)")
    state = converted["state_dict"]
    config = infer_config(state, str(source))
    encoder = TextEncoder.from_pretrained(args.text_model) if args.text_model else None
    config.text_hidden = encoder.model.config.hidden_size if encoder is not None else None
    model = YOLOWorldDetector(config, encoder)
    if is_fused(state):  # the official layout has no fused form
        state = unfused_state(model, state)
    load_weights(model, state, str(source), (TEXT_PREFIX,) if encoder is not None else ())
    vocabulary = converted["meta"]["yoloworld"]
    save_checkpoint(out, model, vocabulary, class_embeddings=converted["class_embeddings"])
    names = [group[0] for group in vocabulary["classes"]]
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    print(f"{source} -> {out}: YOLO-World {config.version}, {len(names)} classes ({shown})"
          + ("" if encoder is not None else "; no text tower (predicts its stored classes; pass --text-model to "
             "embed one)"))
    return 0
