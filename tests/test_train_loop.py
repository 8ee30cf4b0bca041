"""End-to-end training on a tiny synthetic set: checkpoints in the official layout, logs, report, NaN guard, errors."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from test_train_support import make_synth, run_cli, tiny_config, write_yaml

from yoloworld.data.eval_dataset import collate
from yoloworld.engine.train_config import build_train_config
from yoloworld.engine.trainer import Trainer, train
from yoloworld.errors import DatasetError, TrainingDiverged
from yoloworld.models.checkpoint import load_detector, read_checkpoint


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_synth(tmp_path_factory.mktemp("synth"))


@pytest.fixture(autouse=True)
def private_text_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOWORLD_CACHE", str(tmp_path / "cache"))


def test_run_writes_official_checkpoints_logs_and_report(coco, tmp_path):
    config = build_train_config(data=tiny_config(coco, tmp_path / "run", tensorboard=True))
    trainer = Trainer(config)
    summary = trainer.fit()
    run = tmp_path / "run"
    assert not trainer.dataset.use_mosaic  # the close-mosaic switch happened for the last epoch

    checkpoint = read_checkpoint(run / "best.pth")  # weights_only load, official {'meta', 'state_dict'} layout
    raw = torch.load(run / "last.pth", map_location="cpu", weights_only=True)
    assert set(raw) == {"meta", "state_dict", "class_embeddings"}
    meta = checkpoint["meta"]["yoloworld"]
    assert meta["classes"][0] == ["red circle"] and meta["padded"] and meta["epoch"] in (1, 2)
    assert checkpoint["class_embeddings"].shape == (10, 512)  # 9 classes + the padding prompt
    # every key and shape loads strictly, the text tower rebuilt from the stored text config (no --text-model)
    model, _ = load_detector(run / "best.pth")
    assert model.text_model.model.config.hidden_size == meta["text_config"]["hidden_size"]
    ema = trainer.ema.module.state_dict()
    assert all(torch.equal(raw["state_dict"][k], ema[k].cpu()) for k in ema)  # last.pth holds the EMA weights

    lines = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if "loss" in line]
    val_lines = [line for line in lines if "coco/bbox_mAP_50" in line]
    assert len(train_lines) == summary["iterations"] == 2 * trainer.iters_per_epoch
    assert {"loss_cls", "loss_bbox", "loss_dfl", "lr", "grad_norm"} <= set(train_lines[0])
    assert [line["epoch"] for line in val_lines] == [1, 2]
    assert summary["best_epoch"] in (1, 2) and summary["effective_weight_decay"] == pytest.approx(0.05 * 2 / 64)
    assert (run / "losses.png").stat().st_size > 1000 and (run / "map.png").stat().st_size > 1000
    assert "coco/bbox_mAP_50" in (run / "best_epoch.txt").read_text()
    assert any((run / "tensorboard").iterdir())
    assert (run / "config.yaml").exists()


def test_a_second_run_never_overwrites_the_first(coco, tmp_path):
    data = tiny_config(coco, tmp_path / "exp", schedule={"epochs": 1})
    train(build_train_config(data=data))
    second = train(build_train_config(data=data, overrides=["amp=bf16"]))  # CPU mixed precision
    assert (tmp_path / "exp" / "last.pth").exists() and (tmp_path / "exp2" / "last.pth").exists()
    assert second["skipped_steps"] == 0


class FlakyLoss:
    """The real loss, but NaN on chosen calls (a diverging batch)."""

    def __init__(self, loss, bad_calls):
        self.loss, self.bad_calls, self.calls = loss, set(bad_calls), 0

    def __call__(self, *args, **kwargs):
        parts = self.loss(*args, **kwargs)
        self.calls += 1
        if self.calls in self.bad_calls or "all" in self.bad_calls:
            parts["loss_cls"] = parts["loss_cls"] * float("nan")
        return parts


def test_nan_steps_are_skipped_and_counted(coco, tmp_path):
    config = build_train_config(data=tiny_config(coco, tmp_path / "run", schedule={"epochs": 1}, ema={"enabled": True}))
    trainer = Trainer(config)
    trainer.loss = FlakyLoss(trainer.loss, {2, 3})
    summary = trainer.fit()
    assert summary["skipped_steps"] == 2
    assert trainer.ema.steps == trainer.iters_per_epoch - 2  # the EMA saw only good steps
    assert all(torch.isfinite(v).all() for v in trainer.ema.module.state_dict().values() if v.is_floating_point())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_too_many_bad_steps_stop_with_a_clear_message(coco, tmp_path):
    config = build_train_config(data=tiny_config(coco, tmp_path / "run", max_bad_steps=3))
    trainer = Trainer(config)
    trainer.loss = FlakyLoss(trainer.loss, {"all"})
    with pytest.raises(TrainingDiverged, match="3 steps in a row with a NaN/inf loss") as error:
        trainer.fit()
    assert "\n" not in str(error.value)


def test_batches_feed_the_loss_the_official_way(coco, tmp_path):
    trainer = Trainer(build_train_config(data=tiny_config(coco, tmp_path / "run")))
    batch = collate([trainer.dataset[i] for i in range(2)])
    text = trainer.texts(batch["texts"])
    assert text.shape == (2, 10, 512)
    assert torch.allclose(text.norm(dim=-1), torch.ones(2, 10), atol=1e-5)
    padding = batch["texts"][0].index("")
    assert torch.allclose(text[0, padding], trainer.texts.encode([""])[0])
    losses, grad_norm = trainer._train_step(batch)
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_dfl"} and math.isfinite(grad_norm)


def test_missing_and_empty_datasets_are_one_line_errors(coco, tmp_path):
    data = tiny_config(coco, tmp_path / "run")
    data["data"]["train"][0]["ann"] = str(tmp_path / "nope.json")
    result = run_cli("train", str(write_yaml(tmp_path / "missing.yaml", data)))
    assert result.returncode == 2 and "nope.json: not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    empty = json.loads((coco / "annotations.json").read_text())
    empty["images"], empty["annotations"] = [], []
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    data["data"]["train"][0]["ann"] = str(tmp_path / "empty.json")
    with pytest.raises(DatasetError, match="empty"):
        Trainer(build_train_config(data=data))


def test_a_training_set_without_boxes_warns_at_the_start(coco, tmp_path, caplog):
    """Zero boxes train without an error, the box losses stay 0: the user must hear it before waiting for a run."""
    unlabelled = json.loads((coco / "annotations.json").read_text())
    unlabelled["annotations"] = []
    (tmp_path / "unlabelled.json").write_text(json.dumps(unlabelled))
    data = tiny_config(coco, tmp_path / "run")
    data["data"]["train"][0]["ann"] = str(tmp_path / "unlabelled.json")
    with caplog.at_level(logging.WARNING, logger="yoloworld"):
        Trainer(build_train_config(data=data))
    warnings = [r.getMessage() for r in caplog.records if "no boxes" in r.getMessage()]
    assert len(warnings) == 1 and "unlabelled.json" in warnings[0] and "data check" in warnings[0], warnings


def test_training_reports_the_problems_data_check_reports(coco, tmp_path, caplog):
    """Bad boxes (strings, NaN, infinite) and a repeated image id are dropped as `data check` drops them, and the
    run says so at its start instead of training on silently."""
    data_file = json.loads((coco / "annotations.json").read_text())
    data_file["annotations"][0]["bbox"] = ["a", 1, 2, 3]
    data_file["annotations"][1]["bbox"] = [float("nan"), 1, 2, 3]
    data_file["annotations"][2]["bbox"] = [1, 1, float("inf"), 3]
    data_file["images"].append(dict(data_file["images"][0]))  # a repeated image id
    (tmp_path / "bad.json").write_text(json.dumps(data_file))
    data = tiny_config(coco, tmp_path / "run")
    data["data"]["train"][0]["ann"] = str(tmp_path / "bad.json")
    with caplog.at_level(logging.WARNING, logger="yoloworld"):
        Trainer(build_train_config(data=data))
    summary = [r.getMessage() for r in caplog.records if "problems:" in r.getMessage()]
    assert len(summary) == 1, [r.getMessage() for r in caplog.records]
    assert "3 bad box (box dropped)" in summary[0] and "1 duplicate image id (image skipped)" in summary[0]


def test_an_epoch_ending_in_nan_losses_stops_the_run_before_its_weights_are_saved(coco, tmp_path):
    """A run whose loss turns NaN for good (a learning rate far too high) stops at the epoch's end, even when the
    epoch is shorter than the bad-step limit, and writes no weights of that epoch."""
    config = build_train_config(data=tiny_config(coco, tmp_path / "run", schedule={"epochs": 1}))
    trainer = Trainer(config)
    assert trainer.iters_per_epoch < config.max_bad_steps
    trainer.loss = FlakyLoss(trainer.loss, set(range(2, 1000)))
    with pytest.raises(TrainingDiverged, match="training diverged: its last \\d+ steps had a NaN/inf loss") as error:
        trainer.fit()
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / "last.pth").exists()
