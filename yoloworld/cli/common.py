"""What several commands share: the model and vocabulary flags, validated number types, loading a model.

Flags are checked where they are parsed (argparse types), so a bad value is a one-line usage error naming the
flag before any work starts; the API checks the same values again for Python callers.
"""

from __future__ import annotations

import argparse
import math

from yoloworld.devices import DEVICE_HELP

MAX_IMGSZ = 4096  # as yoloworld.predictor.MAX_IMGSZ (kept here so `--help` does not import torch)


def _number(text: str, kind=float) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def number_between(low: float, high: float, unit: str = ""):
    """An argparse type: a finite number in [low, high] (`unit` named in the error, e.g. "seconds")."""
    def parse(text: str) -> float:
        value = _number(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}{' ' + unit if unit else ''}")
        return value
    parse.__name__ = unit or "number"  # argparse names the type in its messages
    return parse


def probability(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def iou_threshold(text: str) -> float:
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def side(text: str) -> int:
    """An image side in pixels for generated data: 32..MAX_IMGSZ."""
    value = _number(text, int)
    if not 32 <= value <= MAX_IMGSZ:
        raise argparse.ArgumentTypeError(f"{text} is not between 32 and {MAX_IMGSZ} pixels")
    return value


def image_size(text: str) -> int:
    value = _number(text, int)
    if value < 32 or value % 32 or value > MAX_IMGSZ:
        raise argparse.ArgumentTypeError(f"{text} is not a multiple of 32 between 32 and {MAX_IMGSZ} (e.g. 640)")
    return value


def add_model_flags(parser: argparse.ArgumentParser, weights_required: bool = True, classes: bool = True,
                    imgsz_help: str = "network input size, a multiple of 32 (default: the model's own, else 640)"):
    """--weights, --text-model, --vision-model, --classes, --classes-file, --visual-prompt, --device, --imgsz: one
    spelling for every command."""
    parser.add_argument("--weights", required=weights_required,
                        help="checkpoint (.pth/.pt; where supported an .onnx file or an OpenVINO export folder / .xml) "
                        "or a name such as yolo_world_v2_s")
    parser.add_argument("--text-model", help="Hugging Face CLIP folder or hub id (tokenizer / text weights), "
                        "optional when the weights hold a text tower")
    add_vision_flag(parser)
    if classes:
        add_class_flags(parser)
    parser.add_argument("--device", default="auto", help=DEVICE_HELP + " (default auto)")
    parser.add_argument("--imgsz", type=image_size, help=imgsz_help)


def add_rect_flag(parser) -> None:
    parser.add_argument("--rect", action="store_true", help="letterbox to the smallest multiple of 32 holding the "
                        "image instead of a square (faster on non-square images; exported models need --dynamic-shape)")


def number_list(text: str, at_least: int, pairs: bool = False) -> tuple[float, ...]:
    """'1,2,3,4' -> (1.0, 2.0, 3.0, 4.0): at least `at_least` numbers, an even count with `pairs`."""
    values = tuple(_number(part) for part in text.split(","))
    if len(values) < at_least or (pairs and len(values) % 2):
        raise argparse.ArgumentTypeError(f"{text!r}: expected {'x,y pairs, ' if pairs else ''}at least {at_least} "
                                         "comma-separated numbers")
    return values


def fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1)")
    return value


def add_slice_flags(parser) -> None:
    parser.add_argument("--slice", type=side, metavar="PIXELS", help="detect small objects in tiles of this side "
                        "(e.g. 640), merged with the whole image's detections")
    parser.add_argument("--slice-overlap", type=fraction, default=0.2, help="share of a tile its neighbours overlap "
                        "(default 0.2)")
    parser.add_argument("--slice-no-full", action="store_true", help="with --slice: tiles only, no pass over the "
                        "whole image")


def add_fold_flag(parser) -> None:
    parser.add_argument("--no-fold", dest="fold", action="store_false", help="run the text-conditioned network "
                        "instead of a copy with the vocabulary folded into its weights (PyTorch weights; the same "
                        "detections, slower)")


