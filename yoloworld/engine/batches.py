"""From the data package's datasets to what the model and the loss take, per batch.

Text models: each image's sampled texts -> (B, N, D) embeddings (frozen encoder: cached, so every text is
encoded once per run). Fixed-vocabulary models (prompt / rep): the sampled texts are mapped back to class
indices, so labels point at the model's own columns.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from yoloworld.data.build import build_train_dataset
from yoloworld.data.eval_dataset import collate
from yoloworld.data.problems import ProblemLog
from yoloworld.data.sources import DatasetConfig, load_dataset_yaml, read_source
from yoloworld.data.train_dataset import TrainDataset
from yoloworld.errors import ConfigError, DatasetError
from yoloworld.models.text import TextEmbeddingCache

from .distributed import DistInfo, GlobalBatchSampler
from .train_config import TrainConfig

logger = logging.getLogger(__name__)


def dataset_configs(config: TrainConfig) -> tuple[list[DatasetConfig], list[DatasetConfig]]:
    """(train, val) dataset configs: the lists in `data`, or the dataset YAML `data.dataset` names."""
    train, val = list(config.data.train), list(config.data.val)
    if config.data.dataset:
        splits = load_dataset_yaml(config.data.dataset)
        train = train or splits.get("train", [])
        val = val or splits.get("val", [])
    if not train:
        raise ConfigError("no training data: set data.train (a list of {kind, ann, images, classes_file}) "
                          "or data.dataset=DATASET.yaml")
    keep = [entry for entry in (config.keep.retain, config.keep.mix) if entry is not None]
    reference = config.keep.compare_to
    if reference and not (Path(reference) / "summary.json").is_file():
        raise ConfigError(f"{reference}: keep.compare_to needs a finished training run folder (no summary.json)")
    for entry in train + val + keep:
        for name in ("ann", "images", "classes_file"):
            value = getattr(entry, name)
            if value is not None and not Path(value).exists():
                raise DatasetError(f"{value}: not found (data {name} of a {entry.kind} dataset); check the path "
                                   "(relative paths start from the current folder)")
    return train, val


def build_training_set(config: TrainConfig, train: list[DatasetConfig], num_texts: int) -> TrainDataset:
    """The fine-tuning sets, and keep.mix (other data with its own texts) drawn at keep.mix_ratio per epoch."""
    problems = ProblemLog()
    dataset = build_train_dataset(train, config.data.augment, num_texts=num_texts, seed=config.seed,
                                  max_epochs=config.schedule.epochs, with_masks=config.model.segment,
                                  problems=problems)
    report_problems(problems, "training data")
    if config.keep.mix is None:
        return dataset
    mix_problems = ProblemLog()
    mixed = build_train_dataset(config.keep.mix, with_masks=config.model.segment, problems=mix_problems)
    report_problems(mix_problems, "keep.mix data")
    count = max(1, round(config.keep.mix_ratio * len(dataset)))
    logger.info("keep.mix: %d of the %d images of %s join the %d fine-tuning images every epoch", count,
                len(mixed), mixed.sources[0].name, len(dataset))
    return TrainDataset([*dataset.sources, *mixed.sources], config.data.augment, num_texts=num_texts,
                        seed=config.seed, max_epochs=config.schedule.epochs, with_masks=config.model.segment,
                        per_epoch=[None] * len(dataset.sources) + [count])


def report_problems(problems: ProblemLog, what: str) -> None:
    """What `yoloworld data check` would report, said at the start of training (the run goes on without them)."""
    if not len(problems):
        return
    for line in problems.lines()[:10]:
        logger.warning("warning: %s: %s", what, line)
    logger.warning("warning: %s %s; `yoloworld data check` lists them all", what, problems.summary())


def vocabulary_of(dataset: TrainDataset, val_source=None) -> list[list[str]]:
    """The class texts a fixed-vocabulary model (and the saved checkpoint's metadata) uses."""
    if val_source is not None and val_source.has_vocabulary:
        return val_source.class_texts
    for source in dataset.sources:
        if source.has_vocabulary:
            return source.class_texts
    return []


def read_val_source(val: list[DatasetConfig], with_masks: bool = False):
    """The scored validation set; `with_masks` reads polygons too (mask AP of sets without an annotation file)."""
    if not val:
        return None
    problems = ProblemLog()
    source = read_source(replace(val[0], with_masks=val[0].with_masks or with_masks), problems)
    report_problems(problems, "validation data")
    return source


def train_loader(dataset: TrainDataset, batch_size: int, info: DistInfo, seed: int, epoch: int, start_batch: int,
                 workers: int, pin_memory: bool) -> DataLoader:
    sampler = GlobalBatchSampler(len(dataset), batch_size, info, seed, epoch, start_batch)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate, pin_memory=pin_memory)


class TextBatcher:
    """Per-image text lists -> (B, N, D) embeddings on `device`."""

    def __init__(self, model, device: torch.device):
        self.model = model
        self.device = device
        text_model = model.text_model
        self.frozen = text_model is not None and not any(p.requires_grad for p in text_model.parameters())
        self.cache = TextEmbeddingCache(text_model) if self.frozen else None

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(T, D) embeddings of a flat text list (no gradient through a frozen encoder)."""
        if self.cache is not None:
            return self.cache.encode(list(texts)).to(self.device)
        return self.model.encode_text(list(texts))

    def __call__(self, texts: list[list[str]]) -> torch.Tensor:
        unique = list(dict.fromkeys(t for row in texts for t in row))
        position = {text: i for i, text in enumerate(unique)}
        table = self.encode(unique)
        index = torch.tensor([[position[t] for t in row] for row in texts], device=table.device)
        return table[index]


class ClassIndexLabels:
    """Sampled texts -> class indices, for models whose columns are the dataset's classes."""

    def __init__(self, classes: list[list[str]]):
        self.index: dict[str, int] = {}
        for label, synonyms in enumerate(classes):
            for text in synonyms:
                if self.index.setdefault(text, label) != label:
                    raise DatasetError(f"the text {text!r} names two classes ({self.index[text]} and {label}); "
                                       "a fixed-vocabulary model needs distinct class texts")

    def __call__(self, bboxes_labels: torch.Tensor, texts: list[list[str]]) -> torch.Tensor:
        if not len(bboxes_labels):
            return bboxes_labels
        out = bboxes_labels.clone()
        rows = bboxes_labels[:, 0].long().tolist()
        labels = bboxes_labels[:, 1].long().tolist()
        out[:, 1] = torch.tensor([float(self.index[texts[r][label]]) for r, label in zip(rows, labels)])
        return out


__all__ = ["dataset_configs", "build_training_set", "vocabulary_of", "read_val_source", "train_loader",
           "TextBatcher", "ClassIndexLabels"]
