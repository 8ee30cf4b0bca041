"""OpenVINO export: the ONNX export's graphs (baked or dynamic vocabulary, optional in-graph NMS, dynamic height
and width) converted to OpenVINO IR, optionally INT8-quantized, in one folder (NAME_openvino_int8_model/ for INT8):

    NAME_openvino_model/NAME.xml, NAME.bin            the detector, `yoloworld` metadata in its rt_info
    NAME_openvino_model/NAME.text.xml, .bin           dynamic vocabulary: the text encoder
    NAME_openvino_model/NAME.tokenizer/               dynamic vocabulary: the tokenizer files

The folder's output record (`yoloworld.outputs`) says what it holds: a later export of another kind (INT8 over
fp32, a dynamic over a baked vocabulary) into it is refused unless `overwrite`; files not written by an export are
never replaced.

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
from yoloworld.outputs import OutputFolder

FOLDER_SUFFIX = "_openvino_model"
INT8_FOLDER_SUFFIX = "_openvino_int8_model"


def export_kind(runtime: str, vocabulary: str, int8: bool = False) -> str:
    """What an export holds, as its output record says: a different kind is not replaced without --overwrite."""
    precision = " int8" if int8 else " fp32" if runtime == "openvino" else ""
    return f"export {runtime}{precision}, {vocabulary} vocabulary"


def folder_stem(out: Path) -> str:
    """NAME of NAME_openvino_model / NAME_openvino_int8_model: the file names inside."""
    for suffix in (INT8_FOLDER_SUFFIX, FOLDER_SUFFIX):
        if out.name.endswith(suffix) and out.name != suffix:
            return out.name.removesuffix(suffix)
    return out.name or "model"


def expected_files(out: Path, dynamic: bool) -> list[Path]:
    """The files an export into the folder `out` writes at the top level (the tokenizer folder aside)."""
    stem = folder_stem(out)
    names = [f"{stem}.xml", f"{stem}.bin"] + ([f"{stem}{TEXT_SUFFIX}", f"{stem}.text.bin"] if dynamic else [])
    return [out / name for name in names]


def export_openvino(plan: ExportPlan, out: str | os.PathLike, imgsz: int = 640, calibration: list[Path] | None = None,
                    overwrite: bool = False, **onnx_options) -> list[Path]:
    """Write the export folder `out` (see the module docstring); `calibration` images make the detector INT8.
    `onnx_options`: `export_onnx`'s (nms, dynamic_batch, conf, iou, max_det, opset, nms_pre, dynamic_shape).
    Returns the written paths."""
    import_openvino()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        onnx_file = export_onnx(plan, Path(tmp) / f"{folder_stem(out)}.onnx", imgsz, **onnx_options)[0]
        return convert_onnx_export(onnx_file, out, calibration, overwrite)


def convert_onnx_export(onnx_file: str | os.PathLike, out: str | os.PathLike,
                        calibration: list[Path] | None = None, overwrite: bool = False) -> list[Path]:
    """A yoloworld ONNX export (with its text encoder and tokenizer beside it, if any) -> the OpenVINO folder
    `out`, the detector INT8 when `calibration` images are given. Returns the written paths. An earlier export
    of another kind in `out` is replaced only with `overwrite`."""
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
        kind = export_kind("openvino", meta["vocabulary"], bool(calibration))
        return _move_into(staged, out, kind, overwrite)


def _onnx_metadata(path: Path) -> dict:
    from yoloworld.export.onnx_export import import_onnx

    model = import_onnx().load(str(path), load_external_data=False)
    return json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))


def _save(ov, model, path: Path) -> None:
    # full fp32 weights: OpenVINO's default fp16 weight compression would move scores off PyTorch's
    ov.save_model(model, str(path), compress_to_fp16=False)


def _move_into(staged: Path, out: Path, kind: str, overwrite: bool) -> list[Path]:
    """Move every staged file into `out` (created), each landing whole; only files recorded as an export's are
    replaced, and with `overwrite` the files of an earlier export of another kind are removed first."""
    files = sorted(p for p in staged.rglob("*") if p.is_file())
    written = [out / entry.name for entry in sorted(staged.iterdir())]
    outputs = OutputFolder(out)
    if overwrite:
        outputs.remove(k for k in outputs.kinds() if k != kind and k.startswith("export "))
    outputs.claim([out / p.relative_to(staged) for p in files], kind, replace_kinds=overwrite)
    for file in files:
        target = out / file.relative_to(staged)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, target)
    return written


def default_folder(weights: str, int8: bool = False) -> Path:
    """./NAME_openvino_model, or ./NAME_openvino_int8_model: an INT8 export never lands on the fp32 one."""
    return Path(Path(str(weights)).stem + (INT8_FOLDER_SUFFIX if int8 else FOLDER_SUFFIX))


__all__ = ["FOLDER_SUFFIX", "INT8_FOLDER_SUFFIX", "export_openvino", "convert_onnx_export", "default_folder",
           "export_kind", "expected_files"]
