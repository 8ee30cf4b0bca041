"""The auto-labelling loop: detect, keep boxes above each class's threshold, record each image as it is done."""

from __future__ import annotations

import logging
import shutil
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from yoloworld.errors import InputError
from yoloworld.files import write_json
from yoloworld.images import read_image

from .ledger import LEDGER_NAME, SETTINGS_NAME, Ledger
from .review import class_summary, review_grid
from .writers import FORMATS, image_target, place_image, write_dataset

logger = logging.getLogger(__name__)
OUR_FILES = (LEDGER_NAME, SETTINGS_NAME, "images", "labels", "annotations.json", "annotations_val.json",
             "class_texts.json", "dataset.yaml", "data.yaml", "summary.json", "review.png")


@dataclass
class LabelSettings:
    format: str = "coco"
    conf: float = 0.25  # labels a person will not check one by one: precision first
    class_conf: dict[str, float] = field(default_factory=dict)  # class name -> its own threshold
    iou: float = 0.7
    max_det: int = 300
    val_fraction: float = 0.1
    drop_empty: bool = False  # leave out images without a box (a missed object would teach "background")

    def __post_init__(self):
        if self.format not in FORMATS:
            raise InputError(f"format {self.format!r}: use one of {', '.join(FORMATS)}")
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"val fraction {self.val_fraction}: must be in [0, 1)")

    def thresholds(self, names: list[str]) -> np.ndarray:
        unknown = sorted(set(self.class_conf) - set(names))
        if unknown:
            raise InputError(f"--class-conf names {', '.join(map(repr, unknown))}, not a class of this run "
                             f"({', '.join(names)})")
        return np.array([self.class_conf.get(name, self.conf) for name in names], dtype=np.float32)


@dataclass
class LabelReport:
    dataset: Path  # the data.yaml / dataset.yaml to train on
    summary: dict
    grid: Path | None
    labelled: int  # images labelled by this run
    resumed: int  # images found done by an earlier run
    unreadable: int


def label_images(model, sources: list[Path], out: Path, settings: LabelSettings, batch: int = 8,
                 review: int = 16, weights: str = "") -> LabelReport:
    """Label `sources` with `model` (its vocabulary set) into `out`; images recorded by an earlier run are skipped.
    Stopped by Ctrl-C, the dataset of the images done so far is still written before the interrupt goes on."""
    names = model.class_names
    thresholds = settings.thresholds(names)
    ledger = Ledger(out)
    done = ledger.start({**asdict(settings), "classes": model.vocabulary.classes, "weights": weights})
    inside_out = out.resolve()
    todo = list(dict.fromkeys(p.resolve() for p in sources))  # a file named twice is labelled once
    todo = [p for p in todo if str(p) not in done and inside_out not in p.parents]  # never our own copies
    used = {Path(entry["name"]).stem for entry in done.values()}
    counts = {"labelled": 0, "unreadable": 0}
    try:
        for start in tqdm(range(0, len(todo), batch), unit="batch", disable=len(todo) <= batch):
            _label_batch(model, todo[start:start + batch], out, settings, thresholds, ledger, used, counts)
    except KeyboardInterrupt:
        if ledger.read():
            finish(out, ledger, settings, model.vocabulary.classes, review)
        logger.warning("stopped: %d image(s) labelled so far are in %s; run the same command again to continue",
                       len(ledger.read()), out)
        raise
    dataset, summary, grid = finish(out, ledger, settings, model.vocabulary.classes, review)
    return LabelReport(dataset, summary, grid, counts["labelled"], len(done), counts["unreadable"])


def _label_batch(model, paths: list[Path], out: Path, settings: LabelSettings, thresholds: np.ndarray,
                 ledger: Ledger, used: set[str], counts: dict) -> None:
    readable, images = [], []
    for path in paths:
        try:
            images.append(read_image(path))
            readable.append(path)
        except InputError as exc:
            logger.warning("skipped: %s", exc)
            counts["unreadable"] += 1
    if not images:
        return
    results = model.predict(images, float(thresholds.min()), settings.iou, settings.max_det)
    for path, result in zip(readable, results):
        keep = result.scores >= thresholds[result.class_ids]
        name = unique_name(path, used)
        split = "val" if zlib.crc32(name.encode()) % 1000 < settings.val_fraction * 1000 else "train"
        boxes = [[*(round(float(v), 2) for v in box), int(c), round(float(s), 4)]
                 for box, c, s in zip(result.xyxy[keep], result.class_ids[keep], result.scores[keep])]
        place_image(path, image_target(out, settings.format, name, split))
        h, w = result.orig_shape
        ledger.append({"source": str(path.resolve()), "name": name, "split": split, "width": w, "height": h,
                       "boxes": boxes})
        counts["labelled"] += 1


def unique_name(path: Path, used: set[str]) -> str:
    """The file's name in the dataset; `a/img.jpg` and `b/img.png` would share `labels/img.txt`, so stems are unique."""
    stem, count = path.stem, 1
    while stem in used:
        count += 1
        stem = f"{path.stem}_{count}"
    used.add(stem)
    return stem + path.suffix.lower()


def finish(out: Path, ledger: Ledger, settings: LabelSettings, classes: list[list[str]], review: int):
    """The dataset, summary and review grid from every image recorded so far (this run's and earlier ones')."""
    entries = list(ledger.read().values())
    kept = [e for e in entries if e["boxes"]] if settings.drop_empty else entries
    if not kept:
        raise InputError(f"{out}: no image to write ({len(entries)} labelled, none with a box)")
    names = [group[0] for group in classes]
    dataset = write_dataset(out, settings.format, kept, classes)
    summary = class_summary(entries, names)
    write_json(out / "summary.json", summary, indent=1)
    grid = review_grid(kept, names, lambda e: image_target(out, settings.format, e["name"], e["split"]),
                       out / "review.png", review)
    return dataset, summary, grid


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a folder holding files that are not an earlier labelling's; with `overwrite`, remove our files."""
    if not out.exists():
        return
    if overwrite:
        for name in OUR_FILES:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    elif not (out / SETTINGS_NAME).exists() and any(out.iterdir()):
        raise InputError(f"--out {out}: holds other files and no earlier labelling to continue; choose a new or "
                         "empty folder")
