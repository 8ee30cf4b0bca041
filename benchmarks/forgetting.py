"""Forgetting experiment (CPU): how much of its vocabulary does a model keep through fine-tuning, per method?

1. Pretrain a small model on synthetic shapes of 12 classes (4 colours x 3 shapes, solid fill).
2. Fine-tune it on 4 of those classes drawn with a new appearance (striped fill), in two scenarios:
     absent      the other 8 never appear in the fine-tuning images;
     unlabelled  they appear in them (solid, as before) but are not annotated, as in most custom datasets.
   Every run scores the 8 on a held-out set as it trains (keep.retain).
3. Score each method on independent test sets: AP on the 4 (target, striped) and AP on the 8 (retained, solid).

    python benchmarks/forgetting.py                         # ~25 min on 2 CPU cores; finished runs are reused
    python benchmarks/forgetting.py --scenario absent       # one scenario
    python benchmarks/forgetting.py --fresh                 # retrain the fine-tuning runs (keeps the pretrained one)

Methods (recipe options of `yoloworld train`, one run each, all from the same pretrained model and schedule):
    plain     fine-tuning as the built-in recipe does it
    mix       keep.mix: the pretraining data mixed in (0.5 image per fine-tuning image per epoch), the official advice
    distill   keep.distill: the starting model's scores for the pretraining vocabulary as soft targets
    l2sp      keep.l2sp: decay toward the starting weights instead of toward 0
    wise-ft   `yoloworld wise-ft` on the plain run: weights mixed with the starting model, alpha chosen on the val sets
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from learn_synth import data_overrides, learning_check_parser, score, synth

os.environ.setdefault("HF_HUB_OFFLINE", "1")
GRID = {"colours": 4, "shapes": 3}  # 12 classes
TARGETS = ("red circle", "green square", "blue triangle", "yellow square")
METHODS = {
    "plain": [],
    "mix": ["keep.mix.kind=coco", "keep.mix.ann={pretrain}/annotations.json", "keep.mix.images={pretrain}/images",
            "keep.mix.classes_file={pretrain}/class_texts.json", "keep.mix_ratio=0.5"],
    "distill": ["keep.distill=1.0", "keep.distill_classes={pretrain}/class_texts.json"],
    "l2sp": ["keep.l2sp=50"],
}


def retained_names() -> tuple[str, ...]:
    from yoloworld.data.synth import SynthConfig

    return tuple(name for name in SynthConfig(**GRID).class_names if name not in TARGETS)


def make_data(work: Path, images: int, test_images: int) -> dict[str, Path]:
    retained = retained_names()
    return {
        "pretrain": synth(work / "pretrain", images, seed=0, val_fraction=0.2, **GRID),
        "absent": synth(work / "finetune", images // 2, seed=1, val_fraction=0.2, only=TARGETS, texture="striped",
                        **GRID),
        "unlabelled": synth(work / "finetune_unlabelled", images // 2, seed=1, val_fraction=0.2, only=TARGETS,
                            unlabelled=retained, texture="striped", **GRID),
        "retain_val": synth(work / "retain_val", test_images // 2, seed=2, val_fraction=0.0, only=retained, **GRID),
        "target_test": synth(work / "target_test", test_images, seed=3, val_fraction=0.0, only=TARGETS,
                             texture="striped", **GRID),
        "retain_test": synth(work / "retain_test", test_images, seed=4, val_fraction=0.0, only=retained, **GRID),
    }


def train_run(run: Path, overrides: list[str]) -> dict:
    """`yoloworld train synth_demo ...` in a child process (unless the run finished before): wall time, peak RSS."""
    if (run / "summary.json").exists() and (run / "cost.json").exists():
        return json.loads((run / "cost.json").read_text())
    if run.exists():
        shutil.rmtree(run)
    started = time.time()
    child = subprocess.Popen([sys.executable, "-m", "yoloworld", "train", "synth_demo", f"out={run}", *overrides])
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"training {run} failed (exit status {status})")
    cost = {"wall_s": round(time.time() - started, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}
    (run / "cost.json").write_text(json.dumps(cost))
    return cost


def finetune_overrides(data: dict[str, Path], scenario: str, start: Path) -> list[str]:
    retain = data["retain_val"]
    return [*data_overrides(data[scenario]), f"model.weights={start}", "data.num_texts=13", "schedule.epochs=12",
            "schedule.warmup_min_iters=20", "data.augment.close_mosaic_epochs=4", "eval.interval=2",
            f"keep.retain.ann={retain / 'annotations.json'}", f"keep.retain.images={retain / 'images'}",
            f"keep.retain.classes_file={retain / 'class_texts.json'}"]


def evaluate(weights: Path, data: dict[str, Path], imgsz: int = 256) -> dict:
    """AP on the target test set (4 classes) and on the retained test set (8 classes), each with its own vocabulary."""
    from yoloworld.api import YOLOWorld

    model = YOLOWorld.from_pretrained(weights, imgsz=imgsz)
    model.set_classes(list(TARGETS))
    target = score(model, data["target_test"])
    model.set_classes(list(retained_names()))
    retained = score(model, data["retain_test"])
    return {"target_AP": target["AP"], "target_AP50": target["AP50"], "retained_AP": retained["AP"],
            "retained_AP50": retained["AP50"]}


def main() -> int:
    parser = learning_check_parser(__doc__.split("\n\n")[0], "runs/forgetting",
                                   "retrain the fine-tuning runs (keeps the pretrained one)")
    parser.add_argument("--scenario", choices=("absent", "unlabelled", "both"), default="both")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = Path(args.out)
    data = make_data(work / "data", args.images, args.test_images)
    pretrain = work / "pretrain"
    pretrain_cost = train_run(pretrain, [*data_overrides(data["pretrain"]), "data.num_texts=13", "schedule.epochs=18",
                                         *args.overrides])
    original = evaluate(pretrain / "best.pth", data)
    print(f"pretrained: {pretrain_cost['wall_s'] / 60:.1f} min")
    for scenario in ("absent", "unlabelled") if args.scenario == "both" else (args.scenario,):
        if args.fresh:
            shutil.rmtree(work / scenario, ignore_errors=True)
        rows, costs = run_scenario(work / scenario, data, scenario, pretrain / "best.pth", args.overrides)
        report({"pretrained (before fine-tuning)": original, **rows}, costs, work / scenario, scenario)
    return 0


def run_scenario(work: Path, data: dict[str, Path], scenario: str, start: Path, overrides: list[str]):
    """Every method fine-tuned from `start` on the scenario's data; returns test scores and costs per method."""
    costs = {}
    for name, extra in METHODS.items():
        extra = [value.format(pretrain=data["pretrain"]) for value in extra]
        costs[name] = train_run(work / name, [*finetune_overrides(data, scenario, start), *extra, *overrides])
    wise, timing = work / "plain" / "wise_ft.pth", work / "plain" / "wise_ft_cost.json"
    if not timing.exists():
        started = time.time()
        subprocess.run([sys.executable, "-m", "yoloworld", "wise-ft", str(work / "plain")], check=True)
        timing.write_text(json.dumps({"wall_s": round(time.time() - started, 1)}))
    costs["wise-ft"] = {"wall_s": costs["plain"]["wall_s"] + json.loads(timing.read_text())["wall_s"],
                        "peak_rss_mb": costs["plain"]["peak_rss_mb"]}  # the plain run, then the alpha grid
    alpha = json.loads(wise.with_suffix(".json").read_text())["chosen"]["alpha"]
    rows = {name: evaluate(work / name / "best.pth", data) for name in METHODS}
    rows[f"wise-ft (alpha {alpha:.1f})"] = evaluate(wise, data)
    return rows, costs


