"""INT8 accuracy: COCO AP50 / AP of a trained model in PyTorch, OpenVINO fp32 and OpenVINO INT8, by `yoloworld val`.

The model is the built-in demo (`yoloworld/assets/demo.pt`, trained on synthetic shapes at 256 px) unless
--weights names another checkpoint. Scored on the synthetic validation split it was selected on (`yoloworld data
synth --images 300 --val-fraction 0.2 --seed 0`, the synth_demo recipe's data) and on an independently drawn test
set; calibration images are a third draw, so INT8 never sees the images it is scored on.

    python benchmarks/int8_accuracy.py                      # ~5 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DEMO = Path(__file__).resolve().parents[1] / "yoloworld" / "assets" / "demo.pt"


def synth(out: Path, images: int, seed: int, val_fraction: float = 0.0) -> Path:
    from yoloworld.data.synth import SynthConfig, synthesize

    if not (out / "coco" / "annotations.json").exists():
        synthesize(out, SynthConfig(images=images, seed=seed, val_fraction=val_fraction), overwrite=True)
    return out / "coco"


def cli(*args) -> None:
    from yoloworld.cli import main

    code = main([str(a) for a in args])
    if code:
        raise SystemExit(f"yoloworld {' '.join(map(str, args))} failed (exit {code})")


def val(weights: Path, ann: Path, images: Path, out: Path) -> dict:
    cli("val", "--weights", weights, "--ann", ann, "--images", images, "--metrics-json", out)
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=str(DEMO), help="a trained checkpoint with its vocabulary (default: demo)")
    parser.add_argument("--out", default="runs/int8_accuracy", help="work folder (data, exports, metrics)")
    parser.add_argument("--calib-images", type=int, default=300)
    parser.add_argument("--test-images", type=int, default=200)
    args = parser.parse_args()
    work = Path(args.out)
    data = synth(work / "synth", 300, seed=0, val_fraction=0.2)
    test = synth(work / "test", args.test_images, seed=12345)
    calib = synth(work / "calib", args.calib_images, seed=99) / "images"
    fp32, int8 = work / "fp32_openvino_model", work / "int8_openvino_model"
    cli("export", "--weights", args.weights, "--format", "openvino", "--out", fp32)
    cli("export", "--weights", args.weights, "--format", "openvino", "--int8", "--calib", calib,
        "--calib-images", args.calib_images, "--out", int8)
    sets = {"val split (seed 0)": (data / "annotations_val.json", data / "images"),
            f"test ({args.test_images} new images)": (test / "annotations.json", test / "images")}
    models = {"pytorch fp32": Path(args.weights), "openvino fp32": fp32, "openvino int8": int8}
    rows = []
    for set_name, (ann, images) in sets.items():
        for model_name, weights in models.items():
            metrics = val(weights, ann, images, work / f"{model_name.replace(' ', '_')}_{len(rows)}.json")
            rows.append((set_name, model_name, metrics["AP50"], metrics["AP"]))
    print(f"\n=== INT8 accuracy: {Path(args.weights).name}, {args.calib_images} calibration images ===")
    print("| set | model | AP50 | AP |\n|---|---|---|---|")
    for set_name, model_name, ap50, ap in rows:
        print(f"| {set_name} | {model_name} | {ap50:.4f} | {ap:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
