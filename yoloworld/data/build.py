"""Datasets from typed configs: what the trainer and the evaluator call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .augment import AugmentConfig
from .eval_dataset import EvalDataset
from .problems import ProblemLog
from .sources import DatasetConfig, read_source
from .train_dataset import TrainDataset


def build_train_dataset(configs: DatasetConfig | Sequence[DatasetConfig], augment: AugmentConfig | None = None,
                        num_texts: int = 80, seed: int = 0, max_epochs: int | None = None,
                        problems: ProblemLog | None = None, with_masks: bool = False,
                        per_epoch: Sequence[int | None] | None = None) -> TrainDataset:
    """Read every source (each keeps its own texts) and wrap them in one TrainDataset; `per_epoch` draws a fixed
    number of images from a source every epoch (None: all of them).

    Polygons are read only when copy-paste or segmentation training (`with_masks`: masks in every sample)
    needs them.
    """
    augment = augment or AugmentConfig()
    configs = [configs] if isinstance(configs, DatasetConfig) else list(configs)
    polygons = with_masks or augment.copy_paste_prob > 0
    sources = [read_source(replace(c, with_masks=c.with_masks or polygons), problems) for c in configs]
    return TrainDataset(sources, augment, num_texts=num_texts, seed=seed, max_epochs=max_epochs, with_masks=with_masks,
                        per_epoch=per_epoch)


def build_eval_dataset(config: DatasetConfig, image_size: int = 640, problems: ProblemLog | None = None) -> EvalDataset:
    return EvalDataset(read_source(config, problems), image_size=image_size)
