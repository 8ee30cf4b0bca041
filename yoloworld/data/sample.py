"""The working form of one training image while it moves through the augmentation pipeline."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .records import ClassTexts, ImageRecord, Polygons

ID_STRIDE = 1 << 20  # instance id = record index * ID_STRIDE + box index: tells where every output box came from


@dataclass
class Sample:
    image: np.ndarray  # (H, W, 3) uint8, BGR until the very end
    boxes: np.ndarray  # (n, 4) float32 xyxy pixels
    labels: np.ndarray  # (n,) int64 into class_texts (into `texts` once texts are sampled)
    class_texts: ClassTexts
    polygons: list[Polygons] | None = None
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # box bookkeeping: 'loaded', 'copy_paste' (added) and one key per documented drop reason
    counts: Counter = field(default_factory=Counter)
    texts: list[str] | None = None  # set by text sampling; then `labels` index it

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def keep(self, mask: np.ndarray, reason: str) -> None:
        """Keep the boxes where `mask` is True; the others are counted as dropped for `reason`."""
        dropped = int(len(mask) - mask.sum())
        if dropped:
            self.counts[reason] += dropped
            self.boxes, self.labels, self.ids = self.boxes[mask], self.labels[mask], self.ids[mask]
            if self.polygons is not None:
                self.polygons = [p for p, k in zip(self.polygons, mask) if k]

    def map_points(self, scale_xy, offset_xy) -> None:
        """Boxes and polygons: p -> p * scale + offset (axis-aligned maps only)."""
        sx, sy = scale_xy
        ox, oy = offset_xy
        self.boxes = self.boxes * np.float32([sx, sy, sx, sy]) + np.float32([ox, oy, ox, oy])
        if self.polygons is not None:
            self.polygons = [[p * np.float32([sx, sy]) + np.float32([ox, oy]) for p in polys]
                             for polys in self.polygons]


def sample_from_record(record: ImageRecord, image: np.ndarray, record_index: int, with_masks: bool) -> Sample:
    """A Sample of a decoded image; boxes are clipped to the decoded size (it can differ from the annotation)."""
    height, width = image.shape[:2]
    boxes = np.clip(record.boxes, 0, np.float32([width, height, width, height]))
    polygons = None
    if with_masks:
        polygons = record.polygons if record.polygons is not None else [[] for _ in range(len(boxes))]
    ids = record_index * ID_STRIDE + np.arange(len(boxes), dtype=np.int64)
    return Sample(image=image, boxes=boxes.astype(np.float32), labels=record.labels.copy(),
                  class_texts=record.class_texts, polygons=polygons, ids=ids, counts=Counter(loaded=len(boxes)))
