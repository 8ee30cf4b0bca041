"""Test-time loading (THE letterbox to 640, first synonym per class, no padding) and batch collation."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from yoloworld.images import load_image
from yoloworld.transforms import PAD_VALUE, letterbox

from .records import DatasetSource
from .text_sampling import first_synonyms

logger = logging.getLogger(__name__)


class EvalDataset(Dataset):
    """Samples: 'image' uint8 (3, S, S) RGB, 'bboxes' (ground truth in input pixels), 'labels', 'texts'
    (first synonyms, unpadded: the dataset vocabulary, or the image's own phrases for grounding data),
    'image_id', 'file' and 'letterbox' (a LetterboxInfo to map predictions back)."""

    def __init__(self, source: DatasetSource, image_size: int = 640):
        self.source = source
        self.image_size = image_size
        self.skipped_images = 0
        self._vocabulary = first_synonyms(source.class_texts) if source.class_texts else None

    def __len__(self) -> int:
        return len(self.source.records)

    def __getitem__(self, index: int) -> dict:
        record = self.source.records[index]
        image = load_image(record.file)
        if image is None:  # scored as an image with no detections instead of crashing the evaluation
            self.skipped_images += 1
            logger.warning("%s: missing or corrupt image; evaluated as a blank image", record.file)
            image = np.full((record.height, record.width, 3), PAD_VALUE, dtype=np.uint8)
        padded, info = letterbox(image, self.image_size, allow_scale_up=False)
        top, _, left, _ = info.pad_tblr
        sx, sy = info.scale_xy
        boxes = record.boxes * np.float32([sx, sy, sx, sy]) + np.float32([left, top, left, top])
        texts = self._vocabulary if self._vocabulary is not None else first_synonyms(record.class_texts)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(padded[:, :, ::-1].transpose(2, 0, 1))),
            "bboxes": torch.from_numpy(boxes.astype(np.float32)),
            "labels": torch.from_numpy(record.labels.copy()),
            "texts": list(texts),
            "image_id": record.image_id,
            "file": record.file,
            "letterbox": info,
        }


def collate(samples: list[dict]) -> dict:
    """Stack images; boxes of the batch as rows [image index, label, x1, y1, x2, y2]; texts per image.

    Evaluation batches also get 'image_ids', 'files' and 'letterbox' (lists, one entry per image).
    """
    rows = []
    for i, sample in enumerate(samples):
        boxes, labels = sample["bboxes"].float().reshape(-1, 4), sample["labels"].float().reshape(-1, 1)
        rows.append(torch.cat([torch.full_like(labels, float(i)), labels, boxes], dim=1))
    batch = {
        "images": torch.stack([s["image"] for s in samples]),
        "bboxes_labels": torch.cat(rows) if rows else torch.zeros(0, 6),
        "texts": [s["texts"] for s in samples],
    }
    if "image_id" in samples[0]:
        batch["image_ids"] = [s["image_id"] for s in samples]
        batch["files"] = [s["file"] for s in samples]
        batch["letterbox"] = [s["letterbox"] for s in samples]
    return batch