def report(rows: dict, costs: dict, work: Path, scenario: str) -> None:
    original, plain = rows["pretrained (before fine-tuning)"], rows["plain"]
    print(f"\n=== forgetting, scenario {scenario}: fine-tune on 4 striped classes, keep the other 8 "
          f"({'never shown' if scenario == 'absent' else 'shown unlabelled'}) ===")
    print(f"{'method':<32} {'target AP':>10} {'of plain':>9} {'retained AP':>12} {'of original':>12} "
          f"{'time':>7} {'peak RSS':>9}")
    table = {}
    for name, row in rows.items():
        key = name.split(" ")[0]
        cost = costs.get(key, {})
        of_plain = row["target_AP"] / plain["target_AP"]
        kept = row["retained_AP"] / original["retained_AP"]
        table[name] = {**row, "target_of_plain": of_plain, "retained_of_original": kept, **cost}
        time_text = f"{cost['wall_s'] / 60:.1f}m" if cost else "-"
        rss = f"{cost['peak_rss_mb']} MB" if cost else "-"
        print(f"{name:<32} {row['target_AP']:>10.3f} {of_plain:>8.0%} {row['retained_AP']:>12.3f} {kept:>11.0%} "
              f"{time_text:>7} {rss:>9}")
    winners = [name for name, row in table.items() if name not in ("plain", "pretrained (before fine-tuning)")
               and row["retained_of_original"] >= 0.9 and row["target_of_plain"] >= 0.95]
    print(f"target: retained >= 90% of original and target >= 95% of plain: {', '.join(winners) or 'no method'}")
    (work / "results.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    sys.exit(main())
