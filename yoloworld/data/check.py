"""`yoloworld data check`: read a dataset the way training does, decode its images, summarise what was found."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from yoloworld.images import truncated_jpeg

from .problems import ProblemLog
from .records import DatasetSource, ImageRecord

DECODE_THREADS = 4  # cv2 releases the GIL while decoding


@dataclass
class SourceSummary:
    name: str
    kind: str
    images: int
    boxes: int
    empty_images: int
    boxes_per_class: Counter  # class text (first synonym) -> boxes
    num_classes: int  # vocabulary size, or distinct phrases for grounding/cc3m


@dataclass
class CheckReport:
    sources: list[SourceSummary] = field(default_factory=list)
    problems: ProblemLog = field(default_factory=ProblemLog)
    images_decoded: int = 0

    def lines(self, max_classes: int = 30) -> list[str]:
        out = []
        for s in self.sources:
            out.append(f"{s.name} ({s.kind}): {s.images} images, {s.boxes} boxes, {s.empty_images} images "
                       f"without boxes, {s.num_classes} {'classes' if s.kind not in ('grounding', 'cc3m') else 'phrases'}")
            ranked = s.boxes_per_class.most_common()
            shown = ranked if len(ranked) <= max_classes else ranked[: max_classes // 2] + ranked[-max_classes // 2:]
            width = max((len(text) for text, _ in shown), default=0)
            for i, (text, count) in enumerate(shown):
                if len(shown) < len(ranked) and i == max_classes // 2:
                    out.append(f"  ... {len(ranked) - len(shown)} more")
                out.append(f"  {text:<{width}}  {count}")
            unused = s.num_classes - len(ranked)
            if s.kind not in ("grounding", "cc3m") and unused > 0:
                out.append(f"  {unused} classes have no boxes")
        return out


def summarise(source: DatasetSource) -> SourceSummary:
    per_class: Counter = Counter()
    phrases = set()
    for record in source.records:
        for label in record.labels.tolist():
            per_class[record.class_texts[label][0]] += 1
        if not source.class_texts:
            phrases.update(t[0] for t in record.class_texts)
    return SourceSummary(source.name, source.kind, len(source.records), sum(len(r.boxes) for r in source.records),
                         sum(1 for r in source.records if not len(r.boxes)), per_class,
                         len(source.class_texts) if source.class_texts else len(phrases))


def verify_image(record: ImageRecord) -> tuple[str, str] | None:
    """(problem kind, reason) for an image that training would have to skip or that disagrees with its annotation."""
    if not Path(record.file).is_file():
        return "missing_image", "file not found; image skipped in training"
    if truncated_jpeg(record.file):  # checked before cv2, which would decode it silently
        return "truncated_image", ("truncated JPEG (the file is cut short; the missing part decodes grey): "
                                   "re-download it")
    image = cv2.imread(record.file, cv2.IMREAD_COLOR)
    if image is None:
        return "corrupt_image", "cannot be decoded; image skipped in training"
    height, width = image.shape[:2]
    if (width, height) != (record.width, record.height):
        return "size_mismatch", (f"decodes to {width}x{height} but the annotation says "
                                 f"{record.width}x{record.height}; boxes may be misplaced")
    return None


def verify_images(records: list[ImageRecord], problems: ProblemLog, limit: int | None = None) -> int:
    records = records if limit is None else records[:limit]
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for record, result in zip(records, pool.map(verify_image, records)):
            if result is not None:
                problems.add(result[0], record.file, result[1])
    return len(records)


def check_sources(sources: list[DatasetSource], problems: ProblemLog, decode_limit: int | None = None) -> CheckReport:
    report = CheckReport(problems=problems)
    for source in sources:
        report.sources.append(summarise(source))
        report.images_decoded += verify_images(source.records, problems, decode_limit)
    return report
