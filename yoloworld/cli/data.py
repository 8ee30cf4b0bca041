"""`yoloworld data check` (read a dataset as training does, summarise, draw augmented samples) and
`yoloworld data synth` (write the synthetic shapes dataset)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from yoloworld.cli.common import image_size, non_negative_int, positive_int, side
from yoloworld.data.augment import AugmentConfig
from yoloworld.data.check import check_sources
from yoloworld.data.problems import ProblemLog
from yoloworld.data.sources import KINDS, DatasetConfig, load_dataset_yaml, read_source
from yoloworld.data.synth import COLOURS, SHAPES, TEXTURES, SynthConfig, synthesize
from yoloworld.data.visualize import write_grid
from yoloworld.errors import DatasetError
from yoloworld.files import check_output


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="check a dataset before training, or write a synthetic one")
    commands = parser.add_subparsers(dest="data_command", required=True)

    check = commands.add_parser("check", help="read a dataset like training does; print a summary and problems, "
                                "draw augmented samples (exit 2 on a fatal problem)")
    check.add_argument("source", nargs="?", help="a YOLO dataset folder, its data.yaml, or a yoloworld dataset YAML")
    check.add_argument("--ann", help="annotation JSON (COCO, Objects365, LVIS, grounding or CC3M)")
    check.add_argument("--images", help="image folder of --ann")
    check.add_argument("--classes-file", help="class-text JSON: one synonym list per category, in category order")
    check.add_argument("--kind", default="auto", choices=("auto",) + KINDS, help="format of --ann (default: detect)")
    check.add_argument("--split", default="train", help="split of a YOLO folder or dataset YAML (default train)")
    check.add_argument("--grid", default="data_check.png", help="PNG of augmented samples (default data_check.png)")
    check.add_argument("--no-grid", action="store_true", help="do not draw augmented samples")
    check.add_argument("--samples", type=non_negative_int, default=16, help="augmented samples in the grid (default 16)")
    check.add_argument("--image-size", type=image_size, default=640, help="training input size (default 640)")
    check.add_argument("--no-mosaic", action="store_true", help="draw the last-epochs pipeline (no mosaic)")
    check.add_argument("--decode-limit", type=int, help="decode at most this many images per dataset")
    check.add_argument("--seed", type=int, default=0)

    synth = commands.add_parser(
        "synth", help="write a small dataset of coloured shapes in COCO, grounding and YOLO layouts",
        description="Writes OUT/coco/ (images/, annotations.json, class_texts.json and, for the val split, "
        "annotations_val.json), OUT/grounding/annotations{,_val}.json and OUT/yolo/ (images/ and labels/ "
        "{train,val}, data.yaml). "
        "`--out data/synth` is where the synth_demo recipe reads it: `yoloworld train synth_demo` next.")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--images", type=positive_int, default=200, help="number of images (default 200)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--val-fraction", type=float, default=0.2,
                       help="fraction of images in the val split (default 0.2; 0 writes no val split)")
    synth.add_argument("--colours", type=int, default=3, help=f"colours used, 1..{len(COLOURS)} (default 3)")
    synth.add_argument("--shapes", type=int, default=3, help=f"shapes used, 1..{len(SHAPES)} (default 3)")
    synth.add_argument("--max-objects", type=int, default=6, help="objects per image: 1..N (default 6)")
    synth.add_argument("--min-side", type=side, default=320, help="shortest image side, 32..4096 (default 320)")
    synth.add_argument("--max-side", type=side, default=640, help="longest image side, 32..4096 (default 640)")
    synth.add_argument("--synonyms", action="store_true", help="give every class a second text ('red disc')")
    synth.add_argument("--texture", choices=TEXTURES, default="solid",
                       help="fill of the shapes: solid, or striped (a new appearance for fine-tuning experiments)")
    synth.add_argument("--only", help="draw only these classes, comma-separated ('red circle,blue square')")
    synth.add_argument("--unlabelled", help="with --only: also draw these classes, solid and never annotated")
    synth.add_argument("--overwrite", action="store_true", help="replace the files an earlier synth wrote in --out (only those)")
    video = synth.add_argument_group("tracking video (--video): OUT/video.mp4, OUT/gt/gt.txt (MOTChallenge ground "
                                     "truth), OUT/class_texts.json")
    video.add_argument("--video", action="store_true", help="write a video of moving shapes with ground-truth tracks "
                       "(same-class crossings, a pillar that hides them, objects entering and leaving) instead")
    video.add_argument("--frames", type=positive_int, default=60, help="frames of the video (default 60)")
    video.add_argument("--objects", type=positive_int, default=4, help="moving objects, in crossing pairs (default 4)")
    video.add_argument("--size", type=video_size, default=(320, 240), metavar="WxH", help="frame size (default 320x240)")
    video.add_argument("--no-pillar", action="store_true", help="no occluding pillar")


def video_size(text: str) -> tuple[int, int]:
    width, x, height = text.lower().partition("x")
    if not x:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 320x240)")
    return side(width), side(height)


def run(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        return run_check(args)
    return run_synth_video(args) if args.video else run_synth(args)


def run_synth_video(args: argparse.Namespace) -> int:
    from yoloworld.data.synth_video import VideoConfig, write_video_set

    check_output(args.out, "--out", folder=True)
    config = VideoConfig(frames=args.frames, width=args.size[0], height=args.size[1], objects=args.objects,
                         pillar=not args.no_pillar, seed=args.seed)
    counts = write_video_set(args.out, config)
    out = Path(args.out)
    print(f"wrote {counts['frames']} frames with {counts['tracks']} tracks ({counts['boxes']} boxes) to {out}")
    print(f"track it: yoloworld track {out / 'video.mp4'} --weights demo --json tracks.json")
    return 0


def dataset_configs(args: argparse.Namespace) -> list[DatasetConfig]:
    """The datasets named on the command line, as training would read them."""
    if args.ann:
        if args.source:
            raise DatasetError("give either a dataset folder/YAML or --ann/--images, not both")
        if not args.images:
            raise DatasetError(f"{args.ann}: pass the image folder too (--images DIR)")
        return [DatasetConfig(kind=args.kind, ann=args.ann, images=args.images, classes_file=args.classes_file)]
    if not args.source:
        raise DatasetError("nothing to check: pass a YOLO folder, a dataset YAML, or --ann FILE --images DIR")
    source = Path(args.source)
    if source.suffix in (".yaml", ".yml") and source.is_file():
        splits = load_dataset_yaml(source)
        if args.split not in splits:
            raise DatasetError(f"{source}: has no {args.split!r} split (found: {', '.join(splits) or 'none'})")
        return splits[args.split]
    return [DatasetConfig(kind="yolo", images=str(source), split=args.split)]


def run_check(args: argparse.Namespace) -> int:
    if not args.no_grid:
        check_output(args.grid, "--grid")
    problems = ProblemLog()
    sources = [read_source(config, problems) for config in dataset_configs(args)]
    if not any(len(s.records) for s in sources):
        raise DatasetError(f"{sources[0].ann_file or sources[0].name}: no usable image; nothing to train on")
    report = check_sources(sources, problems, args.decode_limit)
    for line in report.lines():
        print(line)
    for line in problems.lines():
        print(f"warning: {line}")
    print(problems.summary())
    if not args.no_grid and args.samples > 0:
        from yoloworld.data.train_dataset import TrainDataset  # imports torch: not needed for --help

        dataset = TrainDataset(sources, AugmentConfig(image_size=args.image_size), seed=args.seed)
        dataset.use_mosaic = not args.no_mosaic
        rng = np.random.default_rng(args.seed)
        indices = rng.choice(len(dataset), size=min(args.samples, len(dataset)), replace=False)
        path = write_grid([dataset.augmented(int(i)) for i in indices], args.grid)
        print(f"augmented samples: {path}")
    return 0


def names(text: str | None) -> tuple[str, ...]:
    """'red circle, blue square' -> ('red circle', 'blue square')."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def run_synth(args: argparse.Namespace) -> int:
    check_output(args.out, "--out", folder=True)
    config = SynthConfig(images=args.images, seed=args.seed, colours=args.colours, shapes=args.shapes,
                         min_side=args.min_side, max_side=args.max_side, max_objects=args.max_objects,
                         val_fraction=args.val_fraction, synonyms=args.synonyms, texture=args.texture,
                         only=names(args.only) or None, unlabelled=names(args.unlabelled))
    counts = synthesize(args.out, config, overwrite=args.overwrite)
    out = Path(args.out)
    written = ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in counts.items() if count)
    print(f"wrote {written} to {out}")
    print(f"  coco:      --ann {out / 'coco' / 'annotations.json'} --images {out / 'coco' / 'images'} "
          f"--classes-file {out / 'coco' / 'class_texts.json'}")
    print(f"  grounding: --ann {out / 'grounding' / 'annotations.json'} --images {out / 'coco' / 'images'}")
    print(f"  yolo:      {out / 'yolo'}")
    print(f"train on it: {synth_training_command(out, args.val_fraction > 0)}")
    return 0


def synth_training_command(out: Path, has_val: bool) -> str:
    """`yoloworld train synth_demo`, with the paths of `out` where it is not the recipe's data/synth."""
    command = "yoloworld train synth_demo"
    if out == Path("data/synth") and has_val:
        return command
    coco = out / "coco"
    settings = [f"data.train.0.ann={coco / 'annotations.json'}", f"data.train.0.images={coco / 'images'}",
                f"data.train.0.classes_file={coco / 'class_texts.json'}"]
    settings += [f"data.val.0.ann={coco / 'annotations_val.json'}", f"data.val.0.images={coco / 'images'}",
                 f"data.val.0.classes_file={coco / 'class_texts.json'}"] if has_val else ["data.val=[]"]
    return " ".join([command, *settings])
