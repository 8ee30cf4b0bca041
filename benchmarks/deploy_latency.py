"""Every deployment path side by side in one run, against ONNX Runtime fp32 and against the CPU's fp32 floor.

YOLO-World (random weights, official architecture; S by default) at 640, batch 1, a fixed vocabulary of 80 classes
plus the padding prompt, on `--threads` CPU threads. Each variant runs the network and box decoding (what an
exported graph outputs: sigmoid scores and boxes), not the letterbox or NMS:

  pytorch text / rep        eager PyTorch, BatchNorm fused, channels_last (its fastest layout on CPU here): the
                            text-conditioned model, and the reparameterized one (texts folded into the weights)
  onnxruntime fp32          the baked-vocabulary ONNX export (the reference of the ratio column); `dynamic vocab`
                            takes text embeddings as an input
  openvino fp32             the same graphs converted to OpenVINO IR
  onnxruntime int8 (QDQ)    ONNX Runtime static quantization, per-channel weights (the INT8 path not exported:
                            measured here to choose the runtime `yoloworld export --int8` uses)
  openvino int8             NNCF post-training quantization, as `yoloworld export --format openvino --int8`
  ... rect 16:9             a 16:9 image letterboxed to 640x384 (`--rect`) by the --dynamic-shape export

The fp32 floor is the variant's FLOPs (counted by torch) divided by the GFLOP/s of a large fp32 matmul on the same
threads, measured as one more variant of the same rounds. Rounds are interleaved: round i of every variant runs
back to back, ratios are taken within a round and their median is printed, so load changes on a shared machine
hit every variant alike.

    python benchmarks/deploy_latency.py --threads 2 --repeats 10
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import no_grad, timed_rounds  # noqa: E402  (the core latency benchmark's interleaved timer)

from yoloworld.config import ModelConfig  # noqa: E402
from yoloworld.export.graphs import DetectorGraph  # noqa: E402
from yoloworld.export.onnx_export import ExportPlan, export_onnx  # noqa: E402
from yoloworld.export.openvino_export import convert_onnx_export  # noqa: E402
from yoloworld.export.openvino_runtime import CompiledGraph  # noqa: E402
from yoloworld.export.quantize import calibration_images  # noqa: E402
from yoloworld.models.detector import build_detector  # noqa: E402
from yoloworld.models.reparam import reparameterize  # noqa: E402
from yoloworld.transforms import letterbox_batch  # noqa: E402
from yoloworld.vocabulary import Vocabulary  # noqa: E402

REFERENCE = "onnxruntime fp32"
MATMUL_N = 2048
# the floor's GEMM, in both libraries; the faster of the two in each round sets the rate (the lower floor)
MATMULS = ("fp32 matmul torch", "fp32 matmul onnxruntime")
SIXTEEN_NINE = (720, 1280)  # the rect variants' image: letterboxed with --rect, 640 -> a 384x640 input


def rect_hw(imgsz: int) -> tuple[int, int]:
    """The network input of a 16:9 image in rect mode, from the prediction letterbox itself."""
    return letterbox_batch([np.zeros((*SIXTEEN_NINE, 3), np.uint8)], imgsz, rect=True)[0].shape[2:]


def fused(detector, channels_last: bool = True) -> DetectorGraph:
    model = copy.deepcopy(detector).fuse()
    return DetectorGraph(model.to(memory_format=torch.channels_last) if channels_last else model)


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def write_calibration(folder: Path, count: int, size: int) -> list[Path]:
    """Synthetic shapes images (any images serve a latency measurement; INT8 accuracy is checked with val)."""
    from yoloworld.data.synth import SynthConfig, draw_image

    rng, config = np.random.default_rng(0), SynthConfig(min_side=size // 2, max_side=size)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"calib_{i}.png"), draw_image(rng, config)[0])
    return calibration_images(folder, count)


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_int8(fp32: Path, out: Path, images: list[Path], imgsz: int) -> Path:
    """ONNX Runtime static QDQ quantization of the network (decoding left fp32, as the OpenVINO path)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(letterbox_batch([cv2.imread(str(p))], imgsz)[0] for p in images)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    prepared = out.with_name(f"{out.stem}.prepared.onnx")
    quant_pre_process(str(fp32), str(prepared))  # shape inference + graph optimisation, as ORT recommends
    outside = [n.name for n in onnx.load(str(prepared)).graph.node if not n.name.startswith("/detector/")]
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=outside)
    return out


