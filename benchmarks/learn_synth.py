"""Learning check: a small model trained on CPU on the synthetic shapes reaches mAP50 >= 0.8 on held-out images.

This exercises loss, assigner, augmentation (mosaic, affine, close-mosaic switch), text sampling, EMA,
validation and the deployable export together. It trains the built-in `synth_demo` recipe (the same
`yoloworld train` code path) on a synthetic train split, selects best.pth on the val split, and scores the
deployed model (vocabulary baked in, text tower dropped, fp16 - the file `yoloworld predict --demo` ships) on
a third, independently drawn test set through the public YOLOWorld API.

    python benchmarks/learn_synth.py                                  # ~20-30 min on 2 CPU cores
    python benchmarks/learn_synth.py --deploy yoloworld/assets/demo.pt  # also refresh the shipped demo model

Not a timed test: it prints mAP50, iterations and wall time.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def synth(out: Path, images: int, seed: int, val_fraction: float, **options) -> Path:
    """A synthetic set in `out` (kept when it is there already); `options` are further SynthConfig fields."""
    from yoloworld.data.synth import SynthConfig, synthesize

    if not (out / "coco" / "annotations.json").exists():
        synthesize(out, SynthConfig(images=images, seed=seed, val_fraction=val_fraction, **options), overwrite=True)
    return out / "coco"


def data_overrides(coco: Path) -> list[str]:
    """Recipe overrides that train on a synthetic set's train split and validate on its val split."""
    return [f"data.{split}.0.{key}={coco / name}" for split, ann in (("train", "annotations.json"),
                                                                      ("val", "annotations_val.json"))
            for key, name in (("ann", ann), ("images", "images"), ("classes_file", "class_texts.json"))]


def score_deployed(weights: Path, coco: Path, imgsz: int) -> dict:
    """COCO box AP of a deployed checkpoint on a synthetic set, via YOLOWorld.from_pretrained + predict."""
    from yoloworld.api import YOLOWorld

    return score(YOLOWorld.from_pretrained(weights, imgsz=imgsz), coco)


def predict_set(model, coco: Path, max_det: int = 300, masks: bool = False) -> tuple[dict, list]:
    """A front object's detections (its vocabulary in the set's class order) on every image of a synthetic set, in
    COCO results format (with masks if asked); returns (the set's annotations, the detections)."""
    import json

    from yoloworld.eval import results_to_coco

    annotations = json.loads((coco / "annotations.json").read_text())
    category_ids = [c["id"] for c in annotations["categories"]]
    predictions = []
    for image in annotations["images"]:
        result = model.predict(str(coco / "images" / image["file_name"]), conf=0.001, max_det=max_det)[0]
        predictions += results_to_coco(image["id"], result.xyxy, result.scores, result.class_ids, category_ids,
                                       result.masks if masks else None)
    return annotations, predictions


def score(model, coco: Path) -> dict:
    """COCO box AP of a front object (its vocabulary in the set's class order) on a synthetic set."""
    from yoloworld.eval import evaluate

    return evaluate(*predict_set(model, coco)).metrics


def learning_check_parser(description: str, out: str, fresh: str) -> argparse.ArgumentParser:
    """The flags every learning check shares: work folder, data sizes, what --fresh retrains, recipe overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=out, help="work folder (data, run, outputs)")
    parser.add_argument("--images", type=int, default=300, help="synthetic train+val images (val 20%%)")
    parser.add_argument("--test-images", type=int, default=100, help="independent held-out test images")
    parser.add_argument("--fresh", action="store_true", help=fresh)
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. schedule.epochs=20")
    return parser


def train_on_synth(args, overrides: list[str]):
    """The learning checks' run: synth_demo on a fresh (or, after an interruption, resumed) synthetic train split in
    `args.out`/run; returns (config, summary, wall seconds, resumed?, held-out test set)."""
    from yoloworld.engine.train_config import build_train_config
    from yoloworld.engine.trainer import train

    work = Path(args.out)
    if args.fresh and (work / "run").exists():
        shutil.rmtree(work / "run")
    data = synth(work / "data", args.images, seed=0, val_fraction=0.2)
    test = synth(work / "test", args.test_images, seed=12345, val_fraction=0.0)
    config = build_train_config("synth_demo", [*data_overrides(data), f"out={work / 'run'}", *overrides,
                                               *args.overrides])
    resume = (work / "run" / "last_state.pt").exists()
    started = time.time()
    summary = train(config, resume=resume)
    return config, summary, time.time() - started, resume, test


def main() -> int:
    parser = learning_check_parser(__doc__.split("\n\n")[0], "runs/learn_synth", "delete a previous run in --out first")
    parser.add_argument("--deploy", help="also copy the deployed model here (e.g. yoloworld/assets/demo.pt)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    deployed = Path(args.out) / "demo.pt"
    config, summary, wall, resume, test = train_on_synth(args, [f"checkpoint.deploy={deployed}"])

    imgsz = config.data.augment.image_size
    test_metrics = score_deployed(deployed, test, imgsz)
    test_640 = score_deployed(deployed, test, 640)
    best = summary.get("best") or {}
    size_mb = deployed.stat().st_size / 2**20
    print("\n=== learning check (synthetic shapes, CPU) ===")
    print(f"iterations        {summary['iterations']} ({config.schedule.epochs} epochs x batch "
          f"{config.optim.batch_size}, image size {imgsz})")
    print(f"wall time         {wall / 60:.1f} min{' (resumed run: this session only)' if resume else ''}")
    print(f"val   mAP50       {best.get('coco/bbox_mAP_50', float('nan')):.4f}  (best epoch {summary['best_epoch']},"
          f" mAP {best.get('coco/bbox_mAP', float('nan')):.4f})")
    print(f"test  mAP50       {test_metrics['AP50']:.4f}  (mAP {test_metrics['AP']:.4f}; deployed fp16 model, "
          f"{args.test_images} new images, predicted at {imgsz})")
    print(f"test  mAP50 @640  {test_640['AP50']:.4f}  (mAP {test_640['AP']:.4f})")
    print(f"deployed model    {deployed} ({size_mb:.1f} MB)")
    passed = test_metrics["AP50"] >= 0.8
    print(f"result            {'PASS' if passed else 'FAIL'}: test mAP50 {'>=' if passed else '<'} 0.8")
    if args.deploy:
        Path(args.deploy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(deployed, args.deploy)
        print(f"copied to         {args.deploy}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
