"""Throughput of the full pretraining data pipeline vs the training step it has to feed.

Pipeline: mosaic + random affine + rare blur/grey/CLAHE + HSV + flip + text sampling (80 texts) + collate, at
640, through a torch DataLoader with 2 workers, on a synthetic dataset written to a temporary folder.
Training step: forward + backward + YOLO-World loss of a freshly initialised detector (text embeddings
precomputed, as the frozen CLIP tower allows), on the device you choose. The ratio says whether the
pipeline keeps up (> 1) or is the bottleneck (< 1) on this machine.

    python benchmarks/dataloader.py --workers 2 --batches 20
    python benchmarks/dataloader.py --device cuda --train-batch 16
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import torch
from torch.utils.data import DataLoader, RandomSampler

from yoloworld.data import (
    AugmentConfig,
    DatasetConfig,
    TrainDataset,
    collate,
    read_source,
)
from yoloworld.data.synth import SynthConfig, synthesize

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pipeline_rate(dataset: TrainDataset, batch: int, workers: int, batches: int) -> float:
    """Images per second through a DataLoader, after two warm-up batches (worker start-up excluded)."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=(batches + 2) * batch)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate,
                        prefetch_factor=2 if workers else None)
    iterator = iter(loader)
    for _ in range(2):
        next(iterator)
    start = time.perf_counter()
    images = 0
    for _ in range(batches):
        images += next(iterator)["images"].shape[0]
    return images / (time.perf_counter() - start)


def single_sample_ms(dataset: TrainDataset, count: int = 30) -> float:
    dataset[0]
    start = time.perf_counter()
    for i in range(count):
        dataset[i % len(dataset)]
    return (time.perf_counter() - start) / count * 1000


def train_step_rate(batch_data: dict, size: str, device: str, steps: int) -> tuple[float, str] | None:
    """Images per second of forward + backward + loss, or None when the model code is not there yet."""
    try:
        from yoloworld.config import ModelConfig
        from yoloworld.engine.loss import YOLOWorldLoss
        from yoloworld.models.detector import build_detector
    except ImportError as exc:
        print(f"train step: not measured ({exc})")
        return None
    model = build_detector(ModelConfig.preset(size), with_text=False).to(device).train()
    criterion = YOLOWorldLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = batch_data["images"].to(device).float() / 255
    text = torch.nn.functional.normalize(torch.randn(images.shape[0], len(batch_data["texts"][0]), 512,
                                                     device=device), dim=-1)
    targets = batch_data["bboxes_labels"].to(device)

    def step():
        cls_logits, reg_logits = model(images, text)
        losses = criterion(cls_logits, reg_logits, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    step()  # warm-up (allocations, cudnn autotuning)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return images.shape[0] * steps / (time.perf_counter() - start), f"YOLO-World-{size.upper()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="synthetic images to write (320-640 px)")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=20, help="timed batches")
    parser.add_argument("--model", default="s", help="detector size for the training step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-batch", type=int, default=None, help="default: 2 on CPU, --batch on GPU")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--cv2-threads", type=int, default=0, help="cv2 threads per process (mmengine sets 0)")
    args = parser.parse_args()
    cv2.setNumThreads(args.cv2_threads)  # before workers start: DataLoader workers are the parallelism

    with tempfile.TemporaryDirectory() as tmp:
        synthesize(tmp, SynthConfig(images=args.images, seed=0, colours=8, shapes=6))
        root = Path(tmp) / "coco"
        source = read_source(DatasetConfig(kind="coco", ann=str(root / "annotations.json"), images=str(root / "images"),
                                           classes_file=str(root / "class_texts.json")))
        dataset = TrainDataset(source, AugmentConfig(image_size=args.size, affine_scale=0.5), num_texts=80)
        per_sample = single_sample_ms(dataset)
        rate = pipeline_rate(dataset, args.batch, args.workers, args.batches)
        print(f"machine: {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f}), torch {torch.__version__}, "
              f"device for the step: {args.device}")
        print(f"pipeline (mosaic+affine+hsv+flip+text sampling+collate, {args.size}): {per_sample:.1f} ms/image in "
              f"one process; {rate:.1f} images/s with {args.workers} workers, batch {args.batch}")

        train_batch = args.train_batch or (2 if args.device == "cpu" else args.batch)
        batch = collate([dataset[i] for i in range(train_batch)])
        measured = train_step_rate(batch, args.model, args.device, args.train_steps)
    if measured is None:
        print("ratio: not available (no detector to time); only the pipeline rate is measured")
        return
    step_rate, name = measured
    print(f"train step ({name}, forward+backward+loss+AdamW, batch {train_batch}, {args.device}): "
          f"{step_rate:.3g} images/s")
    verdict = "keeps up" if rate >= step_rate else "is the bottleneck"
    print(f"ratio pipeline / train step: {rate / step_rate:.2f} (the pipeline {verdict} on this machine)")


if __name__ == "__main__":
    main()
