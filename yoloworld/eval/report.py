"""Human-facing outputs of an evaluation: the printed table, metrics JSON, per-class CSV and PR-curve PNG."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from yoloworld.eval.summary import MODE_DESCRIPTIONS, Evaluation

logger = logging.getLogger(__name__)

COUNT_KEYS = ("num_images", "num_detections")
LABEL_KEYS = ("mode", "iou_type")


def format_metrics_table(metrics: dict) -> str:
    """A labelled table: which metric it is, then AP figures and recall figures in percent."""
    figures = [key for key in metrics if key not in LABEL_KEYS and key not in COUNT_KEYS]
    precision_keys = [key for key in figures if key.startswith("AP")]
    recall_keys = [key for key in figures if key.startswith("AR")]
    lines = [
        ("mask " if metrics.get("iou_type") == "segm" else "") + MODE_DESCRIPTIONS[metrics["mode"]],
        f"  {metrics['num_images']} images, {metrics['num_detections']} detections scored; values in %, "
        "n/a = no ground truth in that group",
    ]
    for keys in (precision_keys, recall_keys):
        lines.append("  " + "".join(f"{key:>7}" for key in keys))
        lines.append("  " + "".join(f"{_percent(metrics[key]):>7}" for key in keys))
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "n/a" if value < 0 else f"{100 * value:.1f}"


def write_metrics_json(metrics: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def write_reports(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """per_class_ap_<mode>.csv and pr_curve_<mode>.png in out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = evaluation.metrics["mode"]
    csv_path = out_dir / f"per_class_ap_{mode}.csv"
    png_path = out_dir / f"pr_curve_{mode}.png"
    write_per_class_csv(evaluation.per_class, csv_path)
    plot_pr_curves(evaluation, png_path)
    logger.info("wrote %s and %s", csv_path, png_path)
    return [csv_path, png_path]


def write_per_class_csv(rows: list[dict], path: Path) -> None:
    """One row per category; AP columns are -1 for a category with no ground truth."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: f"{value:.6f}" if isinstance(value, float) else value for key, value in row.items()})


def plot_pr_curves(evaluation: Evaluation, path: Path) -> None:
    """Class-mean precision vs recall at IoU .50, .75 and averaged over .50:.95; faint lines per class at .50."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    precision = evaluation.precision[:, :, :, 0, -1]  # all areas, largest detection budget
    with_ground_truth = (precision > -1).all(axis=(0, 1))
    recall = evaluation.recall_thresholds
    figure = Figure(figsize=(6, 5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    iou50 = int(np.flatnonzero(np.isclose(evaluation.iou_thresholds, 0.5))[0])
    iou75 = int(np.flatnonzero(np.isclose(evaluation.iou_thresholds, 0.75))[0])
    if with_ground_truth.any():
        per_class = precision[:, :, with_ground_truth]
        axes.plot(recall, per_class[iou50], color="0.8", linewidth=0.5)
        axes.plot(recall, per_class[iou50].mean(axis=1), linewidth=2, label="IoU .50 (class mean)")
        axes.plot(recall, per_class[iou75].mean(axis=1), linewidth=2, label="IoU .75 (class mean)")
        axes.plot(recall, per_class.mean(axis=(0, 2)), linewidth=2, label="IoU .50:.95 (class mean)")
        axes.legend(loc="lower left")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    axes.set_title(MODE_DESCRIPTIONS[evaluation.metrics["mode"]], fontsize=8)
    axes.grid(alpha=0.3)
    figure.savefig(path)
