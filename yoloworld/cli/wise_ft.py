"""`yoloworld wise-ft`: weight-space ensemble of a fine-tuned run with its starting model (WiSE-FT), alpha chosen on
the run's val set (fine-tuning classes) and its retained vocabulary (keep.retain)."""

from __future__ import annotations

import argparse
from pathlib import Path

from yoloworld.cli.common import probability
from yoloworld.devices import DEVICE_HELP
from yoloworld.errors import ConfigError, InputError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "wise-ft", help="mix a fine-tuned run's weights with its starting model to win back zero-shot vocabulary",
        description="WiSE-FT (Wortsman et al., CVPR 2022): theta = (1 - alpha) start + alpha fine-tuned. Every alpha of "
        "the grid is scored on the run's val set and on its retained vocabulary (keep.retain, or give it as "
        "keep.retain.ann=... keep.retain.images=... keep.retain.classes_file=...); the alpha with the most retained AP "
        "whose target AP stays >= --min-target x the fine-tuned model's is written, with the run's vocabulary.")
    parser.add_argument("run", help="training run folder (its config.yaml names the starting weights and the sets)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. keep.retain.ann=held_out.json")
    parser.add_argument("--weights", help="the fine-tuned checkpoint (default: RUN/best.pth, else RUN/last.pth)")
    parser.add_argument("--alphas", type=alpha_list, default=None, help="comma-separated grid (default 0,0.1,...,1)")
    parser.add_argument("--min-target", type=probability, default=None,
                        help="keep target AP >= this x the fine-tuned model's (default: the run's keep.wise_min_target)")
    parser.add_argument("--out", help="output checkpoint (default RUN/wise_ft.pth; the table goes beside it as .json)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP + " (default auto)")
    return parser


def alpha_list(text: str) -> list[float]:
    """'0,0.5,1' -> [0.0, 0.5, 1.0], each checked as a number in [0, 1]."""
    values = [probability(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers in [0, 1] separated by commas")
    return values


def run(args: argparse.Namespace) -> int:
    from yoloworld.devices import resolve_device
    from yoloworld.engine.batches import dataset_configs, read_val_source
    from yoloworld.engine.train_config import build_train_config
    from yoloworld.engine.validate import RunScoring
    from yoloworld.engine.wise_ft import ALPHAS, wise_ft
    from yoloworld.files import check_output
    from yoloworld.outputs import claim_files
    from yoloworld.readers import read_yaml

    folder = Path(args.run)
    if not (folder / "config.yaml").is_file():
        raise InputError(f"{folder}: not a training run folder (no config.yaml)")
    config = build_train_config(None, args.overrides, read_yaml(folder / "config.yaml", "run config"))
    if not config.keep.retain:
        raise ConfigError(f"{folder}: the run has no retained vocabulary to choose alpha on: add keep.retain.ann=FILE "
                          "keep.retain.images=DIR keep.retain.classes_file=FILE")
    if not config.model.weights:
        raise ConfigError(f"{folder}: the run started from random weights: WiSE-FT needs a starting model")
    tuned = Path(args.weights) if args.weights else next(
        (folder / n for n in ("best.pth", "last.pth") if (folder / n).exists()), folder / "best.pth")
    if not tuned.is_file():
        raise InputError(f"{tuned}: no such checkpoint (the run has not saved weights yet)")
    out = Path(args.out) if args.out else folder / "wise_ft.pth"
    check_output(out, "--out")
    if args.out:  # the default, RUN/wise_ft.pth, is the run's own (train writes it too with keep.wise_ft)
        claim_files([out, out.with_suffix(".json")], "wise-ft", "--out")
    _, val = dataset_configs(config)
    if not val:
        raise ConfigError(f"{folder}: the run has no val set (data.val) to score the fine-tuning classes on")
    scoring = RunScoring(config, read_val_source(val), read_val_source([config.keep.retain]))
    min_target = config.keep.wise_min_target if args.min_target is None else args.min_target
    result = wise_ft(config.model.weights, tuned, scoring, out, resolve_device(args.device), args.alphas or ALPHAS,
                     min_target)
    print(f"{'alpha':>6} {'target AP':>10} {'retained AP':>12}")
    for row in result["grid"]:
        print(f"{row['alpha']:>6.2f} {row['target_AP']:>10.4f} {row['retained_AP']:>12.4f}")
    chosen = result["chosen"]
    print(f"chose alpha {chosen['alpha']:.2f} (target AP >= {min_target:g} x alpha 1's, most retained AP): {out}")
    return 0
