"""Latency of the deployment paths against the text-conditioned PyTorch model, measured in the same run.

YOLO-World (random weights, official architecture) at 640, batch 1, a fixed vocabulary of 80 classes plus the
padding prompt. Every variant includes box decoding (the exported graph's outputs: sigmoid scores and boxes),
none includes letterbox or NMS. Variants:
  pytorch text              the text-conditioned detector fed precomputed text embeddings (the baseline)
  ... fused / channels_last BatchNorm folded into the convolutions / NHWC memory layout
  pytorch rep conv          reparameterized (texts folded into weights), official conv-mode neck
  pytorch rep linear        reparameterized, per-head linear neck (one grouped conv per block)
  onnxruntime rep           the baked-vocabulary ONNX export (rep conv) in ONNX Runtime
  onnxruntime dynamic       the dynamic-vocabulary ONNX export (text embeddings as an input) in ONNX Runtime

    python benchmarks/latency_rep_onnx.py --threads 2 --repeats 20
`rows = measure(...)` can be imported by another benchmark.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import no_grad, timed  # noqa: E402  (the core latency benchmark's interleaved timer)

from yoloworld.config import ModelConfig  # noqa: E402
from yoloworld.export.graphs import DetectorGraph  # noqa: E402
from yoloworld.export.onnx_export import ExportPlan, export_onnx  # noqa: E402
from yoloworld.models.detector import build_detector  # noqa: E402
from yoloworld.models.reparam import reparameterize  # noqa: E402
from yoloworld.vocabulary import Vocabulary  # noqa: E402

BASELINE = "pytorch text"


def onnx_session(plan: ExportPlan, folder: Path, name: str, threads: int):
    import onnxruntime as ort

    path = folder / f"{name}.onnx"
    export_onnx(plan, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure(size: str = "s", imgsz: int = 640, classes: int = 80, threads: int = 2, repeats: int = 20
            ) -> dict[str, float]:
    """Median ms per image of every variant (see the module docstring)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    detector = build_detector(ModelConfig.preset(size), with_text=False).eval()
    detector.init_weights(classes)
    vocabulary = Vocabulary([[f"class {i}"] for i in range(classes)], padded=True)
    text = F.normalize(torch.randn(len(vocabulary.texts), detector.config.embed_dims), dim=-1)
    x = torch.rand(1, 3, imgsz, imgsz)

    xl = x.contiguous(memory_format=torch.channels_last)
    text_graph = DetectorGraph(detector)
    rep_conv = DetectorGraph(reparameterize(detector, text, "conv"))
    with tempfile.TemporaryDirectory() as tmp:
        baked = onnx_session(ExportPlan(rep_conv, vocabulary, False), Path(tmp), "rep", threads)
        dynamic = onnx_session(ExportPlan(text_graph, None, True), Path(tmp), "dynamic", threads)
    text_fast = fast(detector)
    rep_conv_fused, rep_conv_fast = fast(rep_conv.detector, channels_last=False), fast(rep_conv.detector)
    rep_linear_fast = fast(reparameterize(detector, text, "linear"))
    feeds = {"images": x.numpy()}
    variants = {
        BASELINE: no_grad(lambda: text_graph(x, text)),
        "pytorch text fused channels_last": no_grad(lambda: text_fast(xl, text)),
        "pytorch rep conv fused": no_grad(lambda: rep_conv_fused(x)),
        "pytorch rep conv fused channels_last": no_grad(lambda: rep_conv_fast(xl)),
        "pytorch rep linear fused channels_last": no_grad(lambda: rep_linear_fast(xl)),
        "onnxruntime rep": lambda: baked.run(None, feeds),
        "onnxruntime dynamic": lambda: dynamic.run(None, {**feeds, "text_embeds": text.numpy()}),
    }
    check_agreement(variants)
    return timed(variants, repeats)


def fast(detector, channels_last: bool = True) -> DetectorGraph:
    """A fused copy (BatchNorm folded), in channels_last layout unless told otherwise."""
    model = copy.deepcopy(detector).fuse()
    return DetectorGraph(model.to(memory_format=torch.channels_last) if channels_last else model)


def check_agreement(variants: dict) -> None:
    """Every variant computes the same scores (a benchmark of wrong graphs would be worthless)."""
    reference = np.asarray(variants[BASELINE]()[0])
    for name, fn in variants.items():
        diff = float(np.abs(np.asarray(fn()[0]) - reference).max())
        if diff > 1e-3:
            raise RuntimeError(f"{name}: scores differ from the baseline by {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="s")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import onnxruntime

    rows = measure(args.size, args.imgsz, args.classes, args.threads, args.repeats)
    print(f"YOLO-World {args.size.upper()} {args.imgsz}x{args.imgsz}, batch 1, {args.threads} threads, "
          f"{args.classes} classes + padding, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    print(f"{'variant':<40}{'ms/image':>10}{'speed vs ' + BASELINE:>26}")
    for name, ms in rows.items():
        print(f"{name:<40}{ms:>10.1f}{rows[BASELINE] / ms:>25.2f}x")


if __name__ == "__main__":
    main()
