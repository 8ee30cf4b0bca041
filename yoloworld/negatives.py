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
    scores = scores.clone()
    for image, vocabulary in enumerate(vocabularies):
        columns = vocabulary.negative_columns()
        if columns.start == columns.stop:
            continue
        claimed = scores[image, :, columns].amax(dim=-1, keepdim=True)
        positives = scores[image, :, :columns.start]
        scores[image, :, :columns.start] = torch.where(positives >= claimed, positives, torch.zeros_like(positives))
    return (scores, *rest)
