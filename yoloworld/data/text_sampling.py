"""Which texts an image is trained with (official RandomLoadText) and tested with (official LoadText)."""

from __future__ import annotations

import numpy as np

from .records import ClassTexts
from .sample import Sample

PADDING_TEXT = ""  # training pads with '' (the models saw it; inference appends ' ' for the same reason)


def sample_texts(sample: Sample, num_texts: int, rng: np.random.Generator, pad: bool = True,
                 num_negatives: tuple[int, int] | None = None) -> Sample:
    """Keep up to `num_texts` positive classes, add negatives from the vocabulary up to min(classes, num_texts),
    shuffle, pick one random synonym per class, pad with '' to `num_texts`; labels are remapped and boxes whose
    class was cut are dropped ('text_cut').

    `num_negatives` = (low, high) draws the number of negatives, as the official option; None fills up.
    """
    class_texts = sample.class_texts
    positives = np.unique(sample.labels)
    if len(positives) > num_texts:
        positives = rng.choice(positives, size=num_texts, replace=False)
    room = min(len(class_texts), num_texts) - len(positives)
    wanted = room if num_negatives is None else min(room, int(rng.integers(num_negatives[0], num_negatives[1] + 1)))
    negatives = _draw_negatives(len(class_texts), positives, wanted, rng)
    chosen = np.concatenate([positives, negatives]).astype(np.int64)
    rng.shuffle(chosen)

    new_label = np.full(len(class_texts), -1, dtype=np.int64)
    new_label[chosen] = np.arange(len(chosen))
    if len(sample.labels):
        mapped = new_label[sample.labels]
        sample.labels = mapped
        sample.keep(mapped >= 0, "text_cut")
    texts = [_pick_synonym(class_texts[c], rng) for c in chosen.tolist()]
    if pad and len(texts) < num_texts:
        texts += [PADDING_TEXT] * (num_texts - len(texts))
    sample.texts = texts
    return sample


def _draw_negatives(num_classes: int, positives: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    if num_classes <= 4 * count + len(positives):  # small vocabulary: exact draw from the complement
        candidates = np.setdiff1d(np.arange(num_classes), positives, assume_unique=True)
        return rng.choice(candidates, size=count, replace=False)
    taken = set(positives.tolist())  # large vocabulary (LVIS 1203): rejection sampling, no big arrays
    drawn: list[int] = []
    while len(drawn) < count:
        for value in rng.integers(0, num_classes, size=2 * (count - len(drawn))).tolist():
            if value not in taken:
                taken.add(value)
                drawn.append(value)
                if len(drawn) == count:
                    break
    return np.asarray(drawn, dtype=np.int64)


def _pick_synonym(synonyms: list[str], rng: np.random.Generator) -> str:
    return synonyms[0] if len(synonyms) == 1 else synonyms[int(rng.integers(len(synonyms)))]


def first_synonyms(class_texts: ClassTexts) -> list[str]:
    """Test-time texts: the first synonym of every class, no padding (official LoadText)."""
    return [synonyms[0] for synonyms in class_texts]
