"""Data: readers for every supported format, the multimodal augmentation pipeline, checks and synthetic data."""

from .augment import AugmentConfig
from .build import build_eval_dataset, build_train_dataset
from .class_texts import load_class_texts, validate_class_texts, write_class_texts
from .eval_dataset import EvalDataset, collate
from .letterbox import LetterboxInfo, letterbox
from .problems import ProblemLog
from .records import DatasetSource, ImageRecord
from .sources import DatasetConfig, load_dataset_yaml, read_source
from .train_dataset import TrainDataset

__all__ = [
    "AugmentConfig", "DatasetConfig", "DatasetSource", "EvalDataset", "ImageRecord", "LetterboxInfo", "ProblemLog",
    "TrainDataset", "build_eval_dataset", "build_train_dataset", "collate", "letterbox", "load_class_texts",
    "load_dataset_yaml", "read_source", "validate_class_texts", "write_class_texts",
]
