"""`yoloworld export`: ONNX or OpenVINO with the vocabulary baked in (reparameterized), or with a text-encoder graph
for a vocabulary chosen at run time; OpenVINO optionally INT8. Run the result with `yoloworld predict`."""

from __future__ import annotations

import argparse
from pathlib import Path

from yoloworld.cli.common import (
    add_model_flags,
    add_negative_flag,
    add_selection_flags,
    chosen_classes,
    positive_int,
)
from yoloworld.config import NECK_MODES
from yoloworld.files import check_output


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export", help="export to ONNX or OpenVINO (baked or dynamic vocabulary, INT8), runnable by yoloworld predict",
        description="Export a detector to ONNX or OpenVINO. --vocab baked folds the classes into the weights "
        "(reparameterization; v1 models carry them as a constant) and adds the padding prompt like predict. "
        "--vocab dynamic takes text embeddings as an input and also writes NAME.text.onnx and NAME.tokenizer/.")
    add_model_flags(parser, imgsz_help="input size, a multiple of 32 (default: the model's own, else 640); with "
                    "--dynamic-shape the default long side")
    parser.add_argument("--format", choices=("onnx", "openvino"), default="onnx",
                        help="onnx: one .onnx file (ONNX Runtime); openvino: a NAME_openvino_model/ folder "
                        "(NAME_openvino_int8_model/ with --int8)")
    parser.add_argument("--vocab", choices=("baked", "dynamic"), default="baked",
                        help="baked: classes fixed in the graph (default: the vocabulary stored with the model); "
                        "dynamic: text embeddings are a graph input")
    parser.add_argument("--neck", choices=NECK_MODES, default="conv", help="reparameterized neck layout (baked v2)")
    parser.add_argument("--nms", action="store_true", help="class-aware NMS inside the graph (baked vocabulary)")
    add_negative_flag(parser)
    add_selection_flags(parser, conf=0.05, conf_help="score threshold of the in-graph NMS (with calibrated "
                        "thresholds: default their lowest; the runner applies each class's own)")
    parser.add_argument("--nms-pre", type=positive_int, default=30000,
                        help="in-graph NMS: the best candidates kept before NMS, as predict (default 30000)")
    parser.add_argument("--dynamic-batch", action="store_true", help="allow any batch size (default: 1)")
    parser.add_argument("--dynamic-shape", action="store_true",
                        help="allow any height and width (multiples of 32), for predict --rect and other sizes")
    parser.add_argument("--int8", action="store_true", help="INT8 post-training quantization (--format openvino, "
                        "baked vocabulary), calibrated on --calib images")
    parser.add_argument("--calib", help="with --int8: a folder of typical input images")
    parser.add_argument("--calib-images", type=positive_int, default=300,
                        help="with --int8: calibration images taken from --calib (default 300)")
    parser.add_argument("--opset", type=int, choices=range(12, 22), default=17, metavar="{12..21}",
                        help="ONNX opset (default 17)")
    parser.add_argument("--out", help="output .onnx file, or OpenVINO folder (default: ./<weights name>.onnx, "
                        "./<weights name>_openvino_model or, INT8, ./<weights name>_openvino_int8_model)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export of another kind (INT8 "
                        "or fp32, baked or dynamic vocabulary) at --out; files not written by an export never are")
    parser.add_argument("--no-check", action="store_true", help="skip the exported vs PyTorch comparison")
    return parser


def run(args: argparse.Namespace) -> int:
    from yoloworld.api import YOLOWorld
    from yoloworld.export.onnx_export import compare_with_pytorch, plan_export

    out, calibration = _check_request(args)  # before any work: a missing package or bad flag is one line
    classes = chosen_classes(args)
    api = YOLOWorld.from_pretrained(args.weights, text_model=args.text_model, device=args.device, imgsz=args.imgsz,
                                    vision_model=args.vision_model)
    plan = plan_export(api, classes, args.vocab, args.neck, args.negative)
    args.conf = graph_conf(args.conf, plan)
    options = dict(nms=args.nms, dynamic_batch=args.dynamic_batch, conf=args.conf, iou=args.iou,
                   max_det=args.max_det, opset=args.opset, nms_pre=args.nms_pre, dynamic_shape=args.dynamic_shape)
    if args.format == "openvino":
        from yoloworld.export.openvino_export import export_openvino

        written = export_openvino(plan, out, api.imgsz, calibration, args.overwrite, **options)
    else:
        from yoloworld.export.onnx_export import export_onnx

        tokenizer_is_new = not out.with_suffix(".tokenizer").exists()
        written = export_onnx(plan, out, api.imgsz, **options)
        _record_tokenizer(out, written, _kind(args), args.overwrite, tokenizer_is_new)
    names = ", ".join(plan.vocabulary.names) if plan.vocabulary else "set at run time"
    shape = "any multiple of 32, default long side" if args.dynamic_shape else "input"
    print(f"wrote {', '.join(str(p) for p in written)} ({args.vocab} vocabulary: {names}; {api.imgsz} px {shape}"
          f"{'; INT8' if calibration else ''})")
    if not args.no_check:
        print(check_line(compare_with_pytorch(plan, out), args.nms, args.conf, args.format, bool(calibration)))
    return 0


