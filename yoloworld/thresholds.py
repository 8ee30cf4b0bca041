"""Per-class score thresholds (`yoloworld calibrate` finds them) and how prediction applies them.

A checkpoint stores them beside its vocabulary, by class name (a class's first text): `{"classes": {"red circle":
0.41, ...}, "fallback": 0.3, "target": "f1"}`; a class without one (not in the calibration sample, or a class the
user adds later) gets the fallback. A synonym list shares its class's threshold, found by any of its names.

Prediction selects at the lowest threshold of the vocabulary (one `select` pass, as with a global `conf`), then
drops each detection at or below its own class's threshold (`keep_above`): the same as selecting every class at
its own threshold, since NMS is per class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from yoloworld.errors import CheckpointError
from yoloworld.prompts import prompt_name


@dataclass(frozen=True)
class ClassThresholds:
    per_class: dict[str, float]  # class name -> threshold (a detection is kept when its score is above it)
    fallback: float  # classes without their own threshold
    target: str = "f1"  # what the thresholds were chosen for (`calibrate --target`)

    @classmethod
    def from_meta(cls, stored, source: str = "checkpoint") -> ClassThresholds | None:
        """From a checkpoint's (or an export's) metadata; None where it stores none, one line where malformed."""
        if stored is None:
            return None
        try:
            per_class = {str(name): float(value) for name, value in stored["classes"].items()}
            fallback = float(stored["fallback"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise CheckpointError(f"{source}: malformed metadata (thresholds must be {{'classes': {{name: score}}, "
                                  "'fallback': score}})") from None
        bad = [v for v in (*per_class.values(), fallback) if not (math.isfinite(v) and 0 <= v <= 1)]
        if bad:
            raise CheckpointError(f"{source}: malformed metadata (threshold {bad[0]!r} is not between 0 and 1)")
        return cls(per_class, fallback, str(stored.get("target", "f1")))

    def to_meta(self) -> dict:
        return {"classes": dict(self.per_class), "fallback": self.fallback, "target": self.target}

    def for_classes(self, classes: list[list]) -> list[float]:
        """One threshold per class (a list of synonymous prompts): the first of its names that has one."""
        names = [[prompt_name(prompt) for prompt in group] for group in classes]
        return [next((self.per_class[n] for n in group if n in self.per_class), self.fallback) for group in names]

    def describe(self, classes: list[list], shown: int = 12) -> str:
        """One line naming the thresholds in use (the first `shown` classes)."""
        pairs = [f"{prompt_name(group[0])} {value:.3f}" for group, value in zip(classes, self.for_classes(classes))]
        more = f", ... ({len(pairs)} classes)" if len(pairs) > shown else ""
        return f"calibrated per-class thresholds ({self.target}): {', '.join(pairs[:shown])}{more}"


def keep_above(detections, thresholds: torch.Tensor):
    """`detections` (a `Detections`) without those whose score is not above their class's threshold."""
    keep = detections.scores > thresholds.to(detections.scores.device)[detections.labels]
    if bool(keep.all()):
        return detections
    fields = {name: None if value is None else value[keep] for name, value in vars(detections).items()}
    return type(detections)(**fields)


def per_class_tensors(thresholds: ClassThresholds, vocabularies: list) -> list[torch.Tensor]:
    """(C,) thresholds of each vocabulary."""
    return [torch.tensor(thresholds.for_classes(vocabulary.classes), dtype=torch.float32)
            for vocabulary in vocabularies]
