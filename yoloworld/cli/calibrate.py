"""`yoloworld calibrate`: per-class score thresholds from a small labelled sample, saved with the model.

Runs the model once at a low --conf over the sample (the `val` machinery), matches detections at IoU 0.5, picks
per class the threshold that best meets --target (see yoloworld.eval.calibrate), prints precision / recall / F1
per class, and writes a copy of the weights holding the vocabulary and the thresholds; predict, label and
`yoloworld.load(...).predict` then use them unless --conf / conf= is given.
"""

from __future__ import annotations

import argparse

from yoloworld.cli.common import add_model_flags, add_rect_flag, iou_threshold, positive_int, probability
from yoloworld.errors import InputError
from yoloworld.files import check_output


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "calibrate", help="per-class score thresholds from a labelled sample, stored with the model",
        description="Find per-class score thresholds on a small labelled sample (COCO annotations) and save them "
        "with the model's vocabulary: predict, label and the Python API use them unless --conf is given.")
    add_model_flags(parser, classes=False)
    parser.add_argument("--ann", required=True, help="COCO annotation JSON of the labelled sample")
    parser.add_argument("--images", required=True, help="image folder (file_name in --ann is relative to it)")
    parser.add_argument("--classes-file", help="class-text JSON: one list of synonyms per category, in --ann order "
                        "(default: the category names, or the vocabulary stored with the model)")
    parser.set_defaults(visual_prompt=None)
    parser.add_argument("--target", default="f1", help="f1 (default: the best F1 per class) or precision=P (the "
                        "most recall at a precision of at least P, e.g. precision=0.9)")
    parser.add_argument("--out", required=True, help="the calibrated weights to write (.pth)")
    parser.add_argument("--conf", type=probability, default=0.01,
                        help="lowest score considered (default 0.01): thresholds are never below it")
    parser.add_argument("--iou", type=iou_threshold, default=0.7, help="NMS IoU threshold (default 0.7)")
    parser.add_argument("--batch", type=positive_int, default=8, help="images per forward pass (default 8)")
    add_rect_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from yoloworld.cli.val import predict_images, prepare_model
    from yoloworld.eval import load_annotations
    from yoloworld.eval.calibrate import Target, calibrate, class_curves
    from yoloworld.thresholds import ClassThresholds

    target = Target.parse(args.target)
    out = check_output(args.out, "--out")
    annotations = load_annotations(args.ann, "coco")
    model, paths = prepare_model(args, annotations, fuse=False)
    if not hasattr(model, "save"):
        raise InputError(f"{args.weights}: calibrate writes PyTorch weights; give the checkpoint (.pth/.pt), then "
                         "export the calibrated file (the export keeps its thresholds)")
    predictions = predict_images(model, paths, args, annotations, max_det=300)
    result = calibrate(class_curves(annotations, predictions), model.class_names, target, args.conf)
    print(result.table())
    model.thresholds = ClassThresholds(result.per_class(), result.fallback, str(target))
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out, keep_text_model=True)
    missing = [name for name, t in zip(result.names, result.thresholds) if t is None]
    print(f"wrote {out}: {len(result.per_class())} per-class threshold(s) ({target}), fallback {result.fallback:.3f}"
          + (f" for {', '.join(missing)} (no labelled box found)" if missing else "")
          + f"; {len(paths)} image(s), {sum(c.ground_truth for c in result.curves)} box(es)")
    return 0
