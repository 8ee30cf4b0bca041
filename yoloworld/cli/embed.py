"""`yoloworld embed`: class texts -> N x 512 L2-normalised CLIP embeddings (.npy), for prompt tuning,
reparameterization and export. A JSON note next to the file records the classes, the synonym mode and
the text model."""

from __future__ import annotations

import argparse

from yoloworld.cli.common import add_class_flags, chosen_classes
from yoloworld.config import DEFAULT_TEXT_MODEL
from yoloworld.errors import CheckpointError, InputError
from yoloworld.files import check_output
from yoloworld.vocabulary import PADDING_PROMPT

SYNONYM_MODES = ("mean", "first")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "embed", help="CLIP text embeddings of class texts (.npy) for prompt tuning, reparam and export",
        description="Write one L2-normalised CLIP text embedding per class. Synonyms are averaged and "
        "renormalised (--synonyms mean) or only the first is used (--synonyms first, the official tool).")
    add_class_flags(parser, parser.add_mutually_exclusive_group(required=True))
    parser.add_argument("--text-model", help=f"Hugging Face CLIP folder or hub id (default {DEFAULT_TEXT_MODEL}, "
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

    if not str(args.out).endswith(".npy"):
        raise InputError(f"--out {args.out}: the output file must end in .npy")
    check_output(args.out, "--out")
    classes = chosen_classes(args)
    encoder, source = text_encoder(args.text_model, args.weights)
    cache = TextEmbeddingCache(encoder)
    embeds = class_embeddings(classes, cache.encode, args.synonyms)
    if args.padding:
        import torch

        embeds = torch.cat([embeds, cache.encode([PADDING_PROMPT])])
    note = {"classes": classes, "synonyms": args.synonyms, "padded": bool(args.padding), "text_model": source,
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
    return TextEncoder.from_pretrained(name), name
