"""The end-of-run report (replaces the tutorial's find_best_epoch.py): PNG curves of the losses and of mAP, and
the best epoch with its metrics in `best_epoch.txt` and `summary.json`."""

from __future__ import annotations

import json
from pathlib import Path

from .feedback import SCALARS, read_scalars
from .validate import LOG_NAMES, RETAIN_NAMES

LOSS_KEYS = ("loss", "loss_cls", "loss_bbox", "loss_dfl", "loss_mask", "loss_distill")


def best_record(records: list[dict], metric: str) -> dict | None:
    """The validation record with the highest `metric` (our name, e.g. 'AP'); the earliest wins ties."""
    key = LOG_NAMES[metric]
    scored = [r for r in records if key in r and r["epoch"] >= 1]  # epoch 0: the starting model (keep.retain)
    return max(scored, key=lambda r: (r[key], -r["epoch"])) if scored else None


def write_report(out: Path, metric: str, extra: dict | None = None, compare_to: str | None = None) -> dict:
    """Curves and summary from `scalars.jsonl`; returns the summary dict. `compare_to`: a plain run whose best AP
    this run's is stated as a share of."""
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
        series = [(name, LOG_NAMES[name]) for name in ("AP", "AP50", "AP75")]
        series += [(f"retained {name}", RETAIN_NAMES[name]) for name in ("AP", "AP50")]
        curves.append(_plot(out / "map.png", "validation box AP", "epoch",
                            [(label, [r["epoch"] for r in val if key in r], [r[key] for r in val if key in r])
                             for label, key in series]))
    best = best_record(records, metric)
    summary = {"metric": metric, "best_epoch": None if best is None else best["epoch"],
               "best": None if best is None else {k: v for k, v in best.items() if k.startswith("coco/")},
               "epochs_validated": len(val), "iterations": train[-1]["step"] if train else 0,
               "curves": [str(p) for p in curves], **retention(val, best, compare_to), **(extra or {})}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if best is not None:
        (out / "best_epoch.txt").write_text("".join(f"{k}: {v}\n" for k, v in best.items()), encoding="utf-8")
    return summary


def retention(val: list[dict], best: dict | None, compare_to: str | None = None) -> dict:
    """With keep.retain: retained and target AP of the starting model (epoch 0) and of the best epoch; with
    `compare_to`, the best target AP as a share of that run's."""
    start = next((r for r in val if r["epoch"] == 0 and RETAIN_NAMES["AP"] in r), None)
    if start is None or best is None or RETAIN_NAMES["AP"] not in best:
        return {}
    retained_start, retained_best = start[RETAIN_NAMES["AP"]], best[RETAIN_NAMES["AP"]]
    retain = {"start_AP": retained_start, "best_AP": retained_best,
              "kept": retained_best / retained_start if retained_start > 0 else None,
              "target_start_AP": start[LOG_NAMES["AP"]], "target_best_AP": best[LOG_NAMES["AP"]]}
    if compare_to:
        other = (json.loads((Path(compare_to) / "summary.json").read_text(encoding="utf-8")).get("best") or {})
        reference = other.get(LOG_NAMES["AP"])
        retain.update(compared_to=str(compare_to), reference_AP=reference,
                      of_reference=best[LOG_NAMES["AP"]] / reference if reference else None)
    return {"retain": retain}


def format_summary(summary: dict, out: Path) -> str:
    if summary["best_epoch"] is None:
        return f"no validation was run; weights in {out / 'last.pth'}"
    metrics = "  ".join(f"{name.replace('segm_', 'mask ')} {summary['best'][LOG_NAMES[name]]:.4f}"
                        for name in ("AP", "AP50", "AP75", "segm_AP", "segm_AP50", "segm_AP75")
                        if LOG_NAMES[name] in summary["best"])
    lines = [f"best epoch {summary['best_epoch']} by {summary['metric']}: {metrics}"]
    retain = summary.get("retain")
    if retain:
        kept = "" if retain["kept"] is None else f"kept {retain['kept']:.0%} of the zero-shot AP on the retained " \
                                                   "vocabulary, "
        reached = "" if retain.get("of_reference") is None else \
            f" ({retain['of_reference']:.0%} of {retain['compared_to']}'s {retain['reference_AP']:.4f})"
        lines.append(f"{kept}retained AP {retain['start_AP']:.4f} -> {retain['best_AP']:.4f}; fine-tuning classes "
                     f"AP {retain['target_start_AP']:.4f} -> {retain['target_best_AP']:.4f}{reached}")
    wise = summary.get("wise_ft")
    if wise:
        chosen = wise["chosen"]
        lines.append(f"WiSE-FT alpha {chosen['alpha']:.2f}: retained AP {chosen['retained_AP']:.4f}, fine-tuning "
                     f"classes AP {chosen['target_AP']:.4f}: {wise['weights']}")
    lines.append(f"weights: {out / 'best.pth'} (best), {out / 'last.pth'} (last); curves and summary in {out}")
    return "\n".join(lines)


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
