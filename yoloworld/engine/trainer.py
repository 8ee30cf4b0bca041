"""The training loop: data -> model -> YOLO-World loss -> AdamW/SGD with the official groups and schedule, EMA,
AMP, gradient clipping, NaN/inf guard, validation, checkpoints and exact resume; DDP under torchrun."""

from __future__ import annotations

import contextlib
import logging
import math
import shlex
import time
from pathlib import Path

import torch
import yaml

from yoloworld.engine.loss import YOLOWorldLoss
from yoloworld.errors import ConfigError, RunComplete, TrainingDiverged
from yoloworld.models.checkpoint import TEXT_PREFIX, VISION_PREFIX

from . import distributed as dist_utils
from .batches import (
    ClassIndexLabels,
    TextBatcher,
    build_training_set,
    dataset_configs,
    read_val_source,
    train_loader,
    vocabulary_of,
)
from .ema import ModelEMA
from .feedback import InterruptNotice, Progress, RunningMeans, ScalarLog, TensorBoard, describe_run, interrupt_notice
from .image_prompts import image_prompt_parts
from .keep import AnchorDecay, SelfDistillation, distilled_texts
from .modes import build_training_model
from .optim import (
    LRSchedule,
    build_optimizer,
    clip_gradients,
    effective_weight_decay,
)
from .run_summary import format_summary, write_report
from .run_weights import WeightsWriter
from .state import STATE_FILE, fresh_out_dir, load_resume_state, restore_run, save_run
from .train_config import TrainConfig, config_to_dict
from .validate import RunScoring
from .wise_ft import run_wise_ft

