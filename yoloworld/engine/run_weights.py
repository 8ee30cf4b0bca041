"""The weight files of a run: last.pth / best.pth / epoch_N.pth in the official layout, with the vocabulary the
model was trained on (so `yoloworld predict --weights best.pth` needs no --classes), and the deployable copy
(vocabulary baked in, text tower dropped, fp16) that `checkpoint.deploy` asks for."""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict
from pathlib import Path

from yoloworld.errors import CheckpointError
from yoloworld.models.checkpoint import checkpoint_contents, read_checkpoint, save_checkpoint
from yoloworld.models.text import TextEmbeddingCache
from yoloworld.vocabulary import Vocabulary

from .modes import TrainingModel
from .train_config import CheckpointSection

logger = logging.getLogger(__name__)


class WeightsWriter:
    def __init__(self, out: Path, built: TrainingModel, texts, train_config: dict):
        self.out = Path(out)
        self.texts = texts  # TextBatcher of a text model, None for prompt / rep
        self.mode = train_config["model"]["mode"]
        self.imgsz = train_config["data"]["augment"]["image_size"]  # recorded in every file: later commands use it
        self.train_config = train_config
        if built.fixed_vocabulary:  # one column per class: record the first synonyms, so names map 1:1
            self.classes = [[group[0]] for group in built.classes]
            self.padded = built.padded
            self.vocabulary = None
        else:
            self.vocabulary = Vocabulary.build(built.classes) if built.classes else None
            self.classes = self.vocabulary.classes if self.vocabulary else None
            self.padded = bool(self.vocabulary and self.vocabulary.padded)

    def _meta(self, epoch: int, step: int, metrics: dict | None) -> dict:
        meta = {"epoch": epoch, "step": step, "mode": self.mode, "imgsz": self.imgsz,
                "train_config": self.train_config}
        if metrics is not None:
            meta["metrics"] = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        if self.classes:
            meta.update(classes=self.classes, padded=self.padded)
        return meta

    def _entries(self) -> dict:
        if self.vocabulary is None or self.texts is None:
            return {}
        return {"class_embeddings": self.texts.encode(self.vocabulary.texts).detach().float().cpu()}

    def epoch_files(self, model, epoch: int, step: int, metrics: dict | None, improved: bool,
                    every_epochs: int) -> dict[Path, dict]:
        """The weight files an epoch ends with (last.pth, best.pth when it improved, epoch_N.pth when due), to be
        written together with the resume state (`state.write_together`)."""
        contents = checkpoint_contents(model, self._meta(epoch, step, metrics), **self._entries())
        names = ["last.pth"] + (["best.pth"] if improved else [])
        if every_epochs and epoch % every_epochs == 0:
            names.append(f"epoch_{epoch}.pth")
        return {self.out / name: contents for name in names}

    # ------------------------------------------------------------------ resume compatibility
    def resume_meta(self, model) -> dict:
        text = model.text_model
        return {"mode": self.mode, "model_config": asdict(model.config),
                "text_fingerprint": text.fingerprint() if text is not None else None}

    def check_resume_meta(self, stored: dict, model) -> None:
        current = self.resume_meta(model)
        for key, what in (("mode", "model.mode"), ("model_config", "architecture"), ("text_fingerprint", "text model")):
            if stored.get(key) != current[key]:
                raise CheckpointError(f"{self.out}: the saved run used another {what} than this config; resume "
                                      "with the run's own config.yaml (yoloworld train --resume RUN_DIR)")

    # ------------------------------------------------------------------ deployment copy
    def deploy(self, checkpoint: CheckpointSection, template, source: Path | None = None) -> Path | None:
        """Rebuild `source` (default best.pth, else last.pth) into a copy of `template` and save it with the
        vocabulary baked in (class embeddings stored, text tower dropped), the training image size and its
        provenance."""
        if not checkpoint.deploy:
            return None
        if not self.classes:
            raise CheckpointError("checkpoint.deploy: the training data has no class list to bake in")
        if source is None:
            source = self.out / "best.pth" if (self.out / "best.pth").exists() else self.out / "last.pth"
        stored = read_checkpoint(source)
        model = _cpu_copy(template)
        model.load_state_dict(stored["state_dict"])
        entries = {}
        if self.vocabulary is not None and model.text_model is not None:
            entries["class_embeddings"] = TextEmbeddingCache(model.text_model).encode(self.vocabulary.texts)
        meta = {"classes": self.classes, "padded": self.padded,
                "imgsz": self.imgsz, "trained_from": source.name,
                "epoch": stored["meta"].get("yoloworld", {}).get("epoch")}
        save_checkpoint(checkpoint.deploy, model, meta, keep_text_model=False, half=checkpoint.deploy_half, **entries)
        size = Path(checkpoint.deploy).stat().st_size / 2**20
        logger.info("deployable copy of %s (vocabulary baked in, no text tower%s): %s (%.1f MB)", source.name,
                    ", fp16" if checkpoint.deploy_half else "", checkpoint.deploy, size)
        return Path(checkpoint.deploy)


def _cpu_copy(model):
    clone = copy.deepcopy(model).cpu().float()
    if clone.text_model is not None:
        clone.text_model.forget_fingerprint()
    return clone.eval()


__all__ = ["WeightsWriter"]
