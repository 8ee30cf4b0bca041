"""`yoloworld export`: ONNX with the vocabulary baked in (reparameterized), or with a text-encoder graph for a
vocabulary chosen at run time. Run the result with `yoloworld predict model.onnx`."""

from __future__ import annotations

import argparse
from pathlib import Path

from yoloworld.cli.common import add_model_flags, add_selection_flags, chosen_classes
from yoloworld.config import NECK_MODES
from yoloworld.files import check_output


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export", help="export to ONNX (baked or dynamic vocabulary), runnable by yoloworld predict",
        description="Export a detector to ONNX. --vocab baked folds the classes into the weights "
        "(reparameterization; v1 models carry them as a constant) and adds the padding prompt like predict. "
        "--vocab dynamic takes text embeddings as an input and also writes NAME.text.onnx and NAME.tokenizer/.")
    add_model_flags(parser, imgsz_help="square input size, a multiple of 32 (default: the model's own, else 640)")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    parser.add_argument("--vocab", choices=("baked", "dynamic"), default="baked",
                        help="baked: classes fixed in the graph (default: the vocabulary stored with the model); "
                        "dynamic: text embeddings are a graph input")
    parser.add_argument("--neck", choices=NECK_MODES, default="conv", help="reparameterized neck layout (baked v2)")
    parser.add_argument("--nms", action="store_true", help="class-aware NMS inside the graph (baked vocabulary)")
    add_selection_flags(parser, conf=0.05, conf_help="score threshold of the in-graph NMS")
    parser.add_argument("--dynamic-batch", action="store_true", help="allow any batch size (default: 1)")
    parser.add_argument("--opset", type=int, choices=range(12, 22), default=17, metavar="{12..21}",
                        help="ONNX opset (default 17)")
    parser.add_argument("--out", help="output .onnx file (default: ./<weights name>.onnx)")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch comparison")
    return parser


def run(args: argparse.Namespace) -> int:
    from yoloworld.api import YOLOWorld
    from yoloworld.errors import InputError
    from yoloworld.export.onnx_export import (
        compare_with_pytorch,
        export_onnx,
        import_onnx,
        plan_export,
    )
    from yoloworld.export.onnx_runtime import import_onnxruntime

    import_onnx(), import_onnxruntime()  # before any work: a missing extra is one line
    out = Path(args.out) if args.out else Path(Path(str(args.weights)).stem + ".onnx")
    if out.suffix != ".onnx":
        raise InputError(f"--out {out}: the output file must end in .onnx")
    check_output(out, "--out")
    classes = chosen_classes(args)
    api = YOLOWorld.from_pretrained(args.weights, text_model=args.text_model, device=args.device, imgsz=args.imgsz,
                                    vision_model=args.vision_model)
    plan = plan_export(api, classes, args.vocab, args.neck)
    written = export_onnx(plan, out, api.imgsz, args.nms, args.dynamic_batch, args.conf, args.iou, args.max_det,
                          args.opset)
    names = ", ".join(plan.vocabulary.names) if plan.vocabulary else "set at run time"
    print(f"wrote {', '.join(str(p) for p in written)} ({args.vocab} vocabulary: {names}; {api.imgsz} px input)")
    if not args.no_check:
        print(check_line(compare_with_pytorch(plan, out), args.nms, args.conf))
    return 0


def check_line(diffs: dict, nms: bool, conf: float) -> str:
    """The ONNX Runtime vs PyTorch comparison as one line that says what it did (and did not) compare."""
    if not nms:
        return (f"ONNX Runtime vs PyTorch on a random input, max |diff|: scores {diffs['scores']:.1e}, boxes "
                f"{diffs['boxes']:.1e} px (PyTorch's own kernel-to-kernel noise is of the same order)")
    if diffs["count pytorch"] == 0 and diffs["count onnx"] == 0:
        return (f"ONNX Runtime vs PyTorch: no detection above conf {conf} on the random check input, so nothing "
                "was compared; check on a real image: yoloworld predict IMAGE --weights MODEL.onnx")
    # kept boxes compared as sets: near-equal scores may swap ranks
    return (f"ONNX Runtime vs PyTorch on a random input: {diffs['detections matched']:.1%} of "
            f"{diffs['count pytorch']:.0f} detections matched ({diffs['count onnx']:.0f} from ONNX), "
            f"largest score gap {diffs['score gap']:.1e}")
