"""`yoloworld val`: COCO / LVIS metrics for a model (--weights) or for an existing COCO results file (--predictions)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from yoloworld.cli.common import (
    add_fold_flag,
    add_model_flags,
    add_rect_flag,
    iou_threshold,
    load_predictor,
    positive_int,
    probability,
)
from yoloworld.errors import DatasetError, InputError
from yoloworld.files import check_output, write_json

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "val",
        help="COCO / LVIS box (and mask) AP of a model or of a COCO results file",
        description="Score detections with COCO AP or LVIS AP. LVIS is reported in two labelled modes: standard "
        "(max 300 detections per image, the official repo's tables) and Fixed AP (top 10,000 detections per class "
        "over the dataset, no per-image cap, the paper's protocol).",
    )
    add_model_flags(parser, weights_required=False, classes=False,
                    imgsz_help="inference size, a multiple of 32 (default: the model's own, else 640)")
    parser.add_argument("--predictions", help="existing COCO results JSON, or the --json file of `yoloworld "
                        "predict`, to score (instead of --weights)")
    parser.add_argument("--ann", required=True, help="COCO or LVIS annotation JSON")
    parser.add_argument("--images", help="image folder (file_name in --ann is relative to it); needed with --weights")
    parser.add_argument("--classes-file", help="class-text JSON: one list of synonyms per category, in --ann order "
                        "(default: the category names, or the vocabulary stored with the model)")
    parser.add_argument("--visual-prompt", action="append", metavar="NAME=IMAGE[:x1,y1,x2,y2]",
                        help="prompt the category NAME by reference images instead of its text (repeatable; forms "
                        "as in predict: NAME=IMAGE, NAME=IMAGE:x1,y1,x2,y2, NAME=FOLDER, a FOLDER of class folders)")
    parser.add_argument("--kind", choices=("auto", "coco", "lvis"), default="auto",
                        help="annotation kind (auto: LVIS when categories carry 'frequency')")
    parser.add_argument("--lvis-mode", choices=("standard", "fixed", "both"), default="both",
                        help="LVIS metric(s) to report (default both)")
    parser.add_argument("--save-json", help="write the detections here in COCO results format")
    parser.add_argument("--metrics-json", help="write the metrics here as a flat JSON object")
    parser.add_argument("--out-dir", help="write per-class AP tables (CSV) and PR curves (PNG) here")
    parser.add_argument("--batch", type=positive_int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--conf", type=probability, default=0.001, help="score threshold (official: 0.001)")
    parser.add_argument("--iou", type=iou_threshold, default=0.7, help="NMS IoU threshold (official: 0.7)")
    add_fold_flag(parser)
    add_rect_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from yoloworld.eval import evaluate, load_annotations
    from yoloworld.eval.report import (
        format_metrics_table,
        write_metrics_json,
        write_reports,
    )

    if bool(args.weights) == bool(args.predictions):
        raise InputError("give either --weights (a model to run on --images) or --predictions (a results file)")
    if args.weights and not args.images:
        raise InputError("--weights needs --images DIR (the folder the annotation file names images in)")
    for path, flag in ((args.save_json, "--save-json"), (args.metrics_json, "--metrics-json")):
        check_output(path, flag)
    check_output(args.out_dir, "--out-dir", folder=True)
    annotations = load_annotations(args.ann, args.kind)
    lvis_modes = _lvis_modes(annotations.kind, args.lvis_mode)
    if args.predictions:
        predictions, source = _read_predictions(args.predictions, annotations), args.predictions
    else:
        predictions, source = predict_dataset(args, annotations, _model_max_det(lvis_modes)), "model predictions"
    if args.save_json:
        write_json(args.save_json, predictions)
        logger.info("wrote %d detections to %s", len(predictions), args.save_json)
    all_metrics = []
    for lvis_mode in lvis_modes:
        for iou_type in _iou_types(annotations, predictions):
            evaluation = evaluate(annotations, predictions, lvis_mode=lvis_mode, predictions_name=source,
                                  iou_type=iou_type)
            print(format_metrics_table(evaluation.metrics))
            if args.out_dir and iou_type == "bbox":
                write_reports(evaluation, Path(args.out_dir))
            all_metrics.append(evaluation.metrics)
    if args.metrics_json:
        write_metrics_json(_flat_metrics(all_metrics), Path(args.metrics_json))
    return 0


def _iou_types(annotations, predictions: list) -> list[str]:
    """Box AP always; mask AP too when the detections carry masks (a segmentation model) and the ground truth has
    them."""
    from yoloworld.eval.evaluate import has_masks

    if not predictions or "segmentation" not in predictions[0]:
        return ["bbox"]
    if not has_masks(annotations):
        logger.warning("warning: the detections carry masks but not every annotation has one: box AP only")
        return ["bbox"]
    return ["bbox", "segm"]


def _lvis_modes(kind: str, requested: str) -> list[str]:
    if kind == "coco":
        return ["standard"]  # ignored for COCO: there is a single COCO mode
    return ["standard", "fixed"] if requested == "both" else [requested]


def _model_max_det(lvis_modes: list[str]) -> int:
    """300 per image for COCO / LVIS standard; Fixed AP follows the paper: 1000 per image, then top 10k per class.

    The standard budget is the top 300 of the same detections, so one pass serves both modes.
    """
    from yoloworld.eval import (
        LVIS_FIXED_MODEL_MAX_PER_IMAGE,
        LVIS_STANDARD_MAX_PER_IMAGE,
    )

    return LVIS_FIXED_MODEL_MAX_PER_IMAGE if "fixed" in lvis_modes else LVIS_STANDARD_MAX_PER_IMAGE


def _read_predictions(path: str, annotations) -> list:
    """A COCO results list, or the records `yoloworld predict --json` writes (matched to images by file name)."""
    from yoloworld.eval.inputs import load_predictions
    from yoloworld.eval.predict_json import is_predict_json, predict_records_to_coco

    predictions, _ = load_predictions(path)
    if is_predict_json(predictions):
        predictions = predict_records_to_coco(predictions, annotations.dataset, path)
    if not predictions:
        # scoring nothing is almost always a wrong file or a threshold that removed everything
        raise DatasetError(f"{path}: holds no detections; nothing to score (every AP would be 0)")
    return predictions


def _flat_metrics(all_metrics: list[dict]) -> dict:
    """One flat object: the first mode's box keys as they are, a second mode's (LVIS fixed) prefixed 'fixed_', mask
    metrics prefixed 'segm_' ('segm_fixed_')."""
    flat = dict(all_metrics[0])
    for metrics in all_metrics[1:]:
        prefix = "segm_" if metrics.get("iou_type") == "segm" else ""
        if metrics["mode"] != all_metrics[0]["mode"]:
            prefix += metrics["mode"].split("-")[-1] + "_"
        flat.update({prefix + key: value for key, value in metrics.items()})
    return flat


def predict_dataset(args: argparse.Namespace, annotations, max_det: int, fuse: bool = True) -> list[dict]:
    """Run the model over every image of the annotation set; returns COCO results."""
    model, paths = prepare_model(args, annotations, fuse)
    return predict_images(model, paths, args, annotations, max_det)


def prepare_model(args: argparse.Namespace, annotations, fuse: bool = True) -> tuple:
    """The model with the annotation's categories as its vocabulary (class index i <-> i-th category), and the
    image paths; the cheap checks first."""
    categories = annotations.categories
    texts = _class_file_texts(args.classes_file, categories, str(args.ann))
    if args.visual_prompt:
        texts = _with_visual_prompts(texts, args.visual_prompt, categories, str(args.ann))
    paths = _image_paths(Path(args.images), annotations.dataset["images"], args.ann)
    model = load_predictor(args, fuse=fuse)  # after the cheap checks: it loads torch
    _set_vocabulary(model, texts, categories, str(args.ann))
    return model, paths


def predict_images(model, paths: list[str], args: argparse.Namespace, annotations, max_det: int) -> list[dict]:
    """COCO results of `model` on the annotation set's images (`paths`, in its order), at --conf / --iou."""
    from tqdm import tqdm

    from yoloworld.eval import results_to_coco

    images = annotations.dataset["images"]
    category_ids = [category["id"] for category in annotations.categories]
    predictions = []
    for start in tqdm(range(0, len(paths), args.batch), desc="val", unit="batch"):  # chunks show progress
        results = model.predict(paths[start : start + args.batch], conf=args.conf, iou=args.iou, max_det=max_det,
                                batch_size=args.batch, rect=args.rect)
        for image, result in zip(images[start : start + args.batch], results):
            predictions += results_to_coco(image["id"], result.xyxy, result.scores, result.class_ids, category_ids,
                                           result.masks)
    return predictions