def add_class_flags(parser, group=None, visual_flags: tuple[str, ...] = ("--visual-prompt",)) -> None:
    target = group or parser
    target.add_argument("--classes", help='comma-separated classes, "|" between synonyms: "person,car|automobile" '
                        '(or a JSON list: \'["person", ["car", "automobile"]]\')')
    target.add_argument("--classes-file", help="class-text JSON (list of synonym lists), a .txt (one class a line) "
                        "or an embeddings .npy from `yoloworld embed`")
    target.add_argument(*visual_flags, dest="visual_prompt", action="append", metavar="NAME=IMAGE[:x1,y1,x2,y2]",
                        help="a class given by reference images (repeatable; a name given twice averages its "
                        "references): NAME=IMAGE, NAME=IMAGE:x1,y1,x2,y2 (a box), NAME=FOLDER (its images) or a "
                        "FOLDER of class folders; a NAME that is also a text class joins it as a synonym")
    parser.set_defaults(visual_flag=visual_flags[0])  # the name errors give it (embed calls it --images)


def add_negative_flag(parser) -> None:
    parser.add_argument("--negative", help='texts that compete with the classes but are never reported: a box one '
                        'of them scores higher than a class is not that class, e.g. --negative "wolf,toy dog"')


def add_vision_flag(parser, what: str = "--visual-prompt references") -> None:
    parser.add_argument("--vision-model", help=f"Hugging Face CLIP folder or hub id whose vision tower encodes {what} "
                        "(default: the tower in the weights, else openai/clip-vit-base-patch32)")


def add_selection_flags(parser, conf: float, conf_help: str = "score threshold", calibrated: bool = True) -> None:
    """--conf, --iou, --max-det. `calibrated`: --conf left out means the model's calibrated per-class thresholds
    (`yoloworld calibrate`), else `conf` (args.conf is then None: the predictor chooses)."""
    default = f"the model's calibrated per-class thresholds, else {conf}" if calibrated else conf
    parser.add_argument("--conf", type=probability, default=None if calibrated else conf,
                        help=f"{conf_help} (default {default})")
    parser.add_argument("--iou", type=iou_threshold, default=0.7, help="NMS IoU threshold (default 0.7)")
    parser.add_argument("--max-det", type=positive_int, default=300, help="detections kept per image (default 300)")


def chosen_classes(args) -> list[list] | None:
    """The vocabulary of --classes-file or --classes, then the --visual-prompt classes, else None (the model's
    stored vocabulary may serve)."""
    from yoloworld.vocabulary import load_class_file, parse_class_string

    classes = None
    if getattr(args, "classes_file", None):
        classes = load_class_file(args.classes_file)
    elif getattr(args, "classes", None) is not None:
        classes = parse_class_string(args.classes, "--classes")
    if getattr(args, "visual_prompt", None):
        classes = with_visual_prompts(classes or [], args.visual_prompt, getattr(args, "visual_flag", "--visual-prompt"))
    return classes


def with_visual_prompts(classes: list[list], specs: list[str], flag: str = "--visual-prompt") -> list[list]:
    """`classes` plus one class per --visual-prompt name; a name that is already a class joins it as a synonym."""
    from yoloworld.prompts import parse_visual_prompts

    return merge_prompts(classes, parse_visual_prompts(specs, flag))


def merge_prompts(classes: list[list], prompts: list) -> list[list]:
    """`classes` plus one class per prompt (a `VisualPrompt`); a name that is already a class joins it as a
    synonym."""
    from yoloworld.prompts import prompt_name

    merged = [list(group) for group in classes]
    for prompt in prompts:
        group = next((g for g in merged if prompt_name(g[0]) == prompt.name), None)
        if group is None:
            merged.append([prompt])
        else:
            group.append(prompt)
    return merged


def load_predictor(args, fuse: bool = True):
    """The model for --weights, whatever its format (`yoloworld.load`); a fixed-size export given --rect is refused
    before any image is read."""
    from yoloworld.api import load

    model = load(args.weights, device=args.device, imgsz=args.imgsz, text_model=args.text_model,
                 vision_model=getattr(args, "vision_model", None), fuse=fuse, fold=getattr(args, "fold", True))
    if getattr(args, "rect", False):
        model.check_rect()
    return model


def apply_vocabulary(model, classes: list[list[str]] | None, what: str = "--classes \"person,car\"",
                     negatives: str | None = None):
    """Set `classes` (and --negative's texts) on the model, or keep the vocabulary stored with it; neither is a
    one-line error."""
    from yoloworld.errors import InputError

    if classes is None and not model.class_names:
        raise InputError(f"no classes given and the model stores none: use {what} or --classes-file texts.json")
    if classes is not None or negatives:
        return model.set_classes(classes if classes is not None else model.vocabulary.classes, negatives=negatives)
    return model
