"""The training dataset: official pretraining / fine-tuning pipeline over one or several mixed sources.

Per sample (mosaic stage): 4 images of the same source -> multimodal mosaic -> copy-paste (masks only) ->
random affine (border -S/2) -> mixup with a second such sample -> rare blur/grey/CLAHE -> HSV -> flip ->
text sampling. Last `close_mosaic_epochs`: letterbox -> random affine (border 0) -> same tail.
Segmentation training: polygons move with the pixels through every step and are rasterised at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from yoloworld.errors import DatasetError
from yoloworld.images import load_image

from .augment import AugmentConfig
from .geometry import horizontal_flip, letterbox_sample, random_affine
from .masks import instance_masks
from .mixing import copy_paste, mixup, mosaic
from .photometric import photometric
from .records import DatasetSource
from .sample import Sample, sample_from_record
from .text_sampling import sample_texts

logger = logging.getLogger(__name__)
MAX_LOAD_TRIES = 100


class TrainDataset(Dataset):
    """Samples: {'image': uint8 (3, S, S) RGB, 'bboxes': float32 (n, 4) xyxy, 'labels': int64 (n,) into 'texts',
    'texts': list of `num_texts` strings ('' padded)}; with `with_masks`, also 'masks': uint8 (n, S/4, S/4).

    Randomness comes from (seed, epoch, index), so samples do not depend on worker count or order.
    Note: with `persistent_workers=True` a later `set_epoch` does not reach the workers' copies. As mmengine
    does, call `cv2.setNumThreads(0)` in the main process before starting workers: cv2's thread pool in every
    worker oversubscribes the cores (and must not be reconfigured inside a forked worker: it can deadlock).
    """

    def __init__(self, sources: DatasetSource | Sequence[DatasetSource], augment: AugmentConfig | None = None,
                 num_texts: int = 80, seed: int = 0, max_epochs: int | None = None,
                 num_negatives: tuple[int, int] | None = None, with_masks: bool = False,
                 per_epoch: Sequence[int | None] | None = None):
        sources = [sources] if isinstance(sources, DatasetSource) else list(sources)
        per_epoch = list(per_epoch) if per_epoch is not None else [None] * len(sources)
        if len(per_epoch) != len(sources) or any(n is not None and n < 1 for n in per_epoch):
            raise DatasetError("per_epoch: one count >= 1 (or None: every image) per source")
        kept = [i for i, s in enumerate(sources) if len(s.records)]
        self.sources = [sources[i] for i in kept]
        if not self.sources:
            raise DatasetError("the training set is empty: no source has any image")
        # images drawn per epoch from each source: all of them, or a fresh random subset of a fixed size
        self.per_epoch = [per_epoch[i] for i in kept]
        self.augment = augment or AugmentConfig()
        self.num_texts = num_texts
        self.num_negatives = num_negatives
        self.seed = seed
        self.epoch = 0
        self.max_epochs = max_epochs
        self.use_mosaic = self.augment.mosaic_prob > 0
        self.emit_masks = with_masks  # instance masks in every sample (segmentation training)
        self.with_masks = with_masks or self.augment.copy_paste_prob > 0  # polygons carried through the pipeline
        self.offsets = np.cumsum([0] + [len(s.records) for s in self.sources])  # into the records of all sources
        self.epoch_offsets = np.cumsum([0] + [n or len(s.records) for n, s in zip(self.per_epoch, self.sources)])
        self.skipped_images = 0
        self._unreadable: set[int] = set()
        self._orders: dict[tuple[int, int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.epoch_offsets[-1])

    def record_index(self, index: int) -> int:
        """Epoch position -> index into the records of all sources. A subsampled source walks a permutation of its
        images drawn from (seed, epoch): every image once before any repeats, a different subset each epoch."""
        source = int(np.searchsorted(self.epoch_offsets, index, side="right") - 1)
        local = int(index - self.epoch_offsets[source])
        if self.per_epoch[source] is None:
            return int(self.offsets[source] + local)
        count = len(self.sources[source].records)
        key = (self.epoch, source, local // count)
        if key not in self._orders:
            if len(self._orders) > 8:
                self._orders.clear()
            self._orders[key] = np.random.default_rng([self.seed, self.epoch, source, key[2], 7]).permutation(count)
        return int(self.offsets[source] + self._orders[key][local % count])

    def set_epoch(self, epoch: int, max_epochs: int | None = None) -> None:
        """Mosaic is switched off for the last `close_mosaic_epochs` epochs (when the total is known)."""
        self.epoch = epoch
        self.max_epochs = max_epochs if max_epochs is not None else self.max_epochs
        if self.max_epochs is not None:
            self.use_mosaic = self.augment.mosaic_prob > 0 and \
                epoch < self.max_epochs - self.augment.close_mosaic_epochs

    def __getitem__(self, index: int) -> dict:
        return to_training_output(self.augmented(index), self.emit_masks)

    def augmented(self, index: int) -> Sample:
        """The augmented Sample (before RGB/tensor conversion), with box provenance in `ids` and `counts`."""
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        config = self.augment
        mosaic_stage = self.use_mosaic and rng.random() < config.mosaic_prob
        record = self.record_index(index)
        sample = self._geometric(record, mosaic_stage, rng)
        if mosaic_stage and config.mixup_prob > 0 and rng.random() < config.mixup_prob:
            sample = mixup(sample, self._geometric(self._partner(record, rng), True, rng), config, rng)
        sample.image = photometric(sample.image, config, rng)
        if rng.random() < config.flip_prob:
            sample = horizontal_flip(sample)
        return sample_texts(sample, self.num_texts, rng, pad=True, num_negatives=self.num_negatives)

    def _geometric(self, index: int, mosaic_stage: bool, rng: np.random.Generator) -> Sample:
        config = self.augment
        if not mosaic_stage:
            sample = letterbox_sample(self._load(index, rng), config.image_size, allow_scale_up=True)
            return random_affine(sample, config, 0, rng)
        parts = [self._load(index, rng)] + [self._load(self._partner(index, rng), rng) for _ in range(3)]
        sample = mosaic(parts, config, rng)
        if self.with_masks:
            sample = copy_paste(sample, config, rng)
        return random_affine(sample, config, config.mosaic_border, rng)

    def _locate(self, index: int) -> tuple[int, int]:
        """Record index -> (source, image of that source)."""
        source = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return source, int(index - self.offsets[source])

    def _partner(self, index: int, rng: np.random.Generator) -> int:
        """A random image of the same source: mosaic and mixup never mix datasets (as the official wrappers)."""
        source, _ = self._locate(index)
        return int(self.offsets[source] + rng.integers(len(self.sources[source].records)))

    def _load(self, index: int, rng: np.random.Generator) -> Sample:
        """Decode the image at `index`; an unreadable one is counted, logged once and replaced by another."""
        for _ in range(MAX_LOAD_TRIES):
            source, local = self._locate(index)
            record = self.sources[source].records[local]
            if index not in self._unreadable:
                image = load_image(record.file)
                if image is not None:
                    return sample_from_record(record, image, index, self.with_masks)
                self._unreadable.add(index)
                self.skipped_images += 1
                logger.warning("%s: missing or corrupt image; skipped, another image used instead "
                               "(%d skipped so far in this worker)", record.file, self.skipped_images)
            index = self._partner(index, rng)
        raise DatasetError(f"{self.sources[source].name}: no readable image after {MAX_LOAD_TRIES} tries; "
                           "check the image folder (yoloworld data check)")


def to_training_output(sample: Sample, with_masks: bool = False) -> dict:
    """BGR numpy sample -> RGB uint8 CHW tensor + float32 boxes + int64 labels + texts (+ instance masks at 1/4)."""
    image = np.ascontiguousarray(sample.image[:, :, ::-1].transpose(2, 0, 1))
    output = {
        "image": torch.from_numpy(image),
        "bboxes": torch.from_numpy(np.ascontiguousarray(sample.boxes, dtype=np.float32).reshape(-1, 4)),
        "labels": torch.from_numpy(np.ascontiguousarray(sample.labels, dtype=np.int64)),
        "texts": list(sample.texts or []),
    }
    if with_masks:
        output["masks"] = torch.from_numpy(instance_masks(sample.polygons or [], sample.height, sample.width))
    return output