logger = logging.getLogger(__name__)


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False):
        self.config = config
        self.info = dist_utils.init_distributed(config.device)
        self.device = self.info.device
        self.autocast = autocast_factory(config.amp, self.device)
        datasets = dataset_configs(config)  # missing paths fail before anything is written
        self.out = self._out_dir(resume)
        saved = load_resume_state(self.out) if resume else None  # checked before the slow setup
        if saved is not None and saved["epoch"] >= config.schedule.epochs:
            raise RunComplete(f"{self.out} is complete ({saved['epoch']} of {config.schedule.epochs} epochs): nothing "
                              f"to resume; to train it further, raise its epoch count: yoloworld train --resume "
                              f"{shlex.quote(str(self.out))} schedule.epochs=N (N > {saved['epoch']})")
        val_source, classes = self._setup_data(*datasets)
        torch.manual_seed(config.seed)  # the same initial weights in every process
        built = build_training_model(config, classes)
        self.model = built.model.to(self.device)
        if config.sync_bn and self.info.enabled:
            if self.device.type == "cuda":
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            elif self.info.is_main:
                logger.warning("warning: sync_bn needs CUDA (PyTorch's SyncBatchNorm); on CPU every process keeps "
                               "its own BatchNorm statistics")
        self.model.train()
        self.optimizer = build_optimizer(self.model, config.optim, self.info.world_size)
        self.anchor = AnchorDecay(self.optimizer, config.keep.l2sp) if config.keep.l2sp else None
        self.distill = None
        if config.keep.distill:  # built before a resume state is loaded: the teacher is the starting model
            texts = distilled_texts(config, self.retain_source and self.retain_source.class_texts, self.taught)
            self.distill = SelfDistillation.build(config, self.model, classes, texts, self.device)
        self.frozen_keys = {k for k, v in self.model.named_parameters() if k.startswith((TEXT_PREFIX, VISION_PREFIX))
                            and not v.requires_grad}  # frozen towers are rebuilt, not stored in resume states
        self.ema = ModelEMA(self.model, config.ema.momentum, config.ema.gamma) if config.ema.enabled else None
        self.scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" else None
        self.loss = YOLOWorldLoss()
        self.texts = None if self.fixed_vocabulary else TextBatcher(self.model, self.device)
        self.iters_per_epoch = dist_utils.GlobalBatchSampler.batches_per_epoch(
            len(self.dataset), config.optim.batch_size, self.info.world_size)
        self.schedule = LRSchedule.from_config(config.optim, config.schedule, self.iters_per_epoch)
        self.has_val = val_source is not None
        self.scoring = RunScoring(config, val_source, self.retain_source) if val_source and self.info.is_main else None
        self.prompt_boxes, self.references = image_prompt_parts(config, self.dataset, self.scoring and
                                                                self.scoring.val, self.model)
        self.weights = WeightsWriter(self.out, built, self.texts, config_to_dict(config))
        self.epoch = self.batch = self.step = 0
        self.saved_at = None  # (epoch, batch, step) of the last resume state written
        self.saving = None  # while a save is being written: ((epoch, batch, step), file names)
        self.progress = {"best": None, "best_epoch": None, "skipped_steps": 0, "bad_in_a_row": 0}
        if saved is not None:
            restore_run(self, saved)
            if self.info.is_main:
                logger.info("resuming %s at epoch %d, iteration %d (step %d)", self.out, self.epoch + 1, self.batch,
                            self.step)
        self.network = self._wrap_ddp()
        self.last_save = time.time()
        if self.info.is_main:
            describe_run(self, built.source)

    # ------------------------------------------------------------------ setup helpers
    def _setup_data(self, train_sets, val_sets):
        """The training set (and, for fixed-vocabulary models, the label mapping); returns (val source, classes)."""
        config = self.config
        val_source = read_val_source(val_sets, config.model.segment)
        self.dataset = build_training_set(config, train_sets, config.data.num_texts)
        classes = vocabulary_of(self.dataset, val_source)
        self.retain_source = read_val_source([config.keep.retain]) if config.keep.retain else None
        # the texts the fine-tuning labels teach (keep.mix data, drawn per epoch, is not fine-tuning data)
        self.taught = {text for source, drawn in zip(self.dataset.sources, self.dataset.per_epoch) if drawn is None
                       for synonyms in source.class_texts for text in synonyms}
        if self.retain_source is not None and self.info.is_main:
            shared = [group[0] for group in self.retain_source.class_texts if self.taught & set(group)]
            if shared:
                logger.warning("warning: keep.retain holds classes the training data labels (%s): their AP is not a "
                               "zero-shot score", ", ".join(shared[:5]))
        self.fixed_vocabulary = config.model.mode in ("prompt", "rep")
        if self.fixed_vocabulary:
            if not classes or any(source.class_texts != classes for source in self.dataset.sources):
                raise ConfigError(f"model.mode={config.model.mode} has one fixed vocabulary: every training set "
                                  "must be a detection dataset with the same class list (no grounding data)")
            self.dataset.num_texts = len(classes)  # every class in every image, no padding: labels = columns
            self.class_labels = ClassIndexLabels(classes)
        return val_source, classes

    def _out_dir(self, resume: bool) -> Path:
        out = Path(self.config.out)
        if self.info.is_main and not resume:
            out = fresh_out_dir(out)
            out.mkdir(parents=True, exist_ok=True)
        out = Path(dist_utils.all_gather_objects(str(out), self.info)[0])
        if self.info.is_main:
            config = config_to_dict(self.config)
            config["out"] = str(out)
            (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return out

    def _wrap_ddp(self):
        if not self.info.enabled:
            return self.model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        started = time.time()
        main = self.info.is_main
        self.scalars = ScalarLog(self.out, self.step if self.step else None) if main else None
        self.board = TensorBoard(self.out, self.config.tensorboard and main, self.step or None)
        bar = Progress(main, self.schedule.total_iters, self.step)
        try:
            if self.step == 0 and self.config.keep.retain:
                self._validate(epoch=0)  # the starting point: what fine-tuning may lose
            with InterruptNotice(main, lambda: interrupt_notice(self)):
                while self.epoch < self.config.schedule.epochs:
                    self._train_epoch(bar)
                    self._end_epoch()
            sync = dist_utils.max_param_difference(self.model, self.info)
        finally:
            self.board.close()
        summary = {}
        if main:
            extra = {"wall_time_s": round(time.time() - started, 1), "skipped_steps": self.progress["skipped_steps"],
                     "world_size": self.info.world_size, "max_param_difference_between_processes": sync,
                     "effective_weight_decay": effective_weight_decay(self.config.optim, self.info.world_size)}
            if self.config.keep.wise_ft:
                extra["wise_ft"] = run_wise_ft(self.out, self.config, self.scoring, self.device)
            summary = write_report(self.out, self.config.eval.metric, extra, self.config.keep.compare_to)
            wise = self.out / "wise_ft.pth" if self.config.keep.wise_ft else None  # the chosen mix is what ships
            self.weights.deploy(self.config.checkpoint, self.ema_or_model(), wise)
            print(format_summary(summary, self.out))
        dist_utils.barrier(self.info)
        return summary

    def _train_epoch(self, bar: Progress) -> None:
        config, epoch = self.config, self.epoch
        self.dataset.set_epoch(epoch, config.schedule.epochs)
        if self.batch == 0 and epoch == config.schedule.epochs - config.data.augment.close_mosaic_epochs and \
                self.info.is_main and config.data.augment.mosaic_prob > 0:
            logger.info("epoch %d: mosaic off for the last %d epochs", epoch + 1,
                        config.data.augment.close_mosaic_epochs)
        self.model.train()
        loader = train_loader(self.dataset, config.optim.batch_size, self.info, config.seed, epoch, self.batch,
                              config.data.workers, self.device.type == "cuda")
        bar.start_epoch(epoch, config.schedule.epochs, self.iters_per_epoch, self.batch)
        means = RunningMeans()
        tick = time.time()
        for batch in loader:
            data_time = time.time() - tick
            lr = self.schedule.apply(self.optimizer, self.step, epoch)
            losses, grad_norm = self._train_step(batch)
            self.batch += 1
            self.step += 1
            means.add(losses)
            bar.update(self.step, losses, lr)
            if self.info.is_main and (self.step % config.log_every == 0 or self.batch == self.iters_per_epoch):
                self._log_train(means.means(), lr, grad_norm, data_time, time.time() - tick)
                means.reset()
            if self.batch < self.iters_per_epoch and self._save_due():
                save_run(self)
            tick = time.time()
        bar.end_epoch()

    def _train_step(self, batch: dict) -> tuple[dict, float]:
        images = batch["images"].to(self.device, non_blocking=True).float().div_(255)
        targets = batch["bboxes_labels"]
        if self.fixed_vocabulary:
            targets, text = self.class_labels(targets, batch["texts"]), None
        else:
            text = self.texts(batch["texts"])
        if self.distill is not None:
            text = self.distill.extend(text, self.texts.encode)
        prompts = self.prompt_boxes(targets, len(images)) if self.prompt_boxes else None
        with self.autocast():
            cls_logits, reg_logits, *seg = self.network(images, text, prompts)
            distill = None if self.distill is None else self.distill.loss(images, text, cls_logits,
                                                                          self.info.world_size)
        if distill is not None:  # the distilled columns are not the detection loss's business
            cls_logits = [m[:, :-len(self.distill.texts)] for m in cls_logits]
        masks = {}
        if seg:  # segmentation: coefficients, prototypes and the instance masks of the batch
            masks = {"coeffs": seg[0], "protos": seg[1], "gt_masks": batch["masks"].to(self.device, non_blocking=True)}
        parts = self.loss(cls_logits, reg_logits, targets.to(self.device), world_size=self.info.world_size, **masks)
        if distill is not None:
            parts["loss_distill"] = distill
        total = sum(parts.values())
        self.optimizer.zero_grad(set_to_none=True)
        # every process runs backward even on a bad loss: the all-reduce spreads NaN, so all skip together
        (self.scaler.scale(total) if self.scaler else total).backward()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = clip_gradients(self.model.parameters(), self.config.optim.grad_clip)
        finite = math.isfinite(grad_norm) and bool(torch.isfinite(total.detach()))
        if self.scaler and not finite and bool(torch.isfinite(total.detach())):
            self.scaler.step(self.optimizer)  # fp16 overflow: the scaler skips the step and lowers its scale
            self.scaler.update()
            return _values(parts), grad_norm
        if not finite:
            self._bad_step()
            return _values(parts), grad_norm
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.anchor is not None:
            self.anchor.step()
        self.progress["bad_in_a_row"] = 0
        if self.ema is not None:
            self.ema.update(self.model)
        return _values(parts), grad_norm

    def _bad_step(self) -> None:
        """Skip the update (the EMA is not poisoned); stop after too many in a row."""
        self.progress["skipped_steps"] += 1
        self.progress["bad_in_a_row"] += 1
        if self.progress["bad_in_a_row"] >= self.config.max_bad_steps:
            raise TrainingDiverged(
                f"training diverged: {self.progress['bad_in_a_row']} steps in a row with a NaN/inf loss or gradient "
                f"(epoch {self.epoch + 1}, iteration {self.batch + 1}); lower optim.lr, try amp=none, or check the "
                f"data with `yoloworld data check`; the last good state is in {self.out / STATE_FILE}")
        if self.info.is_main:
            logger.warning("warning: NaN/inf loss or gradient at step %d: update skipped (%d so far)", self.step + 1,
                           self.progress["skipped_steps"])

    def _check_not_diverged(self) -> None:
        """Never save weights that a run has broken: NaN/inf weights, or an epoch ending in NaN/inf steps (a huge
        learning rate can leave finite weights whose every loss is NaN; the bad-step guard may not have fired yet
        in a short epoch)."""
        bad = next((name for name, p in self.ema_or_model().named_parameters() if not torch.isfinite(p).all()), None)
        ending_bad = self.progress["bad_in_a_row"] >= min(3, self.config.max_bad_steps)
        if bad is not None or ending_bad:
            what = f"weight {bad} became NaN/inf" if bad else f"its last {self.progress['bad_in_a_row']} steps had a NaN/inf loss"
            raise TrainingDiverged(f"training diverged: {what} by step {self.step} (epoch {self.epoch + 1}); lower "
                                   "optim.lr or check the data (yoloworld data check); no weights of this epoch were "
                                   "saved")

    def _log_train(self, means: dict, lr: float, grad_norm: float, data_time: float, iter_time: float) -> None:
        record = {"step": self.step, "epoch": self.epoch + 1, "iter": self.batch, "lr": lr,
                  "loss": sum(means.values()), **means, "grad_norm": grad_norm if math.isfinite(grad_norm) else None,
                  "time": round(iter_time, 4), "data_time": round(data_time, 4)}
        self.scalars.write(record)
        self.board.scalars({f"train/{k}": v for k, v in record.items() if v is not None}, self.step)

    # ------------------------------------------------------------------ epochs, validation, checkpoints
    def _end_epoch(self) -> None:
        self._check_not_diverged()
        metrics = self._validate() if self._validation_due() else None
        epoch_files = None
        if self.info.is_main:
            improved = metrics is not None and (self.progress["best"] is None or
                                                metrics[self.config.eval.metric] > self.progress["best"])
            if improved:
                self.progress["best"] = metrics[self.config.eval.metric]
                self.progress["best_epoch"] = self.epoch + 1
            epoch_files = self.weights.epoch_files(self.ema_or_model(), self.epoch + 1, self.step, metrics, improved,
                                                   self.config.checkpoint.every_epochs)
        self.progress = dist_utils.all_gather_objects(self.progress, self.info)[0]
        self.epoch, self.batch = self.epoch + 1, 0
        save_run(self, epoch_files)  # the epoch's weights and the resume state: one unit

    def _validation_due(self) -> bool:
        if not self.has_val:
            return False
        epoch, epochs = self.epoch + 1, self.config.schedule.epochs
        closed = self.epoch >= epochs - self.config.data.augment.close_mosaic_epochs
        interval = self.config.eval.interval_last if closed else self.config.eval.interval
        return epoch == epochs or epoch % interval == 0

    def _validate(self, epoch: int | None = None) -> dict | None:
        """Score the EMA model on the val set (and the retained vocabulary); `epoch` 0 is the starting model."""
        metrics = None
        if self.scoring is not None:
            model = self.ema_or_model()
            was_training = model.training
            model.eval()
            encode = None if self.texts is None else self.texts.encode
            if self.references is not None:  # image-prompt runs are scored prompted by training crops
                encode = self.references.encoder(model, encode)
            metrics = self.scoring(model, self.device, self.fixed_vocabulary, encode, self.autocast,
                                   self.epoch + 1 if epoch is None else epoch, self.step, self.scalars, self.board)
            model.train(was_training)
        dist_utils.barrier(self.info)
        return metrics

    def ema_or_model(self):
        return self.ema.module if self.ema is not None else self.model

    def _save_due(self) -> bool:
        every = self.config.checkpoint
        due = bool(every.every_iters and self.step % every.every_iters == 0)
        due = due or bool(every.every_minutes and time.time() - self.last_save >= every.every_minutes * 60)
        return dist_utils.broadcast_flag(due, self.info)


def _values(parts: dict) -> dict:
    return {k: float(v.detach()) for k, v in parts.items()}


def autocast_factory(amp: str, device: torch.device):
    if amp == "none":
        return contextlib.nullcontext
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp=fp16 needs a CUDA device; use amp=bf16 on CPU (or amp=none)")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def train(config: TrainConfig, resume: bool = False) -> dict:
    try:
        return Trainer(config, resume).fit()
    except RunComplete as done:
        logger.info("%s", done)
        return {}
    finally:
        dist_utils.cleanup()


__all__ = ["Trainer", "TrainingDiverged", "RunComplete", "train", "autocast_factory", "fresh_out_dir"]
