"""What a person checks before training on machine labels: a grid of labelled samples and the boxes per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yoloworld.data.visualize import write_tile_grid
from yoloworld.images import read_image
from yoloworld.results import Results


def review_grid(entries: list[dict], names: list[str], image_of, path: Path, samples: int = 16,
                tile: int = 320) -> Path | None:
    """Up to `samples` entries spread evenly over the run (not only its start), drawn with their labels."""
    if not entries or samples < 1:
        return None
    picks = np.unique(np.linspace(0, len(entries) - 1, min(samples, len(entries))).round().astype(int))
    tiles = [as_results(entries[i], names).plot(read_image(image_of(entries[i]))) for i in picks]
    return write_tile_grid(tiles, path, tile)


def as_results(entry: dict, names: list[str]) -> Results:
    boxes = np.asarray(entry["boxes"], dtype=np.float32).reshape(-1, 6)
    return Results(boxes[:, :4], boxes[:, 5], boxes[:, 4].astype(np.int64), names, (entry["height"], entry["width"]))


def class_summary(entries: list[dict], names: list[str]) -> dict:
    """Boxes, images and mean score per class, and the images left without any box."""
    rows = {name: {"boxes": 0, "images": 0, "mean_score": 0.0} for name in names}
    for entry in entries:
        seen = set()
        for *_, class_id, score in entry["boxes"]:
            row = rows[names[int(class_id)]]
            row["boxes"] += 1
            row["mean_score"] += score
            seen.add(int(class_id))
        for class_id in seen:
            rows[names[class_id]]["images"] += 1
    for row in rows.values():
        row["mean_score"] = round(row["mean_score"] / row["boxes"], 4) if row["boxes"] else None
    empty = sum(1 for entry in entries if not entry["boxes"])
    return {"images": len(entries), "images_without_boxes": empty, "classes": rows}


def summary_table(summary: dict) -> str:
    width = max(12, *(len(name) for name in summary["classes"]))
    lines = [f"  {'class':<{width}} {'boxes':>7} {'images':>7} {'mean score':>11}"]
    for name, row in summary["classes"].items():
        score = f"{row['mean_score']:.2f}" if row["mean_score"] is not None else "-"
        flag = "   <- no box: check its threshold or text" if not row["boxes"] else ""
        lines.append(f"  {name:<{width}} {row['boxes']:>7} {row['images']:>7} {score:>11}{flag}")
    lines.append(f"  {summary['images']} image(s), {summary['images_without_boxes']} without any box")
    return "\n".join(lines)
