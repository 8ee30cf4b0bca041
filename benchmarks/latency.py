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


def timed(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Median ms per call of each function, measured in interleaved rounds so that load changes on a shared
    machine hit every variant alike."""
    return {name: statistics.median(values) for name, values in timed_rounds(fns, repeats, warmup).items()}


def timed_rounds(fns: dict, repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """ms per call of each function in each of `repeats` interleaved rounds (round i of every function ran
    back to back, so per-round ratios cancel slow load changes)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples


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

    networks, end_to_end = {}, {}
    for fused in (False, True):
        for layout in ("nchw", "channels_last"):
            name = ("fused " if fused else "unfused ") + layout
            model = copy.deepcopy(detector)
            if fused:
                model.fuse()
            xin = x
            if layout == "channels_last":
                model = model.to(memory_format=torch.channels_last)
                xin = x.contiguous(memory_format=torch.channels_last)
            networks[name] = no_grad(lambda model=model, xin=xin: model(xin, text))
            api = YOLOWorld(model, "cpu", args.imgsz)
            api._use_vocabulary(Vocabulary([[f"class {i}"] for i in range(args.classes)], False), text[0])
            end_to_end[name] = lambda api=api: api.predict(image, conf=0.05)
    theirs = ultralytics_forward(args.size, args.imgsz, args.classes)
    if theirs is not None:
        networks["ultralytics fused"] = no_grad(theirs)
    net_ms = timed(networks, args.repeats)
    e2e_ms = timed(end_to_end, args.repeats)

    print(f"YOLO-World {args.size.upper()} {args.imgsz}x{args.imgsz}, batch 1, {args.threads} threads, "
          f"{args.classes} classes, torch {torch.__version__}")
    baseline = net_ms["unfused nchw"]
    print(f"{'variant':<24}{'network ms':>12}{'end-to-end ms':>16}{'net vs unfused':>16}")
    for name, ms in net_ms.items():
        e2e = f"{e2e_ms[name]:.1f}" if name in e2e_ms else "-"
        print(f"{name:<24}{ms:>12.1f}{e2e:>16}{baseline / ms:>15.2f}x")
    if theirs is None:
        print("ultralytics is not installed here: install it in a benchmark venv to compare in the same run")
    else:
        best = min(ms for name, ms in net_ms.items() if not name.startswith("ultralytics"))
        print(f"network forward, ours (best variant) vs Ultralytics: {net_ms['ultralytics fused'] / best:.2f}x "
              "(>1 means ours is faster)")


def no_grad(fn):
    def wrapped():
        with torch.no_grad():
            return fn()
    return wrapped

if __name__ == "__main__":
    main()
