"""Validation during training: COCO box AP (and mask AP for segmentation models) of the EMA model on the val set,
exactly as `yoloworld val` scores.

Images go through THE letterbox; text models see the dataset vocabulary (synonyms merged, the padding
prompt appended and never reported); fixed-vocabulary models (prompt / rep) score their own columns.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch.utils.data import DataLoader

from yoloworld.data.eval_dataset import EvalDataset, collate
from yoloworld.data.records import DatasetSource
from yoloworld.errors import ConfigError
from yoloworld.eval import evaluate, load_annotations, results_to_coco
from yoloworld.eval.evaluate import has_masks
from yoloworld.postprocess import postprocess
from yoloworld.vocabulary import Vocabulary

from .feedback import read_scalars

logger = logging.getLogger(__name__)

# our metric names -> the names in the official logs (scalars.json of mmengine), used in scalars.jsonl
LOG_NAMES = {"AP": "coco/bbox_mAP", "AP50": "coco/bbox_mAP_50", "AP75": "coco/bbox_mAP_75",
             "APs": "coco/bbox_mAP_s", "APm": "coco/bbox_mAP_m", "APl": "coco/bbox_mAP_l",
             "segm_AP": "coco/segm_mAP", "segm_AP50": "coco/segm_mAP_50", "segm_AP75": "coco/segm_mAP_75"}
# the retained vocabulary (keep.retain): box metrics under their own names
RETAIN_NAMES = {name: "retain/" + LOG_NAMES[name].split("/")[1] for name in ("AP", "AP50", "AP75")}


class Validator:
    def __init__(self, source: DatasetSource, image_size: int, batch_size: int = 8, workers: int = 0,
                 conf: float = 0.001, iou: float = 0.7, max_det: int = 300):
        if not source.has_vocabulary:
            raise ConfigError(f"{source.name}: validation needs a detection dataset with a class list "
                              "(grounding/caption data has none)")
        if not source.records:
            raise ConfigError(f"{source.name}: the validation set is empty")
        self.source = source
        self.dataset = EvalDataset(source, image_size)
        self.batch_size, self.workers = batch_size, workers
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.annotations, self.image_ids = _annotations(source)
        self.vocabulary = Vocabulary.build(source.class_texts)

    @torch.no_grad()
    def __call__(self, model, device: torch.device, fixed_vocabulary: bool = False, encode=None,
                 autocast=contextlib.nullcontext) -> dict:
        """Box metrics (AP, AP50, ...) of `model` (in eval mode), plus mask metrics (segm_AP, ...) for a
        segmentation model on annotations with masks; `encode(texts)` -> (T, D) for text models."""
        if fixed_vocabulary:
            text, groups = None, torch.arange(len(self.source.class_texts))[:, None]
        else:
            text, groups = encode(self.vocabulary.texts).to(device), self.vocabulary.groups()
        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.workers, collate_fn=collate)
        predictions = []
        for batch in loader:
            images = batch["images"].to(device).float().div_(255)
            embeds = None if text is None else text[None].expand(len(images), -1, -1)
            with autocast():
                cls_logits, reg_logits, *seg = model(images, embeds)
            detections = postprocess(cls_logits, reg_logits, batch["letterbox"], self.conf, self.iou, self.max_det,
                                     groups=[groups] * len(images), masks=seg)
            for image_id, det in zip(batch["image_ids"], detections):
                predictions += results_to_coco(self.image_ids[image_id], det.boxes.cpu().numpy(),
                                               det.scores.cpu().numpy(), det.labels.cpu().numpy(),
                                               self.category_ids, None if det.masks is None else det.masks.cpu().numpy())
        metrics = evaluate(self.annotations, predictions, predictions_name="validation").metrics
        if model.config.segments and has_masks(self.annotations):
            segm = evaluate(self.annotations, predictions, predictions_name="validation", iou_type="segm").metrics
            metrics.update({f"segm_{key}": value for key, value in segm.items() if key.startswith("AP")})
        return metrics

    @property
    def category_ids(self) -> list[int]:
        return self.source.category_ids or list(range(len(self.source.class_texts)))


class RunScoring:
    """What a training run scores at each validation: the val set (the fine-tuning classes) and, with keep.retain,
    the retained vocabulary; both go to the log, scalars.jsonl and TensorBoard."""

    def __init__(self, config, val_source: DatasetSource, retain_source: DatasetSource | None = None):
        def validator(source):
            return Validator(source, config.data.augment.image_size, config.eval.batch_size, config.data.workers,
                             config.eval.conf, config.eval.iou, config.eval.max_det)
        self.val = validator(val_source)
        self.retain = None if retain_source is None else validator(retain_source)
        self.retain_start: float | None = None  # retained AP of the starting model (epoch 0)

    def __call__(self, model, device, fixed_vocabulary: bool, encode, autocast, epoch: int, step: int, scalars,
                 board) -> dict:
        metrics = self.val(model, device, fixed_vocabulary, encode, autocast)
        retained = None if self.retain is None else self.retain(model, device, False, encode, autocast)
        record = log_record(metrics, retained)
        scalars.write({"step": step, "epoch": epoch, **record})
        board.scalars({f"val/{k}" if k.startswith("coco/") else k: v for k, v in record.items()}, step)
        logger.info("epoch %d validation: AP %.4f  AP50 %.4f  AP75 %.4f", epoch, metrics["AP"], metrics["AP50"],
                    metrics["AP75"])
        if "segm_AP" in metrics:
            logger.info("epoch %d validation: mask AP %.4f  AP50 %.4f  AP75 %.4f", epoch, metrics["segm_AP"],
                        metrics["segm_AP50"], metrics["segm_AP75"])
        if retained is not None:
            if epoch == 0:
                self.retain_start = retained["AP"]
            elif self.retain_start is None:  # a resumed run: the starting score is in the log
                self.retain_start = next((r[RETAIN_NAMES["AP"]] for r in read_scalars(scalars.path)
                                          if r.get("epoch") == 0 and RETAIN_NAMES["AP"] in r), None)
            kept = f" (kept {retained['AP'] / self.retain_start:.0%} of the starting AP)" \
                if epoch and self.retain_start else ""
            logger.info("epoch %d retained vocabulary: AP %.4f  AP50 %.4f  AP75 %.4f%s", epoch, retained["AP"],
                        retained["AP50"], retained["AP75"], kept)
        return metrics


def log_record(metrics: dict, retained: dict | None) -> dict:
    """Validation metrics (and the retained vocabulary's) under the names scalars.jsonl and TensorBoard use."""
    record = {LOG_NAMES[k]: metrics[k] for k in LOG_NAMES if k in metrics}
    if retained is not None:
        record.update({RETAIN_NAMES[k]: retained[k] for k in RETAIN_NAMES})
    return record


def _annotations(source: DatasetSource):
    """The annotation file when there is one (crowd regions and all), else ground truth built from the records.
    Returns the checked annotations and record image id -> evaluation image id."""
    if source.ann_file and source.kind in ("coco", "objects365", "lvis"):
        return load_annotations(source.ann_file), {r.image_id: r.image_id for r in source.records}
    category_ids = source.category_ids or list(range(len(source.class_texts)))
    images, annotations, ids = [], [], {}
    for position, record in enumerate(source.records):
        ids[record.image_id] = position
        images.append({"id": position, "file_name": record.file, "width": record.width, "height": record.height})
        polygons = record.polygons or [[] for _ in record.labels]
        for box, label, polys in zip(record.boxes.tolist(), record.labels.tolist(), polygons):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": position, "category_id": category_ids[label],
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0,
                                **({"segmentation": [p.reshape(-1).tolist() for p in polys]} if polys else {})})
    categories = [{"id": cid, "name": texts[0]} for cid, texts in zip(category_ids, source.class_texts)]
    return load_annotations({"images": images, "annotations": annotations, "categories": categories}, "coco"), ids


__all__ = ["LOG_NAMES", "RETAIN_NAMES", "Validator", "RunScoring", "log_record"]
