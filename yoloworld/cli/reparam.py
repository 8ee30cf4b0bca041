"""`yoloworld reparam`: fold a vocabulary (text embeddings) into a checkpoint; the result needs no text model."""

from __future__ import annotations

import argparse

from yoloworld.config import NECK_MODES
from yoloworld.files import check_output


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reparam", help="fold text embeddings into the neck and head (no text model needed afterwards)",
        description="Write a reparameterized checkpoint with the official key layout: the texts become "
        "`cls_contrasts.i.conv.*` and, in the neck, `guide_convs.h.weight` (--neck conv, as the official "
        "--conv-neck) or `guide_weight` (--neck linear, split per head; the official linear mode is broken).")
    parser.add_argument("--weights", required=True, help="text-conditioned or prompt-tuned checkpoint (v2)")
    parser.add_argument("--embeddings", help="(N, 512) .npy from `yoloworld embed`; optional for a prompt-tuned "
                        "checkpoint, whose prompts are folded")
    parser.add_argument("--neck", choices=NECK_MODES, default="conv", help="layout of the folded neck guides")
    parser.add_argument("--out", required=True, help="output checkpoint (folders are created)")
    return parser


def run(args: argparse.Namespace) -> int:
    from yoloworld.models.prompt import read_embeddings
    from yoloworld.models.reparam import reparameterize_checkpoint

    check_output(args.out, "--out")
    embeds, note = read_embeddings(args.embeddings) if args.embeddings else (None, {})
    model = reparameterize_checkpoint(args.weights, args.out, embeds, args.neck, classes=note.get("classes"),
                                      padded=bool(note.get("padded", False)))
    print(f"wrote {args.out}: {model.config.num_guides} texts folded (neck: {args.neck}); no text model needed")
    return 0
