"""Negative prompts: texts scored with the classes, never reported, that take their boxes away from a class.

    model.set_classes(["dog"], negatives=["wolf", "toy dog"])   # CLI: --classes dog --negative "wolf,toy dog"

The rule: at each prior (anchor, one box), a class score below the best negative score there is zeroed before
selection, so a box the network finds more wolf-like than dog-like is never a "dog" detection. It acts per box
only: a negative does not suppress neighbouring boxes, and it helps only where the model scores the look-alike's
own text higher than the class on that object (a model that cannot tell them apart gains nothing). The negatives
join the texts the text-guided neck attends to, so class scores can shift a little, as with any added class.
"""

from __future__ import annotations

import torch


def suppress_negatives(outputs: tuple, vocabularies: list) -> tuple:
    """Decoded outputs (scores (B, P, T), boxes, ...) with, per image, every class-text score below that prior's
    best negative score set to 0 (negative and padding columns are never reported anyway)."""
    if not any(vocabulary.negatives for vocabulary in vocabularies):
        return outputs
    scores, *rest = outputs
    rows = []
    for image, vocabulary in enumerate(vocabularies):
        columns = vocabulary.negative_columns()
        rows.append(drop_claimed(scores[image], columns.start, columns.stop) if vocabulary.negatives else scores[image])
    return (torch.stack(rows), *rest)


def drop_claimed(scores: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """(..., T) text scores with the class columns before `start` zeroed where the best of the negative columns
    `start:stop` scores higher (out of place: it is also traced into exported graphs)."""
    claimed = scores[..., start:stop].amax(dim=-1, keepdim=True)
    positives = scores[..., :start]
    kept = torch.where(positives >= claimed, positives, torch.zeros_like(positives))
    return torch.cat([kept, scores[..., start:]], dim=-1)