def _check_request(args) -> tuple[Path, list | None]:
    """The output path and the calibration images, after checking that the chosen runtime is installed."""
    from yoloworld.errors import InputError

    calibration = _calibration(args)
    if args.format == "openvino":
        from yoloworld.export.openvino_export import default_folder
        from yoloworld.export.openvino_runtime import import_openvino

        import_openvino()
        out = Path(args.out) if args.out else default_folder(args.weights, args.int8)
        check_output(out, "--out", folder=True)
    else:
        out = Path(args.out) if args.out else Path(Path(str(args.weights)).stem + ".onnx")
        if out.suffix != ".onnx":
            raise InputError(f"--out {out}: the output file must end in .onnx")
        check_output(out, "--out")
    from yoloworld.export.onnx_export import import_onnx
    from yoloworld.export.onnx_runtime import import_onnxruntime

    import_onnx(), import_onnxruntime()
    _claim_planned(args, out)
    return out, calibration


def _claim_planned(args, out: Path) -> None:
    """Before any work: the files this export will write are recorded as its own (or refused in one line)."""
    dynamic = args.vocab == "dynamic"
    if args.format == "openvino":
        from yoloworld.export.openvino_export import expected_files

        _claim(out, expected_files(out, dynamic), _kind(args), args.overwrite)
    else:
        tokenizer = out.with_suffix(".tokenizer")  # its files are checked if it is there, claimed once written
        text = [out.with_suffix(".text.onnx"), *([tokenizer] if tokenizer.is_dir() else [])] if dynamic else []
        _claim(out.parent, [out, *text], _kind(args), args.overwrite)


def _record_tokenizer(out: Path, written: list[Path], kind: str, overwrite: bool, is_new: bool) -> None:
    """The tokenizer folder's files, known only once written: all of them ours when this export made the folder
    (an existing one had its files checked before any work)."""
    from yoloworld.outputs import OutputFolder

    if is_new:
        files = [f for p in written if p.is_dir() for f in sorted(p.rglob("*")) if f.is_file()]
        OutputFolder(out.parent, "--out").adopt(files, kind)
    else:
        _claim(out.parent, written, kind, overwrite)


def _kind(args) -> str:
    from yoloworld.export.openvino_export import export_kind

    return export_kind(args.format, args.vocab, args.int8)


def _claim(folder: Path, paths: list[Path], kind: str, overwrite: bool = False) -> None:
    """Record the export's files before they are written: a file there that no export wrote, or (without
    --overwrite) an earlier export of another kind, is refused in one line instead of replaced."""
    from yoloworld.outputs import OutputFolder

    files = [f for p in paths for f in ([p] if not p.is_dir() else sorted(q for q in p.rglob("*") if q.is_file()))]
    OutputFolder(folder, "--out").claim(files, kind, replace_kinds=overwrite)


def _calibration(args) -> list | None:
    from yoloworld.errors import InputError

    if not args.int8:
        if args.calib:
            raise InputError("--calib is for --int8 exports; add --int8 or drop --calib")
        return None
    if args.format != "openvino":
        raise InputError("--int8 is for --format openvino (NNCF; the fastest INT8 runtime measured here)")
    if args.vocab != "baked":
        raise InputError("--int8 needs --vocab baked (calibration runs one fixed vocabulary)")
    if not args.calib:
        raise InputError("--int8 needs --calib DIR: a folder of typical input images")
    from yoloworld.export.quantize import calibration_images, import_nncf

    import_nncf()
    return calibration_images(args.calib, args.calib_images)


def graph_conf(conf: float | None, plan) -> float:
    """The in-graph NMS threshold: --conf, else the lowest calibrated threshold of the vocabulary, else 0.05."""
    from yoloworld.predictor import DEFAULT_CONF

    if conf is not None:
        return conf
    if plan.thresholds is None or plan.vocabulary is None:
        return DEFAULT_CONF
    return min(plan.thresholds.for_classes(plan.vocabulary.classes))


def check_line(diffs: dict, nms: bool, conf: float, runtime: str = "onnx", int8: bool = False) -> str:
    """The exported vs PyTorch comparison as one line that says what it did (and did not) compare."""
    name = "OpenVINO" if runtime == "openvino" else "ONNX Runtime"
    note = ("INT8 differs from fp32 PyTorch by design: judge it by AP (yoloworld val)" if int8 else
            "PyTorch's own kernel-to-kernel noise is of the same order")
    if not nms:
        return (f"{name} vs PyTorch on a random input, max |diff|: scores {diffs['scores']:.1e}, boxes "
                f"{diffs['boxes']:.1e} px ({note})")
    if diffs["count pytorch"] == 0 and diffs["count exported"] == 0:
        return (f"{name} vs PyTorch: no detection above conf {conf} on the random check input, so nothing "
                "was compared; check on a real image: yoloworld predict IMAGE --weights MODEL")
    # kept boxes compared as sets: near-equal scores may swap ranks
    return (f"{name} vs PyTorch on a random input: {diffs['detections matched']:.1%} of "
            f"{diffs['count pytorch']:.0f} detections matched ({diffs['count exported']:.0f} from {name}), "
            f"largest score gap {diffs['score gap']:.1e}")
