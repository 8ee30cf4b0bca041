"""Forgetting experiment (CPU): how much zero-shot vocabulary does fine-tuning keep, per method?

1. Pretrain a small model on synthetic shapes of 12 classes (4 colours x 3 shapes, solid fill).
2. Fine-tune it on 4 of those classes drawn with a new appearance (striped fill); the other 8 never appear.
3. Score every method on held-out sets: AP on the 4 (target, striped) and AP on the 8 (retained, solid).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from learn_synth import data_overrides, learning_check_parser, synth

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PRETRAIN_CLASSES = {"colours": 4, "shapes": 3}


def pretrain(work: Path, images: int, overrides: list[str]) -> Path:
    """The 12-class model every method starts from (kept between invocations)."""
    from yoloworld.engine.train_config import build_train_config
    from yoloworld.engine.trainer import train

    run = work / "pretrain"
    if not (run / "summary.json").exists():
        data = synth(work / "data" / "pretrain", images, seed=0, val_fraction=0.2, **PRETRAIN_CLASSES)
        config = build_train_config("synth_demo", [*data_overrides(data), f"out={run}", "data.num_texts=13",
                                                   "schedule.epochs=18", *overrides])
        train(config, resume=(run / "last_state.pt").exists())
    return run / "best.pth"


def main() -> int:
    parser = learning_check_parser(__doc__.split("\n\n")[0], "runs/forgetting")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pretrain(Path(args.out), 360, args.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
