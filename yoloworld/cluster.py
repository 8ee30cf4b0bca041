"""Running on Ray (`yoloworld serve`, `yoloworld label --ray`): what each worker loads, and starting or joining Ray.

Ray's workers are other processes, on this machine or on other nodes: they get a `ModelSpec` (plain values) and
load the model themselves through `yoloworld.load`, so every weights format works there as here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    """The model a worker loads and the vocabulary it sets (None: the one stored with the weights)."""

    weights: str
    device: str = "auto"
    imgsz: int | None = None
    text_model: str | None = None
    vision_model: str | None = None  # encodes --visual-prompt references
    classes: list | None = None
    negatives: str | None = None  # --negative's texts

    @classmethod
    def from_args(cls, args) -> "ModelSpec":
        """The model flags of a command; local paths made absolute (Ray's workers do not start in this folder)."""
        from yoloworld.cli.common import chosen_classes

        def absolute(path: str | None) -> str | None:
            return str(Path(path).resolve()) if path and Path(path).exists() else path

        return cls(absolute(str(args.weights)), args.device, args.imgsz, absolute(args.text_model),
                   absolute(getattr(args, "vision_model", None)), chosen_classes(args), getattr(args, "negative", None))

    def load(self, device: str | None = None):
        """The model with its vocabulary set (`device` overrides the spec's: the driver checks it on the CPU)."""
        from yoloworld.api import load
        from yoloworld.cli.common import apply_vocabulary

        model = load(self.weights, device=device or self.device, imgsz=self.imgsz, text_model=self.text_model,
                     vision_model=self.vision_model, fuse=True)
        return apply_vocabulary(model, self.classes, negatives=self.negatives)


def start_ray(address: str | None, num_cpus: int | None = None, metrics_port: int | None = None) -> None:
    """Join the cluster at `address`, or start a local Ray instance (never an existing one by chance) without its
    dashboard (a web UI on another port); `metrics_port`: where Ray exports its Prometheus metrics."""
    import ray

    options = {"_metrics_export_port": metrics_port} if metrics_port else {}
    if address:
        ray.init(address=address, logging_level=logging.WARNING, **options)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 **options)
