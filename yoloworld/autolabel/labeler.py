"""The auto-labelling loop: detect, keep boxes above each class's threshold, record each image as it is done."""

from __future__ import annotations

import hashlib
import logging
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from yoloworld.errors import InputError
from yoloworld.files import write_json
from yoloworld.images import read_image
from yoloworld.outputs import MANIFEST_NAME, OutputFolder
from yoloworld.prompts import Embedding, VisualPrompt

from .ledger import LEDGER_NAME, SETTINGS_NAME, Ledger
from .review import class_summary, review_grid
from .writers import FORMATS, dataset_files, image_target, place_image, write_dataset

logger = logging.getLogger(__name__)
DEFAULT_CONF = 0.25  # labels a person will not check one by one: precision first
KIND = "label"  # what the output manifest says wrote these files


@dataclass
class LabelSettings:
    format: str = "coco"
    conf: float | None = None  # None: the model's calibrated thresholds, else DEFAULT_CONF
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

    def thresholds(self, names: list[str], calibrated: list[float] | None = None) -> np.ndarray:
        """Per class: its --class-conf, else --conf, else the model's `calibrated` threshold, else DEFAULT_CONF."""
        unknown = sorted(set(self.class_conf) - set(names))
        if unknown:
            raise InputError(f"--class-conf names {', '.join(map(repr, unknown))}, not a class of this run "
                             f"({', '.join(names)})")
        base = [self.conf] * len(names) if self.conf is not None else calibrated or [DEFAULT_CONF] * len(names)
        return np.array([self.class_conf.get(name, value) for name, value in zip(names, base)], dtype=np.float32)


@dataclass
class LabelReport:
    dataset: Path  # the data.yaml / dataset.yaml to train on
    summary: dict
    grid: Path | None
    labelled: int  # images labelled by this run
    resumed: int  # images found done by an earlier run
    unreadable: int


@dataclass
class LabelRun:
    """What one labelling run writes into and keeps track of."""
    out: Path
    settings: LabelSettings
    ledger: Ledger
    outputs: OutputFolder
    used: set[str] = field(default_factory=set)  # dataset file stems taken
    counts: dict = field(default_factory=lambda: {"labelled": 0, "unreadable": 0})


def label_images(model, sources: list[Path], out: Path, settings: LabelSettings, batch: int = 8,
                 review: int = 16, weights: str = "", detect=None) -> LabelReport:
    """Label `sources` with `model` (its vocabulary set) into `out`; images recorded by an earlier run are skipped.
    Stopped by Ctrl-C, the dataset of the images done so far is still written before the interrupt goes on.
    `detect(paths, batch, conf, iou, max_det)`: yields batches of (path, Results or why it is unreadable) in the
    order of `paths`; default `detect_locally(model)` (`yoloworld.autolabel.distributed`: on Ray Data workers)."""
    thresholds = settings.thresholds(model.class_names, calibrated_thresholds(model, settings))
    outputs = OutputFolder(out)
    adopt_earlier_labelling(out, outputs)
    outputs.claim([out / LEDGER_NAME, out / SETTINGS_NAME], KIND)
    # the image folders are checked before any detection: a link out of --out is refused before work is done
    outputs.check_inside([image_target(out, settings.format, "-", split) for split in ("train", "val")])
    run = LabelRun(out, settings, Ledger(out), outputs)
    done = run.ledger.start({**asdict(settings), "classes": describe_classes(model.vocabulary.classes),
                             "weights": weights})
    inside_out = out.resolve()
    todo = list(dict.fromkeys(p.resolve() for p in sources))  # a file named twice is labelled once
    todo = [p for p in todo if str(p) not in done and inside_out not in p.parents]  # never our own copies
    run.used.update(Path(entry["name"]).stem for entry in done.values())
    classes = model.vocabulary.stored_classes()
    detect = detect or detect_locally(model)
    try:
        for done_batch in detect(todo, batch, float(thresholds.min()), settings.iou, settings.max_det):
            _record_batch(done_batch, run, thresholds)
    except KeyboardInterrupt:
        if run.ledger.read():
            finish(run, classes, review)
        logger.warning("stopped: %d image(s) labelled so far are in %s; run the same command again to continue",
                       len(run.ledger.read()), out)
        raise
    dataset, summary, grid = finish(run, classes, review)
    return LabelReport(dataset, summary, grid, run.counts["labelled"], len(done), run.counts["unreadable"])


def calibrated_thresholds(model, settings: LabelSettings) -> list[float] | None:
    """The model's calibrated per-class thresholds where they apply (no --conf), said once."""
    if settings.conf is not None or model.thresholds is None:
        return None
    logger.info("using the model's %s; --conf sets one threshold for all", model.thresholds.describe(
        model.vocabulary.classes))
    return model.thresholds.for_classes(model.vocabulary.classes)


def describe_classes(classes: list[list]) -> list[list]:
    """The vocabulary as JSON (kept in the settings, compared on a resume): texts as they are, an image prompt by
    its name and references, an embedding by its name and a digest of its values."""
    return [[describe_prompt(prompt) for prompt in group] for group in classes]


def describe_prompt(prompt):
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, VisualPrompt):
        return {"image_prompt": prompt.name,
                "references": [[_describe_source(source), None if box is None else [float(v) for v in box]]
                               for source, box in prompt.references]}
    if isinstance(prompt, Embedding):
        return {"embedding": prompt.name, "sha256": hashlib.sha256(prompt.vector.tobytes()).hexdigest()[:16]}
    raise InputError(f"class {prompt!r}: not a text, an image prompt or an embedding")


