"""`yoloworld train CONFIG [key=value ...]`: pretraining and every fine-tuning mode from a YAML recipe.

    yoloworld train finetune_coco data.train.0.ann=data/coco128/annotations/train.json ...
    yoloworld train --resume runs/train/exp            # continue a run where it stopped
    torchrun --nproc_per_node 8 -m yoloworld train pretrain_v2 model.size=l
"""

from __future__ import annotations

import argparse
import logging
import os
import textwrap
from pathlib import Path

import yaml


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train or fine-tune from a YAML recipe (normal, efficient, prompt, rep)",
        description="Train from a recipe: a built-in name (see --list) or a YAML file; key=value pairs override "
        "any setting (lists by index: data.train.0.ann=FILE). Under torchrun every process joins one DDP run.")
    parser.add_argument("config", nargs="?", help="recipe name or YAML file (optional with --resume RUN_DIR)")
    parser.add_argument("overrides", nargs="*", help="key=value settings, e.g. optim.lr=1e-4 schedule.epochs=40")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR (default: the config's `out`) from its last saved iteration")
    parser.add_argument("--list", action="store_true", help="list the built-in recipes and exit")
    parser.add_argument("--show", action="store_true", help="print the resolved config as YAML and exit")
    return parser


def run(args: argparse.Namespace) -> int:
    from yoloworld.engine.train_config import (
        RECIPES_DIR,
        build_train_config,
        config_to_dict,
    )
    from yoloworld.errors import ConfigError
    from yoloworld.readers import read_yaml

    if args.list:
        for path in sorted(RECIPES_DIR.glob("*.yaml")):
            print(textwrap.fill(_description(path), width=110, initial_indent=f"{path.stem:<24} ",
                                subsequent_indent=" " * 25, break_on_hyphens=False, break_long_words=False))
        return 0
    recipe, overrides = args.config, list(args.overrides)
    if recipe is not None and "=" in recipe and not Path(recipe).exists():
        recipe, overrides = None, [recipe] + overrides  # `--resume DIR key=value` without a recipe
    data = None
    if isinstance(args.resume, str):
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"{run_dir}: not a training run folder (no config.yaml)")
        if recipe is None:
            data = read_yaml(run_dir / "config.yaml", "run config")
        overrides.append(f"out={run_dir}")
    elif recipe is None:
        raise ConfigError("no recipe given: yoloworld train RECIPE [key=value ...] (yoloworld train --list)")
    config = build_train_config(recipe, overrides, data)
    if args.show:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0
    if int(os.environ.get("RANK", "0")) != 0:  # one process speaks for a DDP run
        logging.getLogger().setLevel(logging.WARNING)
    from yoloworld.engine.trainer import train
    from yoloworld.files import check_output

    check_output(config.out, "out=", folder=True)
    train(config, resume=args.resume is not None)
    return 0


def _description(path: Path) -> str:
    """A recipe's opening comment paragraph (it may run over several lines), as one line of text."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or not text:
            break
        lines.append(text)
    return " ".join(lines)
