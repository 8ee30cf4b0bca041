"""Calibrated per-class thresholds vs the best single threshold, and negative prompts on look-alikes.

Data the project generates (`yoloworld data synth`), the built-in demo model at 256 px:

    calibration  striped shapes (the demo model saw only solid ones: its scores drop unevenly from class to class)
                 --cal-images drawn with one seed: `yoloworld calibrate` picks per-class thresholds (target F1)
                 and the best single threshold (highest mean F1 over the classes) on the same sample
    held out     --test-images striped shapes drawn with another seed: per-class F1 at both
    negatives    red circles among red squares and triangles (drawn, never labelled): precision / recall of
                 "red circle" with and without --negative "red square,red triangle"

The model runs once per set at conf 0.01; a threshold then keeps the detections above it (NMS is per class, so
this is what predict does at that threshold).

    python benchmarks/calibration.py                        # ~3 min on 2 CPU cores
    python benchmarks/calibration.py --repeats 2            # a second calibration / held-out pair
    python benchmarks/calibration.py --weights my.pth --imgsz 640
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
LOW_CONF = 0.01
LOOK_ALIKES = ["red square", "red triangle"]


def draw(out: Path, images: int, seed: int, **options):
    from yoloworld.data.synth import SynthConfig, synthesize
    from yoloworld.eval import load_annotations

    synthesize(out, SynthConfig(images=images, seed=seed, min_side=256, max_side=256, val_fraction=0.0, **options))
    annotations = load_annotations(out / "coco" / "annotations.json", "coco")
    return annotations, [str(out / "coco" / "images" / i["file_name"]) for i in annotations.dataset["images"]]


def detections(model, annotations, paths: list[str], conf: float = LOW_CONF) -> list[dict]:
    """COCO records of the model on the set (category i <-> class i)."""
    from yoloworld.eval import results_to_coco

    category_ids = [c["id"] for c in annotations.categories]
    records = []
    for image, result in zip(annotations.dataset["images"], model.predict(paths, conf=conf, batch_size=8)):
        records += results_to_coco(image["id"], result.xyxy, result.scores, result.class_ids, category_ids)
    return records


def threshold_comparison(model, work: Path, cal_images: int, test_images: int, seed: int) -> None:
    from yoloworld.eval.calibrate import Calibration, Target, calibrate, class_curves

    cal, cal_paths = draw(work / f"cal{seed}", cal_images, seed=seed, texture="striped")
    test, test_paths = draw(work / f"test{seed}", test_images, seed=seed + 1, texture="striped")
    start = time.perf_counter()
    calibration = calibrate(class_curves(cal, detections(model, cal, cal_paths)), model.class_names, Target("f1"),
                            LOW_CONF)
    held_out = Calibration(calibration.names, calibration.thresholds, calibration.fallback,
                           class_curves(test, detections(model, test, test_paths)), calibration.target)
    seconds = time.perf_counter() - start
    print(f"\nper-class thresholds vs one threshold ({cal_images} calibration / {test_images} held-out striped "
          f"images, seeds {seed} / {seed + 1}, {seconds:.0f} s for both passes)")
    print("calibration sample:")
    print(calibration.table())
    print("held out (thresholds from the calibration sample):")
    print(held_out.table())
    own = held_out.scores_at(held_out.applied())
    single = held_out.scores_at([held_out.fallback] * len(held_out.names))
    labelled = [i for i, c in enumerate(held_out.curves) if c.ground_truth]
    worst = min(own[i][2] - single[i][2] for i in labelled)
    print(f"held-out mean F1: per-class {np.mean([own[i][2] for i in labelled]):.3f}, one threshold "
          f"{np.mean([single[i][2] for i in labelled]):.3f}; largest loss on a class {max(0.0, -worst):.3f}")


def negatives_comparison(model, work: Path, images: int) -> None:
    from yoloworld.eval.calibrate import class_curves, prf

    data, paths = draw(work / "look", images, seed=13, only=("red circle",), unlabelled=tuple(LOOK_ALIKES))
    print(f"\nnegative prompts: \"red circle\" among red squares and triangles ({images} images)")
    print(f"{'conf':>5} {'negatives':<26} {'P':>6} {'R':>6} {'false':>6}")
    for conf in (0.01, 0.05, 0.25):
        for negatives in (None, LOOK_ALIKES):
            model.set_classes(["red circle"], negatives=negatives)
            curve = class_curves(data, detections(model, data, paths, conf))[0]
            true, false = curve.counts_above(0.0)
            precision, recall, _ = prf(true, false, curve.ground_truth)
            shown = ",".join(negatives) if negatives else "(none)"
            print(f"{conf:5.2f} {shown:<26} {precision:6.3f} {recall:6.3f} {false:6d}")


def main() -> None:
    import torch

    import yoloworld

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="demo")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--cal-images", type=int, default=60)
    parser.add_argument("--test-images", type=int, default=150)
    parser.add_argument("--look-alike-images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=1, help="calibration / held-out pairs, each newly drawn")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, weights {args.weights} at {args.imgsz} px")
    model = yoloworld.load(args.weights, imgsz=args.imgsz)
    model.warn_demo = False  # synthetic data: what the demo model is for
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            threshold_comparison(model, Path(folder), args.cal_images, args.test_images, seed=11 + 10 * repeat)
        negatives_comparison(model, Path(folder), args.look_alike_images)


if __name__ == "__main__":
    main()
