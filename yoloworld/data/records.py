"""What every reader produces: one `ImageRecord` per image and a `DatasetSource` per annotation file."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ClassTexts = list[list[str]]  # one list of synonyms per class, e.g. [["aerosol can", "spray can"], ["zebra"]]
Polygons = list[np.ndarray]  # one instance's polygons, each (k, 2) float32 pixel points


@dataclass
class ImageRecord:
    """One training/evaluation image and its boxes.

    `labels` index `class_texts`: for detection data that is the dataset's vocabulary (one list shared by
    every record, not a copy); for grounding and CC3M data it is the image's own phrases.
    """

    file: str
    width: int
    height: int
    boxes: np.ndarray  # (n, 4) xyxy in original pixels: float32 (float64 is kept, for exact conversion)
    labels: np.ndarray  # (n,) int64 into class_texts
    class_texts: ClassTexts
    image_id: int | str = 0
    polygons: list[Polygons] | None = None  # per box, when the dataset has masks and they were asked for
    caption: str | None = None
    # LVIS federated evaluation: categories verified absent / not exhaustively annotated in this image
    neg_category_ids: tuple[int, ...] = ()
    not_exhaustive_category_ids: tuple[int, ...] = ()

    def __post_init__(self):
        boxes = np.asarray(self.boxes)
        self.boxes = (boxes if boxes.dtype == np.float64 else boxes.astype(np.float32)).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.boxes) != len(self.labels):
            raise ValueError(f"{self.file}: {len(self.boxes)} boxes but {len(self.labels)} labels")
        if self.polygons is not None and len(self.polygons) != len(self.boxes):
            raise ValueError(f"{self.file}: {len(self.boxes)} boxes but {len(self.polygons)} polygon sets")


@dataclass
class DatasetSource:
    """The records of one annotation file (or YOLO folder) plus what evaluation needs to score them."""

    name: str
    kind: str  # 'coco' | 'objects365' | 'lvis' | 'grounding' | 'cc3m' | 'yolo'
    records: list[ImageRecord]
    class_texts: ClassTexts  # dataset vocabulary; [] for grounding/cc3m where every image has its own phrases
    category_ids: list[int] = field(default_factory=list)  # label -> category id of the annotation file
    ann_file: str | None = None

    @property
    def has_vocabulary(self) -> bool:
        return bool(self.class_texts)

    def __len__(self) -> int:
        return len(self.records)