def _image_paths(folder: Path, images: list[dict], ann_name: str) -> list[str]:
    if not folder.is_dir():
        raise InputError(f"{folder}: image folder not found")
    paths = [folder / str(image.get("file_name", "")) for image in images]
    missing = [path for path, image in zip(paths, images) if "file_name" not in image or not path.is_file()]
    if missing:
        raise DatasetError(
            f"{ann_name}: {len(missing)} of {len(paths)} images not found under {folder} (e.g. {missing[0].name!r}); "
            "check --images"
        )
    return [str(path) for path in paths]


def _class_file_texts(classes_file: str | None, categories: list[dict], ann_name: str) -> list | None:
    from yoloworld.data.class_texts import check_class_count, load_class_texts

    if classes_file is None:
        return None
    texts = load_class_texts(classes_file)
    check_class_count(texts, len(categories), str(classes_file), ann_name)
    return texts


def _with_visual_prompts(texts: list | None, specs: list[str], categories: list[dict], ann_name: str) -> list:
    """Per category its prompts: the references of the --visual-prompt named like it, else its texts."""
    from yoloworld.data.class_texts import texts_from_categories
    from yoloworld.prompts import parse_visual_prompts

    names = [str(category.get("name", "")) for category in categories]
    prompts = {prompt.name: prompt for prompt in parse_visual_prompts(specs)}
    unknown = [name for name in prompts if name not in names]
    if unknown:
        raise InputError(f"--visual-prompt {unknown[0]!r}: not a category of {ann_name} ({_preview(names)})")
    texts = texts if texts is not None else texts_from_categories(categories)
    return [[prompts[name]] if name in prompts else group for name, group in zip(names, texts)]


def _set_vocabulary(model, texts: list | None, categories: list[dict], ann_name: str) -> None:
    """The class-text file's prompts; else the vocabulary stored with the model when its names are the
    annotation's categories (a model trained with its vocabulary needs no text encoder); else the names."""
    from yoloworld.data.class_texts import texts_from_categories

    names = [str(category.get("name", "")) for category in categories]
    if texts is not None:
        model.set_classes(texts)
    elif model.class_names == names:
        logger.info("using the vocabulary stored with the model (%d classes, the annotation's categories)", len(names))
    elif model.class_names and not _has_text_encoder(model):
        raise InputError(f"{ann_name}: the categories ({_preview(names)}) are not the vocabulary stored with the "
                         f"model ({_preview(model.class_names)}), and the model has no text encoder to encode them; "
                         "pass --text-model, or evaluate on data with the model's classes")
    else:
        model.set_classes(texts_from_categories(categories))


def _has_text_encoder(model) -> bool:
    return getattr(getattr(model, "model", None), "text_model", None) is not None or getattr(model, "dynamic", False)


def _preview(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f", ... ({len(names)})" if len(names) > 4 else "")
