"""Learning check of image prompts: detect held-out synthetic shapes given only reference crops, no class text.

From the built-in demo model (trained on synthetic shapes with texts by `synth_demo`), the `image_prompt_synth`
recipe trains the image-prompt projector with a tiny CLIP-shaped vision tower of seeded random weights (the
`yoloworld train` code path: official freezing, crops per SPEC section 9, logs, EMA, resume). Then, on an
independently drawn test set, the same classes are detected three ways through the public API:

    text prompts         set_classes(["red circle", ...])
    image prompts        set_classes([VisualPrompt([crops of training boxes], name="red circle"), ...])
    image, no projector  the same references, raw CLIP embeddings (what a model without a trained projector does)

    python benchmarks/learn_image_prompts.py            # ~10-25 min on 2 CPU cores
    python benchmarks/learn_image_prompts.py --fresh    # retrain the projector

Prints AP50 of each, the cost of encoding N references, and PASS when image-prompt AP50 >= 0.5 and >= 60% of the
text-prompt AP50.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from learn_synth import learning_check_parser, score, synth

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def references(coco: Path, per_class: int, min_side: float) -> list[list[tuple[str, tuple]]]:
    """Per class (in the set's order), the first `per_class` ground-truth boxes of area >= min_side^2 as
    (image file, box) references: crops of training images, never of the test images."""
    data = json.loads((coco / "annotations.json").read_text())
    files = {image["id"]: str(coco / "images" / image["file_name"]) for image in data["images"]}
    order = [c["id"] for c in data["categories"]]
    chosen: dict[int, list] = {cid: [] for cid in order}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        if w * h >= min_side ** 2 and len(chosen[ann["category_id"]]) < per_class:
            chosen[ann["category_id"]].append((files[ann["image_id"]], (x, y, x + w, y + h)))
    return [chosen[cid] for cid in order]


def train_projector(work: Path, data: Path, base: Path, fresh: bool, overrides: list[str]):
    from yoloworld.engine.train_config import build_train_config
    from yoloworld.engine.trainer import train

    run = work / "run"
    if fresh and run.exists():
        shutil.rmtree(run)
    config = build_train_config("image_prompt_synth", [
        f"model.weights={base}", f"out={run}",
        f"data.train.0.ann={data / 'annotations.json'}", f"data.train.0.images={data / 'images'}",
        f"data.train.0.classes_file={data / 'class_texts.json'}",
        f"data.val.0.ann={data / 'annotations_val.json'}", f"data.val.0.images={data / 'images'}",
        f"data.val.0.classes_file={data / 'class_texts.json'}", *overrides])
    started = time.time()
    summary = train(config, resume=(run / "last_state.pt").exists())
    return config, summary, time.time() - started, run


def encoding_cost(model, prompts) -> tuple[int, float]:
    """(number of references, seconds) to encode the image-prompt vocabulary once (reading + crops + tower)."""
    count = sum(len(p.references) for p in prompts)
    started = time.time()
    model.encode_images(prompts)
    return count, time.time() - started


def main() -> int:
    parser = learning_check_parser(__doc__.split("\n\n")[0], "runs/learn_image_prompts",
                                   "delete a previous run in --out first")
    parser.add_argument("--base", default=str(REPO / "yoloworld" / "assets" / "demo.pt"),
                        help="text-trained synthetic-shapes model to start from (default: the built-in demo.pt)")
    parser.add_argument("--references", type=int, default=16, help="reference crops per class (default 16)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from yoloworld.api import YOLOWorld
    from yoloworld.prompts import VisualPrompt

    work = Path(args.out)
    data = synth(work / "data", args.images, seed=0, val_fraction=0.2)  # the split demo.pt was trained on
    test = synth(work / "test", args.test_images, seed=12345, val_fraction=0.0)
    config, summary, wall, run = train_projector(work, data, Path(args.base), args.fresh, args.overrides)
    imgsz = config.data.augment.image_size

    model = YOLOWorld.from_pretrained(run / "best.pth", imgsz=imgsz)
    class_texts = json.loads((data / "class_texts.json").read_text())
    text = score(model.set_classes(class_texts), test)
    prompts = [VisualPrompt(refs, name=texts[0]) for refs, texts in
               zip(references(data, args.references, config.model.image_prompt_min_side), class_texts)]
    count, seconds = encoding_cost(model, prompts)
    image = score(model.set_classes(prompts), test)
    model.model.image_prompt_encoder.projector = None  # raw CLIP embeddings: no trained projector
    raw = score(model.set_classes(prompts), test)

    ratio = image["AP50"] / max(text["AP50"], 1e-9)
    passed = image["AP50"] >= 0.5 and ratio >= 0.6
    tower = config.model.random_vision
    print("\n=== learning check: image prompts (synthetic shapes, CPU) ===")
    print(f"projector training {summary.get('iterations', '-')} iterations ({config.schedule.epochs} epochs x batch "
          f"{config.optim.batch_size}), {wall / 60:.1f} min; vision tower: random CLIP-shaped, hidden {tower.hidden}, "
          f"{tower.layers} layers, {tower.image_size} px crops")
    print(f"test AP50, text prompts          {text['AP50']:.4f}  (AP {text['AP']:.4f})")
    print(f"test AP50, image prompts         {image['AP50']:.4f}  (AP {image['AP']:.4f}; {args.references} training "
          f"crops per class, no class text; {ratio:.0%} of text)")
    print(f"test AP50, image, no projector   {raw['AP50']:.4f}  (AP {raw['AP']:.4f}; raw embeddings of the random tower)")
    print(f"{f'encoding {count} references':<33}{seconds:.2f} s ({1000 * seconds / count:.1f} ms each: read, crop, tower)")
    print(f"result                           {'PASS' if passed else 'FAIL'}: image AP50 >= 0.5 and >= 60% of text")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
