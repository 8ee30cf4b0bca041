"""`YOLOWorld`: the one front object. Load weights, set a vocabulary, predict; `load`: the one loader for every
weights format (PyTorch checkpoints, Ultralytics `.pt`, ONNX, OpenVINO, `demo`, release names).

    model = yoloworld.load("yolo_world_v2_s")  # or YOLOWorld.from_pretrained(...) for PyTorch weights
    model.set_classes(["person", ["car", "automobile"], "traffic light"])
    results = model.predict(["street.jpg"], conf=0.05)
    model.set_classes(["person", VisualPrompt("ref.jpg", box=(10, 20, 200, 220), name="my mug")])  # by example
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from yoloworld.devices import resolve_device
from yoloworld.errors import InputError
from yoloworld.models.boxes import dfl_integral
from yoloworld.models.checkpoint import load_detector, save_checkpoint
from yoloworld.models.checkpoint_info import CheckpointInfo
from yoloworld.models.detector import YOLOWorldDetector
from yoloworld.models.reparam import fold_vocabulary
from yoloworld.models.text import TextEmbeddingCache
from yoloworld.models.weights import DEMO_NAME, default_imgsz, is_demo
from yoloworld.postprocess import decode_outputs
from yoloworld.predictor import Predictor, check_imgsz
from yoloworld.prompts import VisualPrompt, encode_visual_prompts, prompt_name
from yoloworld.vocabulary import PADDING_PROMPT, Vocabulary

logger = logging.getLogger(__name__)
DEMO_WARNING = ("warning: the demo model was trained on synthetic coloured shapes only: on real photos it finds "
                "nothing meaningful (for real images use --weights yolo_world_v2_s)")
_demo_warned = False  # one warning per process, however many models or calls


def load(weights: str | os.PathLike, device="cpu", imgsz: int | None = None, text_model: str | os.PathLike | None = None,
         vision_model: str | os.PathLike | None = None, fuse: bool = False, fold: bool = True) -> Predictor:
    """The model behind `weights`, whatever its format: an `.onnx` file (`OnnxYOLOWorld`), an OpenVINO export
    folder or `.xml` (`OpenVinoYOLOWorld`), else a PyTorch checkpoint, an Ultralytics `.pt`, `demo` or a release
    name (`YOLOWorld`). `imgsz`: default the size stored with the model (see `YOLOWorld.from_pretrained`).
    `fold`: PyTorch models predict with the vocabulary folded into the weights (see `YOLOWorld`)."""
    from yoloworld.export.runners import is_exported, open_exported

    if is_exported(weights):
        return open_exported(weights, imgsz=imgsz)
    return YOLOWorld.from_pretrained(weights, text_model=text_model, device=device, imgsz=imgsz, fuse=fuse,
                                     vision_model=vision_model, fold=fold)


class YOLOWorld(Predictor):
    """The front object on PyTorch: wraps a `YOLOWorldDetector` (the nn.Module) with a vocabulary.

    `fold` (default on): the vocabulary is fixed between `set_classes` calls, so prediction runs a copy of the
    network with the current embeddings folded into its weights (`fold_vocabulary`: the same detections, faster),
    built on the first prediction after each `set_classes`. Per-image vocabularies run the text-conditioned model.
    """

    def __init__(self, model: YOLOWorldDetector, device="cpu", imgsz: int = 640, fold: bool = True):
        self.device = resolve_device(device)
        # channels_last: the fastest layout on CPU here (benchmarks/latency.py), and its conv kernels match the
        # official outputs most closely (tests/test_parity.py)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.imgsz = check_imgsz(imgsz)
        self.vocabulary: Vocabulary | None = None
        self.text_embeds: torch.Tensor | None = None  # (T, D) for self.vocabulary.texts
        self.embed_dims = model.config.embed_dims
        self._cache = TextEmbeddingCache(model.text_model) if model.text_model is not None else None
        self._stored_embeds: dict[str, torch.Tensor] = {}  # text -> embedding saved with a tower-less model
        self._image_prompts = model.image_prompt_encoder  # else the default tower, loaded on first use
        self.warn_demo = False  # set for the packaged demo model: it warns once when run on user images
        self.fold = fold
        self._folded: tuple | None = None  # (model, text_embeds, folded copy) of the last fold

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, text_model: str | os.PathLike | None = None,
                        device="cpu", imgsz: int | None = None, fuse: bool = False,
                        vision_model: str | os.PathLike | None = None, fold: bool = True) -> "YOLOWorld":
        """An official `.pth`, a yoloworld checkpoint, an Ultralytics `.pt`, `demo` (the packaged demo model), or a
        short name (`yolo_world_v2_s`, `yolov8s-worldv2`, downloaded once). `imgsz`: network input size; default
        the size stored with the model, else the size the named release was trained at, else 640. `vision_model`:
        a Hugging Face CLIP folder or id whose vision tower encodes reference images (default: the one in the file,
        else DEFAULT_VISION_MODEL). `fold`: see the class."""
        device = resolve_device(device)  # a bad device fails before any loading
        if imgsz is not None:
            check_imgsz(imgsz)
        model, checkpoint = load_detector(name_or_path, text_model=text_model, vision_model=vision_model)
        if fuse:
            model.fuse()
        info = CheckpointInfo.read((checkpoint.get("meta") or {}).get("yoloworld", {}), model.config,
                                   str(name_or_path))
        api = cls(model, device, imgsz or _stored_input_size(info, name_or_path), fold)
        api.warn_demo = str(name_or_path) == DEMO_NAME or is_demo(name_or_path)
        vocabulary = Vocabulary(info.classes, info.padded, negatives=info.negatives or []) if info.classes else None
        if vocabulary and "class_embeddings" in checkpoint:
            api._use_vocabulary(vocabulary, checkpoint["class_embeddings"].float())
        elif vocabulary and not model.needs_text:
            api._use_vocabulary(vocabulary, None)
        api.thresholds = info.thresholds
        return api

    def save(self, path: str | os.PathLike, keep_text_model: bool = False, half: bool = False) -> None:
        """Save weights with the current vocabulary baked in; without the text tower unless asked to keep it.
        `half`: fp16 tensors in the file (the live model stays as it is)."""
        if self.vocabulary is None:
            raise InputError("set_classes() first: the vocabulary is saved with the model")
        entries = {} if self.text_embeds is None else {"class_embeddings": self.text_embeds}
        save_checkpoint(path, self.model, self.usage_meta(), keep_text_model=keep_text_model, half=half, **entries)

    def usage_meta(self) -> dict:
        """What `save` records beside the weights: vocabulary (negatives included), input size, thresholds."""
        meta = {"classes": self.vocabulary.stored_classes(), "padded": self.vocabulary.padded, "imgsz": self.imgsz}
        if self.vocabulary.negatives:
            meta["negatives"] = [prompt_name(prompt) for prompt in self.vocabulary.negatives]
        if self.thresholds is not None:
            meta["thresholds"] = self.thresholds.to_meta()
        return meta

    # ------------------------------------------------------------------ vocabulary
    def set_classes(self, classes, padding: bool = True, negatives=None):
        # a model without a text tower saved without the padding prompt (an Ultralytics file, a vocabulary saved
        # unpadded) has no embedding for it: it runs unpadded, as it was saved
        if self._cache is None and self._stored_embeds and PADDING_PROMPT not in self._stored_embeds:
            padding = False
        return super().set_classes(classes, padding, negatives)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(N, D) L2-normalised text embeddings (cached in memory and on disk)."""
        if self._cache is None:
            return self._stored_texts(list(texts))
        return self._cache.encode(list(texts)).to(self.device)

    def _stored_texts(self, texts: list[str]) -> torch.Tensor:
        """A model saved with its vocabulary and no text tower can still detect any subset of those texts, in any
        order (auto-labelling one class of a fine-tuned model, the app's class box)."""
        unknown = [t for t in texts if t not in self._stored_embeds]
        if unknown:
            stored = [t for t in self._stored_embeds if t.strip()]
            known = f"; it knows only its saved texts: {', '.join(stored[:12])}" if stored else ""
            raise InputError(f"this model has no text encoder and cannot embed {', '.join(map(repr, unknown[:5]))}"
                             f"{known}. Load it with a text model (--text-model) for new classes")
        return torch.stack([self._stored_embeds[t] for t in texts]).to(self.device)

    def encode_images(self, prompts: list[VisualPrompt]) -> torch.Tensor:
        """(V, D) L2-normalised class embeddings of reference images: per prompt its crops' CLIP embeddings
        averaged and renormalised, then the projector if the model has a trained one (raw CLIP otherwise)."""
        return encode_visual_prompts(self.image_prompt_encoder(), prompts, self.device)

    def image_prompt_encoder(self):
        """The model's image-prompt encoder, else the CLIP vision tower of DEFAULT_VISION_MODEL (no projector)."""
        if self._image_prompts is None:
            from yoloworld.models.image_prompt import ImagePromptEncoder

            self._image_prompts = ImagePromptEncoder.default(self.embed_dims).to(self.device).eval()
        return self._image_prompts

    def _use_vocabulary(self, vocabulary: Vocabulary, text_embeds: torch.Tensor | None) -> None:
        self.vocabulary = vocabulary
        self.text_embeds = None if text_embeds is None else text_embeds.to(self.device)
        if text_embeds is not None:
            self._stored_embeds = dict(zip(vocabulary.texts, text_embeds.to(self.device)))

    # ------------------------------------------------------------------ inference
    def results_of(self, prepared, *args, **kwargs):
        """As `Predictor.results_of` (every prediction path goes through it), warning once per process when the
        demo model runs on the user's images."""
        global _demo_warned
        if self.warn_demo and not _demo_warned and prepared.inputs is not None:
            _demo_warned = True
            logger.warning(DEMO_WARNING)
        return super().results_of(prepared, *args, **kwargs)

    @torch.no_grad()
    def forward_raw(self, images: torch.Tensor, text_embeds: torch.Tensor | None = None):
        """Network outputs in the official layouts: cls logits (B, N, H, W) and box distances (B, 4, H, W)
        in stride units, one tensor per level; a segmentation model adds mask coefficients (B, M, H, W) per
        level and prototypes (B, M, H / 4, W / 4). `images`: (B, 3, H, W) RGB in [0, 1]."""
        images = images.to(self.device).contiguous(memory_format=torch.channels_last)
        text_embeds = None if text_embeds is None else text_embeds.to(self.device)
        cls_logits, reg_logits, *seg = self.model(images, text_embeds)
        return (cls_logits, [dfl_integral(r) for r in reg_logits], *seg)

    @torch.no_grad()
    def forward(self, batch: np.ndarray, text_embeds: list) -> tuple[torch.Tensor, ...]:
        images = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
        folded = self.folded_model() if all(e is self.text_embeds for e in text_embeds) else None
        if folded is None:
            return decode_outputs(*self.model(images, stack_texts(text_embeds)))
        return decode_outputs(*folded(images, stack_texts(text_embeds) if folded.needs_text else None))

    def folded_model(self) -> YOLOWorldDetector | None:
        """The network with the current vocabulary folded in (built once per vocabulary and model), or None
        where folding is off or has nothing to fold."""
        if not self.fold or self.text_embeds is None or not self.model.needs_text or self.model.training:
            return None
        model, embeds, folded = self._folded or (None, None, None)
        if model is not self.model or embeds is not self.text_embeds:
            folded = fold_vocabulary(self.model, self.text_embeds)
            self._folded = (self.model, self.text_embeds, folded)
        return folded


def _stored_input_size(info: CheckpointInfo, name_or_path) -> int:
    """The size the model was trained at (stored in the file, else the release table's), said once; else 640."""
    size, where = info.imgsz, f"stored in {name_or_path}"
    if size is None:
        size, where = default_imgsz(name_or_path), f"the size {name_or_path} was released for"
    if size is None:
        return 640
    logger.info("using the model's input size %d (%s); --imgsz overrides", size, where)
    return size


def stack_texts(embeds: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Per-image (T_i, D) embeddings -> (B, T_max, D); shorter lists are padded by repeating their last row
    (the padding prompt), which leaves the max-over-texts attention and the kept columns unchanged."""
    if embeds[0] is None:
        return None
    longest = max(e.shape[0] for e in embeds)
    rows = [torch.cat([e, e[-1:].expand(longest - e.shape[0], -1)]) if e.shape[0] < longest else e for e in embeds]
    return torch.stack(rows)
