"""`yoloworld export`: ONNX with the vocabulary baked in (reparameterized), or with a text-encoder graph for a
vocabulary chosen at run time. Run the result with `yoloworld predict model.onnx`."""

from __future__ import annotations

import argparse
from pathlib import Path

from yoloworld.models.reparam import NECK_MODES


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export", help="export to ONNX (baked or dynamic vocabulary), runnable by yoloworld predict",
        description="Export a detector to ONNX. --vocab baked folds the classes into the weights "
        "(reparameterization; v1 models carry them as a constant) and adds the padding prompt like predict. "
        "--vocab dynamic takes text embeddings as an input and also writes NAME.text.onnx and NAME.tokenizer/.")
    parser.add_argument("--weights", required=True, help="checkpoint file or a name such as yolo_world_v2_s")
    parser.add_argument("--classes", help='comma-separated classes; "|" separates synonyms: "person,car|automobile"')
    parser.add_argument("--classes-file", help="class-text JSON (list of synonym lists) or a .txt, one class per line")
    parser.add_argument("--text-model", help="Hugging Face CLIP folder (tokenizer / text weights), optional")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    parser.add_argument("--vocab", choices=("baked", "dynamic"), default="baked",
                        help="baked: classes fixed in the graph; dynamic: text embeddings are a graph input")
    parser.add_argument("--neck", choices=NECK_MODES, default="conv", help="reparameterized neck layout (baked v2)")
    parser.add_argument("--nms", action="store_true", help="class-aware NMS inside the graph (baked vocabulary)")
    parser.add_argument("--conf", type=float, default=0.05, help="score threshold of the in-graph NMS")
    parser.add_argument("--iou", type=float, default=0.7, help="IoU threshold of the in-graph NMS")
    parser.add_argument("--max-det", type=int, default=300, help="detections per class kept by the in-graph NMS")
    parser.add_argument("--dynamic-batch", action="store_true", help="allow any batch size (default: 1)")
    parser.add_argument("--imgsz", type=int, default=640, help="square input size, a multiple of 32 (default 640)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 12)")
    parser.add_argument("--out", help="output .onnx file (default: ./<weights name>.onnx)")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch comparison")
    return parser


def run(args: argparse.Namespace) -> int:
    from yoloworld.api import YOLOWorld
    from yoloworld.errors import InputError
    from yoloworld.export.onnx_export import export_onnx, plan_export
    from yoloworld.vocabulary import load_class_file, parse_class_string

    if args.imgsz % 32 or args.imgsz <= 0:
        raise InputError(f"--imgsz {args.imgsz}: must be a positive multiple of 32")
    if args.opset < 12:
        raise InputError(f"--opset {args.opset}: the graph needs opset 12 or newer (einsum)")
    classes = load_class_file(args.classes_file) if args.classes_file else (
        parse_class_string(args.classes) if args.classes else None)
    out = Path(args.out) if args.out else Path(Path(str(args.weights)).stem + ".onnx")
    api = YOLOWorld.from_pretrained(args.weights, text_model=args.text_model, imgsz=args.imgsz)
    plan = plan_export(api, classes, args.vocab, args.neck)
    written = export_onnx(plan, out, args.imgsz, args.nms, args.dynamic_batch, args.conf, args.iou, args.max_det,
                          args.opset)
    names = ", ".join(plan.vocabulary.names) if plan.vocabulary else "set at run time"
    print(f"wrote {', '.join(str(p) for p in written)} ({args.vocab} vocabulary: {names})")
    if not args.no_check:
        from yoloworld.export.onnx_export import compare_with_pytorch

        diffs = compare_with_pytorch(plan, out)
        if args.nms:  # kept boxes compared as sets: near-equal scores may swap ranks
            print(f"ONNX Runtime vs PyTorch on a random input: {diffs['detections matched']:.1%} of "
                  f"{diffs['count pytorch']:.0f} detections matched ({diffs['count onnx']:.0f} from ONNX), "
                  f"largest score gap {diffs['score gap']:.1e}")
        else:
            print(f"ONNX Runtime vs PyTorch on a random input, max |diff|: scores {diffs['scores']:.1e}, boxes "
                  f"{diffs['boxes']:.1e} px (PyTorch's own kernel-to-kernel noise is of the same order)")
    return 0
