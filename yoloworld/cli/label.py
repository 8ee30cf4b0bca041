"""`yoloworld label`: auto-annotate images into a dataset for `yoloworld train` (COCO + class texts, or YOLO)."""

from __future__ import annotations

import argparse
from contextlib import contextmanager

from yoloworld.cli.common import (
    add_fold_flag,
    add_model_flags,
    add_negative_flag,
    add_selection_flags,
    apply_vocabulary,
    chosen_classes,
    load_predictor,
    non_negative_int,
    positive_int,
    probability,
)


def class_threshold(text: str) -> tuple[str, float]:
    name, sep, value = text.rpartition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=THRESHOLD, e.g. \"traffic light=0.4\"")
    return name.strip(), probability(value)


def add_parser(sub) -> None:
    p = sub.add_parser("label", help="auto-label images into a COCO or YOLO dataset to train on",
                       description="Detect the classes you name in every image and write a dataset that "
                       "`yoloworld train` and `yoloworld data check` read as is. Rerun the same command after a "
                       "crash or Ctrl-C: images already labelled are skipped.")
    p.add_argument("sources", nargs="+", help="image files or folders")
    add_model_flags(p)
    add_negative_flag(p)
    add_selection_flags(p, conf=0.25, conf_help="score threshold of every class without --class-conf")
    add_fold_flag(p)
    p.add_argument("--class-conf", type=class_threshold, action="append", default=[], metavar="NAME=T",
                   help="threshold of one class (its first synonym), repeatable: --class-conf \"person=0.4\"")
    p.add_argument("--out", required=True, help="dataset folder to write (or to continue)")
    p.add_argument("--format", choices=("coco", "yolo"), default="coco",
                   help="coco: annotations.json + class_texts.json + dataset.yaml; yolo: labels/*.txt + data.yaml")
    p.add_argument("--val-fraction", type=probability, default=0.1,
                   help="about this fraction of images goes to a val split (chosen by file name; default 0.1)")
    p.add_argument("--drop-empty", action="store_true", help="leave images without any box out of the dataset")
    p.add_argument("--review", type=non_negative_int, default=16, help="labelled samples in review.png (default 16)")
    p.add_argument("--batch", type=positive_int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--ray", action="store_true", help="detect on Ray Data workers (a local Ray instance, or the "
                   "cluster of --address); the dataset is the same, and a stopped run resumes alike (needs "
                   "yoloworld[serve])")
    p.add_argument("--address", help="with --ray: the Ray cluster to join (auto, or ray://HOST:10001)")
    p.add_argument("--workers", type=positive_int, default=2, help="with --ray: Ray Data workers, one model each "
                   "(default 2)")
    p.add_argument("--overwrite", action="store_true",
                   help="remove the files an earlier labelling wrote in --out (only those) and start over")


def run(args) -> int:
    from yoloworld.autolabel import LabelSettings, label_images
    from yoloworld.autolabel.labeler import prepare_out
    from yoloworld.autolabel.review import summary_table
    from yoloworld.errors import InputError
    from yoloworld.files import check_output
    from yoloworld.images import expand_sources, is_video
    from yoloworld.outputs import check_apart

    out = check_output(args.out, "--out", folder=True)
    check_apart(out, args.sources, "--out")
    settings = LabelSettings(args.format, args.conf, dict(args.class_conf), args.iou, args.max_det,
                             args.val_fraction, args.drop_empty)
    found = expand_sources(args.sources)
    sources = [p for p in found if not is_video(p)]
    if not sources:  # the sources hold videos only: name them, not the output folder
        raise InputError(f"{', '.join(args.sources)}: no image to label, only {len(found)} video(s); label reads "
                         "images (extract frames first, e.g. with ffmpeg)")
    model = apply_vocabulary(load_predictor(args), chosen_classes(args), negatives=args.negative)
    prepare_out(out, args.overwrite)
    with detector(args, model) as detect:
        report = label_images(model, sources, out, settings, args.batch, args.review, str(args.weights), detect)
    print(summary_table(report.summary))
    resumed = f", {report.resumed} done by an earlier run" if report.resumed else ""
    unreadable = f", {report.unreadable} unreadable skipped" if report.unreadable else ""
    print(f"labelled {report.labelled} image(s){resumed}{unreadable}; dataset {report.dataset}"
          + (f", review grid {report.grid}" if report.grid else "") + f", summary {out / 'summary.json'}\n"
          f"check it: yoloworld data check {report.dataset}\n"
          f"train on it: yoloworld train RECIPE data.train=[] data.val=[] data.dataset={report.dataset}")
    return 0


@contextmanager
def detector(args, model):
    """`label_images`' detection: None (in this process), or on Ray Data workers started here and stopped after."""
    if not args.ray:
        yield None
        return
    from yoloworld.errors import InputError

    try:
        import ray
        import ray.data  # noqa: F401
    except ModuleNotFoundError:
        raise InputError("label --ray needs Ray Data: pip install 'yoloworld[serve]'") from None
    from yoloworld.autolabel.distributed import detect_on_ray
    from yoloworld.cluster import ModelSpec, start_ray

    start_ray(args.address)
    try:
        yield detect_on_ray(ModelSpec.from_args(args), model.class_names, args.workers)
    finally:
        ray.shutdown()
