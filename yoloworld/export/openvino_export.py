"""OpenVINO export: the ONNX export's graphs (baked or dynamic vocabulary, optional in-graph NMS, dynamic height
and width) converted to OpenVINO IR, optionally INT8-quantized, in one folder:

    NAME_openvino_model/NAME.xml, NAME.bin            the detector, `yoloworld` metadata in its rt_info
    NAME_openvino_model/NAME.text.xml, .bin           dynamic vocabulary: the text encoder
    NAME_openvino_model/NAME.tokenizer/               dynamic vocabulary: the tokenizer files

Going through ONNX keeps one traced graph definition (yoloworld.export.graphs) for every runtime.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from yoloworld.errors import InputError
from yoloworld.export.onnx_export import METADATA_KEY, ExportPlan, export_onnx
from yoloworld.export.openvino_runtime import TEXT_SUFFIX, import_openvino

FOLDER_SUFFIX = "_openvino_model"


def export_openvino(plan: ExportPlan, out: str | os.PathLike, imgsz: int = 640, calibration: list[Path] | None = None,
                    **onnx_options) -> list[Path]:
    """Write the export folder `out` (see the module docstring); `calibration` images make the detector INT8.
    `onnx_options`: `export_onnx`'s (nms, dynamic_batch, conf, iou, max_det, opset, nms_pre, dynamic_shape).
    Returns the written paths."""
    import_openvino()
    out = Path(out)
    stem = out.name.removesuffix(FOLDER_SUFFIX) or "model"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        onnx_file = export_onnx(plan, Path(tmp) / f"{stem}.onnx", imgsz, **onnx_options)[0]
        return convert_onnx_export(onnx_file, out, calibration)


def convert_onnx_export(onnx_file: str | os.PathLike, out: str | os.PathLike,
                        calibration: list[Path] | None = None) -> list[Path]:
    """A yoloworld ONNX export (with its text encoder and tokenizer beside it, if any) -> the OpenVINO folder
    `out`, the detector INT8 when `calibration` images are given. Returns the written paths."""
    ov = import_openvino()
    onnx_file, out = Path(onnx_file), Path(out)
    meta = _onnx_metadata(onnx_file)
    if calibration and meta["vocabulary"] == "dynamic":
        raise InputError("INT8 export needs a baked vocabulary (calibration runs one fixed vocabulary): "
                         "use --vocab baked with --int8")
    stem = onnx_file.stem
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp)
        model = ov.convert_model(str(onnx_file))
        if calibration:
            from yoloworld.export.quantize import quantize_int8

            model = quantize_int8(model, calibration, meta["imgsz"])
        meta.update(runtime="openvino", int8=bool(calibration), calibration_images=len(calibration or []))
        if meta.get("text_encoder"):
            _save(ov, ov.convert_model(str(onnx_file.parent / meta["text_encoder"])), staged / f"{stem}{TEXT_SUFFIX}")
            shutil.copytree(onnx_file.parent / meta["tokenizer"], staged / meta["tokenizer"])
            meta["text_encoder"] = f"{stem}{TEXT_SUFFIX}"
        model.set_rt_info(json.dumps(meta, ensure_ascii=False), [METADATA_KEY])
        _save(ov, model, staged / f"{stem}.xml")
        return _move_into(staged, out)


def _onnx_metadata(path: Path) -> dict:
    from yoloworld.export.onnx_export import import_onnx

    model = import_onnx().load(str(path), load_external_data=False)
    return json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))


def _save(ov, model, path: Path) -> None:
    # full fp32 weights: OpenVINO's default fp16 weight compression would move scores off PyTorch's
    ov.save_model(model, str(path), compress_to_fp16=False)


def _move_into(staged: Path, out: Path) -> list[Path]:
    """Move every staged entry into `out` (created), replacing same-named ones; each file lands whole."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in sorted(staged.iterdir()):
        target = out / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
        written.append(target)
    return written


def default_folder(weights: str) -> Path:
    return Path(Path(str(weights)).stem + FOLDER_SUFFIX)


__all__ = ["FOLDER_SUFFIX", "export_openvino", "convert_onnx_export", "default_folder"]
