"""Data: readers for every supported format, the multimodal augmentation pipeline, checks and synthetic data.

Names are imported on first use, so `import yoloworld.data.class_texts` (inference needs it) does not load the
training pipeline.
"""

import importlib

_HOMES = {
    "AugmentConfig": "augment", "build_eval_dataset": "build", "build_train_dataset": "build",
    "load_class_texts": "class_texts", "validate_class_texts": "class_texts", "write_class_texts": "class_texts",
    "EvalDataset": "eval_dataset", "collate": "eval_dataset", "ProblemLog": "problems",
    "DatasetSource": "records", "ImageRecord": "records", "DatasetConfig": "sources",
    "load_dataset_yaml": "sources", "read_source": "sources", "TrainDataset": "train_dataset",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'yoloworld.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"yoloworld.data.{_HOMES[name]}"), name)
