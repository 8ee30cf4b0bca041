"""`yoloworld embed`: class texts or reference images -> N x 512 L2-normalised CLIP embeddings (.npy), for prompt
tuning, reparameterization, `--classes-file` and dynamic-vocabulary ONNX graphs (which then need no vision tower).
A JSON note next to the file records the classes, the synonym mode and the text / vision models."""

from __future__ import annotations

import argparse

from yoloworld.cli.common import add_class_flags, add_vision_flag, chosen_classes
from yoloworld.config import DEFAULT_TEXT_MODEL
from yoloworld.errors import CheckpointError, InputError
from yoloworld.files import check_output
from yoloworld.vocabulary import PADDING_PROMPT, Vocabulary

SYNONYM_MODES = ("mean", "first")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "embed", help="CLIP embeddings of class texts or reference images (.npy) for prompt tuning, reparam, export",
        description="Write one L2-normalised CLIP embedding per class. Synonyms are averaged and "
        "renormalised (--synonyms mean) or only the first is used (--synonyms first, the official tool). "
        "--images: classes given by reference images (their CLIP image embeddings averaged, then the image-prompt "
        "projector of --weights if it has one).")
    add_class_flags(parser, parser.add_mutually_exclusive_group(required=True), ("--images", "--visual-prompt"))
    parser.add_argument("--text-model", help=f"Hugging Face CLIP folder or hub id (default {DEFAULT_TEXT_MODEL}, "
                        "or the text tower inside --weights)")
    add_vision_flag(parser)
    parser.add_argument("--weights", help="take the text tower (and the image-prompt encoder) from this checkpoint")
    parser.add_argument("--synonyms", choices=SYNONYM_MODES, default="mean",
                        help="several texts per class: average them (mean) or use the first (first)")
    parser.add_argument("--padding", action="store_true",
                        help=f"append the padding prompt {PADDING_PROMPT!r} as a last row (what predict adds)")
    parser.add_argument("--out", required=True, help="output .npy file (folders are created)")
    return parser


def run(args: argparse.Namespace) -> int:
    from yoloworld.models.prompt import write_embeddings

    if not str(args.out).endswith(".npy"):
        raise InputError(f"--out {args.out}: the output file must end in .npy")
    check_output(args.out, "--out")
    classes = chosen_classes(args)
    encoders = PromptEncoders(args.text_model, args.vision_model, args.weights)
    embeds = class_embeddings(classes, encoders.encode, args.synonyms)
    if args.padding:
        import torch

        embeds = torch.cat([embeds, encoders.encode([PADDING_PROMPT])])
    note = {"classes": Vocabulary(classes, False).stored_classes(), "synonyms": args.synonyms,
            "padded": bool(args.padding), **encoders.sources(),
            "rows": "one per class, in file order" + (", then the padding prompt" if args.padding else "")}
    path = write_embeddings(args.out, embeds, note)
    print(f"wrote {tuple(embeds.shape)} embeddings to {path} (synonyms: {args.synonyms}); note in "
          f"{path.with_suffix('.json')}")
    return 0


def class_embeddings(classes: list[list[str]], encode, synonyms: str = "mean"):
    """(C, D) tensor: per class the first synonym's embedding, or the renormalised mean of all its synonyms."""
    import torch
    import torch.nn.functional as F

    if synonyms not in SYNONYM_MODES:
        raise InputError(f"unknown synonym mode {synonyms!r}: use mean or first")
    if synonyms == "first":
        return encode([group[0] for group in classes])
    flat = encode([text for group in classes for text in group])
    rows, start = [], 0
    for group in classes:
        rows.append(flat[start:start + len(group)].mean(dim=0))
        start += len(group)
    return F.normalize(torch.stack(rows), dim=-1)


class PromptEncoders:
    """The text and image-prompt encoders of `embed`, each loaded when the first prompt of its kind comes."""

    def __init__(self, text_model: str | None, vision_model: str | None, weights: str | None):
        self.text_model, self.vision_model, self.weights = text_model, vision_model, weights
        self._detector = self._texts = self._images = None
        self.text_source = self.vision_source = None

    def encode(self, prompts: list):
        from yoloworld.prompts import encode_prompts

        return encode_prompts(prompts, self.encode_text, self.encode_images)

    def encode_text(self, texts: list[str]):
        from yoloworld.models.text import TextEmbeddingCache, TextEncoder

        if self._texts is None:
            if self.weights:
                encoder = self.detector().text_model
                if encoder is None:
                    raise CheckpointError(f"{self.weights}: holds no text model; pass --text-model instead")
                self.text_source = f"{self.weights} (text tower)"
            else:
                self.text_source = self.text_model or DEFAULT_TEXT_MODEL
                encoder = TextEncoder.from_pretrained(self.text_source)
            self._texts = TextEmbeddingCache(encoder.eval())
        return self._texts.encode(texts)

    def encode_images(self, prompts: list):
        from yoloworld.models.image_prompt import DEFAULT_VISION_MODEL, ImagePromptEncoder
        from yoloworld.prompts import encode_visual_prompts

        if self._images is None:
            encoder = self.detector().image_prompt_encoder if self.weights else None
            source = self.vision_model or self.weights
            if encoder is None and self.vision_model is not None:
                encoder = ImagePromptEncoder.from_pretrained(self.vision_model)
            if encoder is None:
                dims = self.detector().config.embed_dims if self.weights else None
                encoder, source = ImagePromptEncoder.default(dims), DEFAULT_VISION_MODEL
            self._images = encoder.eval()
            projector = "with its projector" if encoder.projector is not None else "no projector: raw CLIP"
            self.vision_source = f"{source} ({projector})"
        return encode_visual_prompts(self._images, prompts)

    def detector(self):
        from yoloworld.models.checkpoint import load_detector

        if self._detector is None:
            self._detector = load_detector(self.weights, text_model=self.text_model, vision_model=self.vision_model)[0]
        return self._detector

    def sources(self) -> dict:
        """Where the embeddings came from, for the note."""
        return {key: value for key, value in (("text_model", self.text_source), ("vision_model", self.vision_source))
                if value is not None}
