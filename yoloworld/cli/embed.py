"""`yoloworld embed`: class texts -> N x 512 L2-normalised CLIP embeddings (.npy), for prompt tuning,
reparameterization and export. A JSON note next to the file records the classes, the synonym mode and
the text model."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from yoloworld.errors import CheckpointError, InputError
from yoloworld.vocabulary import PADDING_PROMPT, load_class_file, parse_class_string

log = logging.getLogger("yoloworld")

DEFAULT_TEXT_MODEL = "openai/clip-vit-base-patch32"
SYNONYM_MODES = ("mean", "first")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "embed", help="CLIP text embeddings of class texts (.npy) for prompt tuning, reparam and export",
        description="Write one L2-normalised CLIP text embedding per class. Synonyms are averaged and "
        "renormalised (--synonyms mean) or only the first is used (--synonyms first, the official tool).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--classes-file", help="class-text JSON (list of synonym lists) or a .txt, one class per line")
    source.add_argument("--classes", help='comma-separated classes; "|" separates synonyms: "person,car|automobile"')
    parser.add_argument("--text-model", help=f"Hugging Face CLIP folder or id (default {DEFAULT_TEXT_MODEL}, "
                        "or the text tower inside --weights)")
    parser.add_argument("--weights", help="take the text tower from this YOLO-World checkpoint")
    parser.add_argument("--synonyms", choices=SYNONYM_MODES, default="mean",
                        help="several texts per class: average them (mean) or use the first (first)")
    parser.add_argument("--padding", action="store_true",
                        help=f"append the padding prompt {PADDING_PROMPT!r} as a last row (what predict adds)")
    parser.add_argument("--out", required=True, help="output .npy file (folders are created)")
    return parser


def run(args: argparse.Namespace) -> int:
    from yoloworld.models.prompt import write_embeddings
    from yoloworld.models.text import TextEmbeddingCache

    classes = load_class_file(args.classes_file) if args.classes_file else parse_class_string(args.classes)
    if not str(args.out).endswith(".npy"):
        raise InputError(f"{args.out}: the output file must end in .npy")
    encoder, source = text_encoder(args.text_model, args.weights)
    cache = TextEmbeddingCache(encoder)
    embeds = class_embeddings(classes, cache.encode, args.synonyms)
    if args.padding:
        embeds = torch.cat([embeds, cache.encode([PADDING_PROMPT])])
    note = {"classes": classes, "synonyms": args.synonyms, "padded": bool(args.padding), "text_model": source,
            "rows": "one per class, in file order" + (", then the padding prompt" if args.padding else "")}
    path = write_embeddings(args.out, embeds, note)
    print(f"wrote {tuple(embeds.shape)} embeddings to {path} (synonyms: {args.synonyms}); note in "
          f"{path.with_suffix('.json')}")
    return 0


def class_embeddings(classes: list[list[str]], encode, synonyms: str = "mean") -> torch.Tensor:
    """(C, D): per class the first synonym's embedding, or the renormalised mean of all its synonyms."""
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


def text_encoder(text_model: str | None, weights: str | None):
    """The CLIP text encoder and a description of where it came from."""
    from yoloworld.models.text import TextEncoder

    if weights:
        from yoloworld.models.checkpoint import load_detector

        model, _ = load_detector(weights, text_model=text_model)
        if model.text_model is None:
            raise CheckpointError(f"{weights}: holds no text model; pass --text-model instead")
        return model.text_model.eval(), f"{weights} (text tower)"
    name = text_model or DEFAULT_TEXT_MODEL
    return TextEncoder.from_dir(resolve_text_model(name)), name


def resolve_text_model(name: str) -> Path:
    """A local Hugging Face folder, or a hub id fetched once into the hub cache (config, tokenizer, weights)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name.count("/") != 1:
        raise InputError(f"{name}: not a Hugging Face model folder or hub id (e.g. {DEFAULT_TEXT_MODEL})")
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.txt", "*.safetensors"]
        return Path(snapshot_download(name, allow_patterns=patterns,
                                      local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1"))
    except Exception as exc:  # offline or unknown id: say how to get the files
        raise InputError(f"{name}: cannot load the text model ({type(exc).__name__}); download it once with "
                         f"`hf download {name}` or pass --text-model /path/to/folder") from None