def matmul_graph(folder: Path, n: int) -> Path:
    """One fp32 (n, n) x (n, n) MatMul as an ONNX graph, so ONNX Runtime's GEMM rate is measured too."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "ab"]
    output = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(folder / "matmul.onnx"))
    return folder / "matmul.onnx"


def exported_runs(rep: DetectorGraph, text_graph: DetectorGraph, vocabulary, text, folder: Path, args) -> dict:
    """name -> (call, input (h, w)) for every exported variant."""
    calib = write_calibration(folder / "calib", args.calib_images, args.imgsz)
    paths = {}
    for name, plan, shape in (("static", ExportPlan(rep, vocabulary, False), False),
                              ("rect", ExportPlan(rep, vocabulary, False), True),
                              ("dynamic", ExportPlan(text_graph, None, True), False)):
        paths[name] = export_onnx(plan, folder / f"{name}.onnx", args.imgsz, dynamic_shape=shape)[0]
        convert_onnx_export(paths[name], folder / f"{name}_openvino_model")
    for name in ("static", "rect"):
        convert_onnx_export(paths[name], folder / f"{name}_int8_openvino_model", calib)
    qdq = ort_int8(paths["static"], folder / "static_qdq.onnx", calib, args.imgsz)

    def ort(path: Path, feeds: dict):
        session = ort_session(path, args.threads)
        return lambda: session.run(None, feeds)

    def ov(folder_name: str, feeds: dict):
        graph = CompiledGraph(next((folder / folder_name).glob("*.xml")), args.threads)
        return lambda: graph(feeds)

    square = {"images": np.random.default_rng(0).random((1, 3, args.imgsz, args.imgsz), dtype=np.float32)}
    hw, rect = (args.imgsz, args.imgsz), rect_hw(args.imgsz)
    rect_feeds = {"images": square["images"][:, :, : rect[0], : rect[1]].copy()}
    dynamic = {**square, "text_embeds": text.numpy()}
    return {
        REFERENCE: (ort(paths["static"], square), hw),
        "onnxruntime fp32 dynamic vocab": (ort(paths["dynamic"], dynamic), hw),
        "openvino fp32": (ov("static_openvino_model", square), hw),
        "openvino fp32 dynamic vocab": (ov("dynamic_openvino_model", dynamic), hw),
        "onnxruntime int8 (QDQ)": (ort(qdq, square), hw),
        "openvino int8": (ov("static_int8_openvino_model", square), hw),
        "onnxruntime fp32 rect 16:9": (ort(paths["rect"], rect_feeds), rect),
        "openvino fp32 rect 16:9": (ov("rect_openvino_model", rect_feeds), rect),
        "openvino int8 rect 16:9": (ov("rect_int8_openvino_model", rect_feeds), rect),
    }


def variants(args, folder: Path) -> tuple[dict, dict]:
    """name -> call, and name -> counted fp32 FLOPs of one call."""
    torch.manual_seed(0)
    detector = build_detector(ModelConfig.preset(args.size), with_text=False).eval()
    detector.init_weights(args.classes)
    vocabulary = Vocabulary([[f"class {i}"] for i in range(args.classes)], padded=True)
    text = F.normalize(torch.randn(len(vocabulary.texts), detector.config.embed_dims), dim=-1)
    rep = DetectorGraph(reparameterize(detector, text, "conv"))
    text_fast, rep_fast = fused(detector), fused(rep.detector)
    x = torch.rand(1, 3, args.imgsz, args.imgsz).contiguous(memory_format=torch.channels_last)
    shapes = ((args.imgsz, args.imgsz), rect_hw(args.imgsz))
    rep_flops = {hw: count_flops(lambda hw=hw: rep_fast(torch.rand(1, 3, *hw))) for hw in shapes}
    text_flops = count_flops(lambda: text_fast(x, text))
    a, b = torch.rand(MATMUL_N, MATMUL_N), torch.rand(MATMUL_N, MATMUL_N)
    gemm = ort_session(matmul_graph(folder, MATMUL_N), args.threads)
    calls = {MATMULS[0]: lambda: torch.mm(a, b), MATMULS[1]: lambda: gemm.run(None, {"a": a.numpy(), "b": b.numpy()}),
             "pytorch text fused channels_last": no_grad(lambda: text_fast(x, text)),
             "pytorch rep fused channels_last": no_grad(lambda: rep_fast(x))}
    flops = {**dict.fromkeys(MATMULS, 2.0 * MATMUL_N**3), "pytorch text fused channels_last": text_flops,
             "pytorch rep fused channels_last": rep_flops[(args.imgsz,) * 2]}
    for name, (call, hw) in exported_runs(rep, DetectorGraph(detector), vocabulary, text, folder, args).items():
        calls[name] = call
        flops[name] = text_flops if "dynamic vocab" in name else rep_flops[hw]
    return calls, flops


def gemm_rates(samples: dict, flops: dict) -> list[float]:
    """FLOP per ms of the faster fp32 matmul, round by round."""
    return [max(flops[name] / samples[name][i] for name in MATMULS) for i in range(len(samples[MATMULS[0]]))]


def table(samples: dict, flops: dict) -> list[tuple]:
    """Rows: name, median ms, p25-p75 ms, median per-round ratio to the reference, ratio to the fp32 floor."""
    rate = gemm_rates(samples, flops)
    rows = []
    for name, values in samples.items():
        if name in MATMULS:
            continue
        quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
        to_reference = statistics.median(v / r for v, r in zip(values, samples[REFERENCE]))
        to_floor = statistics.median(v / (flops[name] / f) for v, f in zip(values, rate))
        rows.append((name, statistics.median(values), quartiles[0], quartiles[2], to_reference, to_floor))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="s")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--calib-images", type=int, default=32, help="INT8 calibration images (synthetic)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime
    import openvino

    with tempfile.TemporaryDirectory() as tmp:
        calls, flops = variants(args, Path(tmp))
        samples = timed_rounds(calls, args.repeats)
    gflops = statistics.median(gemm_rates(samples, flops)) / 1e6
    rect = rect_hw(args.imgsz)
    print(f"YOLO-World {args.size.upper()} {args.imgsz}x{args.imgsz} (rect 16:9: {rect[1]}x{rect[0]}), batch 1, "
          f"{args.threads} threads, {args.classes} classes + padding, {args.repeats} interleaved rounds; torch "
          f"{torch.__version__}, onnxruntime {onnxruntime.__version__}, openvino {openvino.get_version().split('-')[0]}")
    print(f"fp32 matmul: {gflops:.0f} GFLOP/s; model {flops[REFERENCE] / 1e9:.1f} GFLOPs -> fp32 floor "
          f"{flops[REFERENCE] / gflops / 1e6:.0f} ms at {args.imgsz}x{args.imgsz}")
    print(f"| variant | ms (p25-p75) | x {REFERENCE} | x fp32 floor |\n|---|---|---|---|")
    for name, ms, low, high, to_reference, to_floor in table(samples, flops):
        print(f"| {name} | {ms:.0f} ({low:.0f}-{high:.0f}) | {to_reference:.2f} | {to_floor:.2f} |")


if __name__ == "__main__":
    main()