def _describe_source(source) -> str:
    if isinstance(source, (str, Path)):
        return str(Path(source).resolve())
    return "image sha256 " + hashlib.sha256(np.ascontiguousarray(np.asarray(source)).tobytes()).hexdigest()[:16]


def detect_locally(model):
    """Detection in this process, `batch` images per forward pass."""
    def detect(paths: list[Path], batch: int, conf: float, iou: float, max_det: int):
        for start in tqdm(range(0, len(paths), batch), unit="batch", disable=len(paths) <= batch):
            yield detect_batch(model, paths[start:start + batch], conf, iou, max_det)

    return detect


def detect_batch(model, paths: list[Path], conf: float, iou: float, max_det: int) -> list[tuple]:
    """(path, Results) per image, (path, the reason) for an unreadable one."""
    readable, images, done = [], [], {}
    for path in paths:
        try:
            images.append(read_image(path))
            readable.append(path)
        except InputError as exc:
            done[path] = str(exc)
    if images:
        done.update(zip(readable, model.predict(images, conf, iou, max_det)))
    return [(path, done[path]) for path in paths]


def _record_batch(detected: list[tuple], run: LabelRun, thresholds: np.ndarray) -> None:
    """Copy each labelled image into the dataset and record its boxes above their class thresholds."""
    for path, why in ((p, r) for p, r in detected if isinstance(r, str)):
        logger.warning("skipped: %s", why)
        run.counts["unreadable"] += 1
    detected = [(path, result) for path, result in detected if not isinstance(result, str)]
    if not detected:
        return
    fmt, fraction = run.settings.format, run.settings.val_fraction
    names = [unique_name(path, run.used) for path, _ in detected]
    splits = ["val" if zlib.crc32(name.encode()) % 1000 < fraction * 1000 else "train" for name in names]
    targets = run.outputs.claim([image_target(run.out, fmt, n, s) for n, s in zip(names, splits)], KIND)
    for (path, result), name, split, target in zip(detected, names, splits, targets):
        keep = result.scores >= thresholds[result.class_ids]
        boxes = [[*(round(float(v), 2) for v in box), int(c), round(float(s), 4)]
                 for box, c, s in zip(result.xyxy[keep], result.class_ids[keep], result.scores[keep])]
        place_image(path, target)
        h, w = result.orig_shape
        run.ledger.append({"source": str(path.resolve()), "name": name, "split": split, "width": w, "height": h,
                           "boxes": boxes})
        run.counts["labelled"] += 1


def unique_name(path: Path, used: set[str]) -> str:
    """The file's name in the dataset; `a/img.jpg` and `b/img.png` would share `labels/img.txt`, so stems are unique."""
    stem, count = path.stem, 1
    while stem in used:
        count += 1
        stem = f"{path.stem}_{count}"
    used.add(stem)
    return stem + path.suffix.lower()


def finish(run: LabelRun, classes: list[list[str]], review: int):
    """The dataset, summary and review grid from every image recorded so far (this run's and earlier ones')."""
    out, settings = run.out, run.settings
    entries = list(run.ledger.read().values())
    kept = [e for e in entries if e["boxes"]] if settings.drop_empty else entries
    if not kept:
        raise InputError(f"{out}: no image to write ({len(entries)} labelled, none with a box)")
    names = [group[0] for group in classes]
    extras = [out / "summary.json"] + ([out / "review.png"] if review > 0 else [])
    run.outputs.claim(dataset_files(out, settings.format, kept) + extras, KIND)
    dataset = write_dataset(out, settings.format, kept, classes)
    summary = class_summary(entries, names)
    write_json(out / "summary.json", summary, indent=1)
    grid = review_grid(kept, names, lambda e: image_target(out, settings.format, e["name"], e["split"]),
                       out / "review.png", review)
    return dataset, summary, grid


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a folder holding files that are not an earlier labelling's; with `overwrite`, remove the files an
    earlier labelling wrote there (its manifest's), and nothing else."""
    if not out.exists():
        return
    if overwrite:
        outputs = OutputFolder(out)
        adopt_earlier_labelling(out, outputs)
        outputs.remove([KIND])
    elif not (out / SETTINGS_NAME).exists() and any(p.name != MANIFEST_NAME for p in out.iterdir()):
        raise InputError(f"--out {out}: holds other files and no earlier labelling to continue; choose a new or "
                         "empty folder")


def adopt_earlier_labelling(out: Path, outputs: OutputFolder) -> None:
    """A folder labelled before output records existed: its ledger names the files that labelling wrote (images,
    labels, dataset files), so they are recorded as `label`'s and a resume or --overwrite handles them as before."""
    ledger = Ledger(out)
    if outputs.key(ledger.settings_path) in outputs.files or not ledger.settings_path.is_file() \
            or not ledger.path.is_file():
        return
    settings = ledger.read_settings()
    if settings.get("format") not in FORMATS:
        return
    fmt, ledger.num_classes = settings["format"], len(settings.get("classes") or []) or None
    entries = list(ledger.read(warn=False).values())  # the run's own read warns about damaged lines
    files = [ledger.path, ledger.settings_path, out / "summary.json", out / "review.png"]
    files += [image_target(out, fmt, e["name"], e["split"]) for e in entries] + dataset_files(out, fmt, entries)
    outputs.adopt(files, KIND)
