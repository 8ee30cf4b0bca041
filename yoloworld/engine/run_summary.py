"""The end-of-run report (replaces the tutorial's find_best_epoch.py): PNG curves of the losses and of mAP, and
the best epoch with its metrics in `best_epoch.txt` and `summary.json`."""

from __future__ import annotations

import json
from pathlib import Path

from .feedback import SCALARS, read_scalars
from .validate import LOG_NAMES

LOSS_KEYS = ("loss", "loss_cls", "loss_bbox", "loss_dfl", "loss_mask")


def best_record(records: list[dict], metric: str) -> dict | None:
    """The validation record with the highest `metric` (our name, e.g. 'AP'); the earliest wins ties."""
    key = LOG_NAMES[metric]
    scored = [r for r in records if key in r]
    return max(scored, key=lambda r: (r[key], -r["epoch"])) if scored else None


def write_report(out: Path, metric: str, extra: dict | None = None) -> dict:
    """Curves and summary from `scalars.jsonl`; returns the summary dict."""
    out = Path(out)
    records = read_scalars(out / SCALARS)
    train = [r for r in records if "loss" in r]
    val = [r for r in records if LOG_NAMES["AP"] in r]
    curves = []
    if train:
        curves.append(_plot(out / "losses.png", "training losses", "iteration",
                            [(k, [r["step"] for r in train if k in r], [r[k] for r in train if k in r])
                             for k in LOSS_KEYS]))
    if val:
        curves.append(_plot(out / "map.png", "validation box AP", "epoch",
                            [(name, [r["epoch"] for r in val], [r[LOG_NAMES[name]] for r in val])
                             for name in ("AP", "AP50", "AP75")]))
    best = best_record(records, metric)
    summary = {"metric": metric, "best_epoch": None if best is None else best["epoch"],
               "best": None if best is None else {k: v for k, v in best.items() if k.startswith("coco/")},
               "epochs_validated": len(val), "iterations": train[-1]["step"] if train else 0,
               "curves": [str(p) for p in curves], **(extra or {})}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if best is not None:
        (out / "best_epoch.txt").write_text("".join(f"{k}: {v}\n" for k, v in best.items()), encoding="utf-8")
    return summary


def format_summary(summary: dict, out: Path) -> str:
    if summary["best_epoch"] is None:
        return f"no validation was run; weights in {out / 'last.pth'}"
    metrics = "  ".join(f"{name.replace('segm_', 'mask ')} {summary['best'][LOG_NAMES[name]]:.4f}"
                        for name in ("AP", "AP50", "AP75", "segm_AP", "segm_AP50", "segm_AP75")
                        if LOG_NAMES[name] in summary["best"])
    return (f"best epoch {summary['best_epoch']} by {summary['metric']}: {metrics}\n"
            f"weights: {out / 'best.pth'} (best), {out / 'last.pth'} (last); curves and summary in {out}")


def _plot(path: Path, title: str, xlabel: str, series) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for label, xs, ys in series:
        if xs:
            axis.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None)
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


__all__ = ["best_record", "write_report", "format_summary"]
