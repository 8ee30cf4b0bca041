"""Latency of YOLO-World S at 640, batch 1, fixed vocabulary (80 classes), on the CPU threads you allow.

Prints ms/image for the network forward and for end-to-end `predict` (letterbox + network + NMS), fused
(BatchNorm folded) and unfused, NCHW and channels_last, and, when `ultralytics` is installed in the same
environment, the forward of Ultralytics' port of the same model (yolov8s-worldv2) measured in the same run.

    python benchmarks/latency.py --threads 2 --repeats 20
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from yoloworld.api import YOLOWorld
from yoloworld.config import ModelConfig
from yoloworld.models.detector import build_detector
from yoloworld.vocabulary import Vocabulary


def timed(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def ultralytics_forward(size: str, imgsz: int, num_classes: int):
    """Ultralytics' port built from its YAML (no download), its text features fixed like ours."""
    try:
        from ultralytics.nn.tasks import WorldModel
    except ImportError:
        return None
    model = WorldModel(f"yolov8{size}-worldv2.yaml", verbose=False).eval()
    model.txt_feats = torch.nn.functional.normalize(torch.randn(1, num_classes, 512), dim=-1)
    model.model[-1].nc = num_classes
    model = model.fuse(verbose=False)
    x = torch.rand(1, 3, imgsz, imgsz)
    return lambda: model(x)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="s")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--classes", type=int, default=80)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    detector = build_detector(ModelConfig.preset(args.size), with_text=False).eval()
    detector.init_weights(args.classes)
    text = torch.nn.functional.normalize(torch.randn(1, args.classes, 512), dim=-1)
    image = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    x = torch.rand(1, 3, args.imgsz, args.imgsz)

    rows = []
    for fused in (False, True):
        for layout in ("nchw", "channels_last"):
            model = copy.deepcopy(detector)
            if fused:
                model.fuse()
            xin = x
            if layout == "channels_last":
                model = model.to(memory_format=torch.channels_last)
                xin = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                net = timed(lambda: model(xin, text), args.repeats)
            api = YOLOWorld(model, "cpu", args.imgsz)
            api._use_vocabulary(Vocabulary([[f"class {i}"] for i in range(args.classes)], False), text[0])
            e2e = timed(lambda: api.predict(image, conf=0.05), args.repeats)
            rows.append((("fused" if fused else "unfused") + " " + layout, net, e2e))

    print(f"YOLO-World {args.size.upper()} {args.imgsz}x{args.imgsz}, batch 1, {args.threads} threads, "
          f"{args.classes} classes, torch {torch.__version__}")
    baseline = rows[0][1]
    print(f"{'variant':<24}{'network ms':>12}{'end-to-end ms':>16}{'net vs unfused':>16}")
    for name, net, e2e in rows:
        print(f"{name:<24}{net:>12.1f}{e2e:>16.1f}{baseline / net:>15.2f}x")
    theirs = ultralytics_forward(args.size, args.imgsz, args.classes)
    if theirs is None:
        print("ultralytics not installed here: install it in a benchmark venv to compare in the same run")
    else:
        with torch.no_grad():
            their_ms = timed(theirs, args.repeats)
        best = min(net for _, net, _ in rows)
        print(f"{'ultralytics (fused)':<24}{their_ms:>12.1f}{'':>16}")
        print(f"ours (best) vs ultralytics network forward: {their_ms / best:.2f}x faster" if best <= their_ms
              else f"ours (best) vs ultralytics network forward: {best / their_ms:.2f}x slower")


if __name__ == "__main__":
    main()
