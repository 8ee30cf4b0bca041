"""What a checkpoint tells a later command about how to use it: the one reader (and writer) of `meta.yoloworld`'s
usage fields.

Every file a command writes (a run's last/best/epoch_N.pth, wise_ft.pth, the `checkpoint.deploy` copy,
`model.save(...)`, `reparam` and `convert` outputs) records the input size it was trained at, its vocabulary, its
task, with a text tower that tower's config, and
`yoloworld calibrate`'s per-class thresholds; `val`, `predict`, `export`, `label` and the app read them here.
"""

from __future__ import annotations

from dataclasses import dataclass

from yoloworld.config import ModelConfig
from yoloworld.errors import CheckpointError
from yoloworld.thresholds import ClassThresholds

MAX_STORED_IMGSZ = 4096  # as yoloworld.predictor.MAX_IMGSZ (models/ imports nothing from the front end)
TASKS = ("detect", "segment")


@dataclass(frozen=True)
class CheckpointInfo:
    """The usage record of a checkpoint. `imgsz`: the input size it was trained (or exported) at, None when the
    file does not say (official releases: the weights table knows theirs)."""

    imgsz: int | None
    classes: list | None  # synonym lists, the padding prompt excluded
    padded: bool  # whether the stored embeddings end with the padding prompt's row
    task: str  # "detect" or "segment"
    text_config: dict | None  # the text tower's shape, when the file holds one
    mode: str | None = None  # the training mode of a run's files (full, prompt, rep, image_prompt, ...)
    thresholds: ClassThresholds | None = None  # calibrated per-class score thresholds (`yoloworld calibrate`)
    negatives: list | None = None  # negative prompts saved with the vocabulary (their embeddings follow the classes')

    @classmethod
    def read(cls, stored: dict, config: ModelConfig, source: str) -> "CheckpointInfo":
        """From a checkpoint's `meta.yoloworld` and its architecture; run files written before the size was
        recorded give the training config's image size."""
        imgsz = stored.get("imgsz")
        if imgsz is None:
            imgsz = ((stored.get("train_config") or {}).get("data") or {}).get("augment", {}).get("image_size")
        if imgsz is not None and (isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < 32 or imgsz % 32
                                  or imgsz > MAX_STORED_IMGSZ):
            raise CheckpointError(f"{source}: malformed metadata (input size {imgsz!r} is not a multiple of 32 "
                                  f"between 32 and {MAX_STORED_IMGSZ})")
        task = stored.get("task") or task_of(config)
        if task not in TASKS:
            raise CheckpointError(f"{source}: malformed metadata (task {task!r}, expected one of {', '.join(TASKS)})")
        negatives = stored.get("negatives") or None
        if negatives is not None and not (isinstance(negatives, list) and all(isinstance(n, str) for n in negatives)):
            raise CheckpointError(f"{source}: malformed metadata (negatives must be a list of texts)")
        return cls(imgsz, stored.get("classes") or None, bool(stored.get("padded", False)), task,
                   stored.get("text_config"), stored.get("mode"),
                   ClassThresholds.from_meta(stored.get("thresholds"), source), negatives)


def task_of(config: ModelConfig) -> str:
    return "segment" if config.mask_channels else "detect"


def usage_meta(config: ModelConfig, imgsz: int | None) -> dict:
    """The usage fields `save_checkpoint` writes beside the architecture (vocabulary and text config come from
    their own writers)."""
    meta = {"task": task_of(config)}
    if imgsz is not None:
        meta["imgsz"] = int(imgsz)
    return meta


__all__ = ["CheckpointInfo", "task_of", "usage_meta"]
