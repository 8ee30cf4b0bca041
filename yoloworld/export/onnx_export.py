"""ONNX export with the vocabulary baked in, or with the text embeddings as an input plus a text-encoder graph.

Baked (`vocabulary="baked"`): a v2 model is reparameterized (texts folded into the weights); a v1 model, which
cannot be, carries the text embeddings as a constant. Dynamic (`vocabulary="dynamic"`): the detector graph
takes `text_embeds` (T, D) and `<name>.text.onnx` encodes token ids, with the tokenizer saved in
`<name>.tokenizer/`, so a deployed model changes vocabulary without PyTorch models.

Every file records how to run it in the ONNX metadata key `yoloworld` (JSON): input size, classes, padding,
vocabulary kind, NMS settings, companion files.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from yoloworld.errors import InputError
from yoloworld.export.graphs import DetectorGraph, NmsGraph, TextEncoderGraph
from yoloworld.files import atomic_write
from yoloworld.models.reparam import reparameterize
from yoloworld.predictor import check_imgsz
from yoloworld.prompts import prompt_name
from yoloworld.thresholds import ClassThresholds
from yoloworld.vocabulary import Vocabulary

METADATA_KEY = "yoloworld"
DEFAULT_OPSET = 17  # einsum needs >= 12


@dataclass
class ExportPlan:
    """What goes into the graph: a detector graph, its vocabulary (None = set at run time), the text encoder."""

    graph: DetectorGraph
    vocabulary: Vocabulary | None
    dynamic: bool
    text_encoder: object | None = None  # TextEncoder for dynamic vocabularies
    thresholds: ClassThresholds | None = None  # the model's calibrated per-class thresholds (kept in the metadata)

    def negative_columns(self) -> slice | None:
        """The negative prompts' columns of a baked vocabulary's scores, for the in-graph NMS."""
        if self.vocabulary is None or not self.vocabulary.negatives:
            return None
        return self.vocabulary.negative_columns()


def plan_export(api, classes=None, vocabulary: str = "baked", neck: str = "conv", negatives=None) -> ExportPlan:
    """From a loaded `YOLOWorld`: the graph to export (the caller's model is left as it is), with its calibrated
    thresholds. Baked vocabularies get the padding prompt like `predict`; without `classes` the vocabulary stored
    with the model is baked. `negatives`: negative prompts (yoloworld.negatives) baked beside the classes."""
    plan = _plan_graph(api, classes, vocabulary, neck, negatives)
    plan.thresholds = api.thresholds
    return plan


def _plan_graph(api, classes, vocabulary: str, neck: str, negatives) -> ExportPlan:
    model = copy.deepcopy(api.model).cpu().float().eval()
    if vocabulary == "dynamic":
        if not model.needs_text or model.text_model is None:
            raise InputError("this model has no text encoder (reparameterized, prompt-tuned or saved with its "
                             "vocabulary): export it with --vocab baked")
        chosen = Vocabulary.build(classes, negatives=negatives) if classes is not None else None
        return ExportPlan(DetectorGraph(model), chosen, True, model.text_model)
    if vocabulary != "baked":
        raise InputError(f"unknown vocabulary kind {vocabulary!r}: use baked or dynamic")
    if model.needs_text:
        chosen, embeds = _baked_vocabulary(api, classes, negatives)
        if model.neck.text_enhancer is None:
            return ExportPlan(DetectorGraph(reparameterize(model, embeds, neck)), chosen, False)
        return ExportPlan(DetectorGraph(model, embeds), chosen, False)  # v1: texts as a constant
    if api.vocabulary is None:
        raise InputError("this model stores no class names; cannot name its outputs")
    if negatives:
        raise InputError("this model's vocabulary is fixed in its weights: it cannot score negative prompts")
    if classes is not None and Vocabulary.build(classes).names != api.vocabulary.names:
        raise InputError(f"this model's vocabulary is fixed ({', '.join(api.vocabulary.names[:5])}, ...); "
                         "export a text-conditioned checkpoint to choose classes")
    detector = reparameterize(model, neck=neck) if model.config.num_prompts else model
    return ExportPlan(DetectorGraph(detector), api.vocabulary, False)


def _baked_vocabulary(api, classes, negatives=None) -> tuple[Vocabulary, torch.Tensor]:
    """The vocabulary to fold in and its embeddings: `classes` (and `negatives`) encoded now, or the model's stored
    vocabulary."""
    stored = api.vocabulary if api.text_embeds is not None else None
    if classes is None and stored is not None and negatives:
        classes = stored.classes
    if classes is None:
        if stored is None:
            raise InputError("a baked-vocabulary export needs the classes: --classes \"a,b\" or --classes-file F")
        return stored, api.text_embeds.detach().cpu().float()
    chosen = Vocabulary.build(classes, negatives=negatives)
    if api.model.text_model is None and stored is not None and chosen.texts == stored.texts:
        return stored, api.text_embeds.detach().cpu().float()
    return chosen, api.encode_prompts(chosen.texts).detach().cpu().float()


def export_onnx(plan: ExportPlan, out: str | os.PathLike, imgsz: int = 640, nms: bool = False,
                dynamic_batch: bool = False, conf: float = 0.05, iou: float = 0.7, max_det: int = 300,
                opset: int = DEFAULT_OPSET, nms_pre: int = 30000, dynamic_shape: bool = False) -> list[Path]:
    """Write the detector graph (and, for dynamic vocabularies, the text encoder and tokenizer). Returns paths.

    `dynamic_shape`: height and width are graph inputs (any multiple of 32), for rect inference and other
    sizes; `imgsz` stays the default long side written in the metadata."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise InputError(f"{out}: the output file must end in .onnx")
    check_imgsz(imgsz)
    out.parent.mkdir(parents=True, exist_ok=True)
    segments = plan.graph.detector.config.segments
    if nms and segments:
        raise InputError("a segmentation model exports without --nms: the runner selects detections and assembles "
                         "their masks from the coefficient and prototype outputs")
    module, input_names, example = _detector_module(plan, imgsz, nms, conf, iou, max_det, nms_pre)
    output_names = ["detections"] if nms else ["scores", "boxes"] + (["coeffs", "protos"] if segments else [])
    _torch_export(module, example, out, input_names, output_names,
                  _dynamic_axes(plan.dynamic, nms, dynamic_batch, dynamic_shape, segments), opset)
    written = [out]
    meta = {"format": 1, "imgsz": imgsz, "vocabulary": "dynamic" if plan.dynamic else "baked", "nms": nms,
            "dynamic_batch": dynamic_batch, "dynamic_shape": dynamic_shape, "conf": conf, "iou": iou,
            "max_det": max_det, "nms_pre": nms_pre, "classes": _stored_classes(plan),
            "padded": plan.vocabulary.padded if plan.vocabulary else True, "masks": segments}
    meta.update(_selection_meta(plan))
    if plan.dynamic:
        meta["embed_dims"] = plan.graph.detector.config.embed_dims
    if plan.dynamic and plan.text_encoder is not None:  # without one, feed embeddings (yoloworld embed) yourself
        written += export_text_encoder(plan.text_encoder, out.with_suffix(".text.onnx"), opset)
        meta.update(text_encoder=written[1].name, tokenizer=written[2].name)
    write_metadata(out, meta)
    return written


def _selection_meta(plan: ExportPlan) -> dict:
    """The calibrated thresholds and the negative prompts (by name) the runner applies."""
    meta = {}
    if plan.thresholds is not None:
        meta["thresholds"] = plan.thresholds.to_meta()
    if plan.vocabulary is not None and plan.vocabulary.negatives and _stored_classes(plan):
        meta["negatives"] = [prompt_name(prompt) for prompt in plan.vocabulary.negatives]
    return meta


def _stored_classes(plan: ExportPlan) -> list | None:
    """The class names for the metadata; a dynamic graph re-encodes them at load, so only a text vocabulary."""
    if plan.vocabulary is None:
        return None
    stored = plan.vocabulary.stored_classes()
    if plan.dynamic and stored != plan.vocabulary.classes:  # reference images: set them again at run time
        return None
    return stored


def _dynamic_axes(dynamic_vocabulary: bool, nms: bool, dynamic_batch: bool, dynamic_shape: bool,
                  segments: bool = False) -> dict:
    """Named dynamic dimensions of the detector graph's inputs and outputs."""
    per_prior = [] if nms else ["scores", "boxes"] + (["coeffs"] if segments else [])
    axes = {"images": {}, **{name: {} for name in per_prior}, **({"protos": {}} if segments and not nms else {})}
    if dynamic_batch:
        for name in axes:
            axes[name][0] = "batch"
    if dynamic_shape:  # the number of priors (and the prototype map) follows height and width
        axes["images"].update({2: "height", 3: "width"})
        for name in per_prior:
            axes[name][1] = "priors"
        if "protos" in axes:
            axes["protos"].update({2: "proto_height", 3: "proto_width"})
    if dynamic_vocabulary:
        axes["text_embeds"] = {0: "texts"}
        if not nms:
            axes["scores"][2] = "texts"
    return {name: dims for name, dims in axes.items() if dims}


def _detector_module(plan: ExportPlan, imgsz: int, nms: bool, conf: float, iou: float, max_det: int, nms_pre: int):
    graph = plan.graph.eval()
    images = torch.rand(1, 3, imgsz, imgsz)
    example, names = (images,), ["images"]
    if plan.dynamic:
        text = torch.nn.functional.normalize(torch.randn(2, graph.detector.config.embed_dims), dim=-1)
        example, names = (images, text), ["images", "text_embeds"]
    if not nms:
        return graph, names, example
    if plan.dynamic:
        raise InputError("in-graph NMS needs a baked vocabulary (the class grouping is part of the graph); "
                         "export the dynamic vocabulary without --nms")
    return NmsGraph(graph, plan.vocabulary.groups(), conf, iou, max_det, nms_pre,
                    plan.negative_columns()).eval(), names, example


def export_text_encoder(encoder, out: Path, opset: int = DEFAULT_OPSET) -> list[Path]:
    """`<name>.text.onnx` (input_ids, attention_mask -> text_embeds) and the tokenizer files beside it."""
    tokens = encoder.tokenize(["a photo", "traffic light at night", " "])
    _torch_export(TextEncoderGraph(encoder).eval(), (tokens["input_ids"], tokens["attention_mask"]), out,
                  ["input_ids", "attention_mask"], ["text_embeds"],
                  {"input_ids": {0: "texts", 1: "tokens"}, "attention_mask": {0: "texts", 1: "tokens"},
                   "text_embeds": {0: "texts"}}, opset)
    tokenizer_dir = out.with_suffix("").with_suffix(".tokenizer")  # model.text.onnx -> model.tokenizer
    save_tokenizer(encoder.tokenizer, tokenizer_dir)
    return [out, tokenizer_dir]


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Hugging Face files plus the BPE `vocab.json` / `merges.txt` that `load_tokenizer(folder)` reads."""
    tokenizer.save_pretrained(str(folder))
    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in bpe["merges"]]
    (folder / "vocab.json").write_text(json.dumps(bpe["vocab"], ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def _torch_export(module, example, out: Path, input_names, output_names, dynamic_axes, opset: int) -> None:
    def write(tmp: Path) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
            torch.onnx.export(module, example, str(tmp), dynamo=False, opset_version=opset, input_names=input_names,
                              output_names=output_names, dynamic_axes=dynamic_axes or None, do_constant_folding=True)

    atomic_write(out, write)


def import_onnx():
    try:
        import onnx
    except ImportError:
        raise InputError("ONNX export is not installed: pip install 'yoloworld[export]' (onnx, onnxruntime)") from None
    return onnx


def write_metadata(path: Path, meta: dict) -> None:
    onnx = import_onnx()

    model = onnx.load(str(path))
    entry = next((p for p in model.metadata_props if p.key == METADATA_KEY), None) or model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta, ensure_ascii=False)
    onnx.save(model, str(path))


@torch.no_grad()
def compare_with_pytorch(plan: ExportPlan, path: str | os.PathLike, images: torch.Tensor | None = None,
                         seed: int = 0) -> dict[str, float]:
    """Max |exported - PyTorch| per output of the exported detector graph (`scores`, `boxes` in input pixels, or
    `detections`), run by its runtime (ONNX Runtime for .onnx, OpenVINO for .xml), on `images` or a random batch
    (2 images when the batch is dynamic). NMS rows are compared as sets; a different number of kept boxes gives
    inf."""
    from yoloworld.export.runners import open_exported

    runner = open_exported(path)
    meta = runner.meta
    generator = torch.Generator().manual_seed(seed)
    if images is None:
        size = (2 if meta["dynamic_batch"] else 1, 3, meta["imgsz"], meta["imgsz"])
        images = torch.rand(size, generator=generator)
    args, text = (images,), None
    if plan.dynamic:
        if plan.text_encoder is not None:
            text = plan.text_encoder(plan.vocabulary.texts if _stored_classes(plan) else ["person", "car", " "]).float()
        else:
            text = torch.nn.functional.normalize(torch.randn(3, meta["embed_dims"], generator=generator), dim=-1)
        args = (images, text)
    module = plan.graph
    if meta["nms"]:
        module = NmsGraph(plan.graph, plan.vocabulary.groups(), meta["conf"], meta["iou"], meta["max_det"],
                          meta["nms_pre"], plan.negative_columns())
    expected = module.eval()(*args)
    got = runner.run(images.numpy(), None if text is None else text.numpy())
    if meta["nms"]:
        return match_detections(expected.numpy(), got[0])
    return {name: float(np.abs(np.asarray(e) - g).max()) if g.size else 0.0
            for name, e, g in zip(("scores", "boxes", "coeffs", "protos"), expected, got)}  # masks: 4 outputs


def match_detections(expected: np.ndarray, got: np.ndarray, min_iou: float = 0.99) -> dict[str, float]:
    """Compare NMS outputs as sets (near-equal scores may swap ranks): the fraction of expected rows with a
    row of the same image and class at IoU >= `min_iou`, the largest score gap among them, and the counts."""
    matched, score_gap = 0, 0.0
    for key in {tuple(k) for k in expected[:, [0, 6]].tolist()}:
        mine = expected[(expected[:, 0] == key[0]) & (expected[:, 6] == key[1])]
        theirs = got[(got[:, 0] == key[0]) & (got[:, 6] == key[1])]
        if not len(theirs):
            continue
        iou = box_iou(torch.from_numpy(mine[:, 1:5]), torch.from_numpy(theirs[:, 1:5]))
        best, index = iou.max(dim=1)
        ok = best >= min_iou
        matched += int(ok.sum())
        if ok.any():
            score_gap = max(score_gap, float(np.abs(mine[ok.numpy(), 5] - theirs[index[ok].numpy(), 5]).max()))
    return {"detections matched": matched / max(len(expected), 1), "score gap": score_gap,
            "count pytorch": float(len(expected)), "count exported": float(len(got))}


__all__ = ["METADATA_KEY", "ExportPlan", "plan_export", "export_onnx", "export_text_encoder", "write_metadata",
           "compare_with_pytorch"]
