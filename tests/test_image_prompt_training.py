"""The `image_prompt` recipe end to end on a tiny synthetic set: only the projector trains (official freezing),
the run writes the usual logs and checkpoints with the official `image_prompt_encoder.*` keys, validation is
prompted by training crops, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch
from test_train_support import make_synth, tiny_config

from yoloworld.api import YOLOWorld
from yoloworld.engine.train_config import build_train_config
from yoloworld.engine.trainer import Trainer, train
from yoloworld.models.checkpoint import read_checkpoint
from yoloworld.prompts import VisualPrompt

VISION = {"hidden": 32, "layers": 1, "heads": 2, "image_size": 32, "patch": 8, "seed": 0}


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_synth(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def text_model(coco, tmp_path_factory, monkeypatch_module):
    """A tiny text-conditioned model trained for one epoch: what image-prompt training starts from."""
    run = tmp_path_factory.mktemp("text") / "run"
    train(build_train_config(data=tiny_config(coco, run, schedule={"epochs": 1, "warmup_min_iters": 2,
                                                                   "warmup_epochs": 0.0})))
    return run / "last.pth"


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLOWORLD_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield patch


def image_prompt_config(coco, text_model, out, **sections):
    base = tiny_config(coco, out, **sections)
    base["model"] = {**base["model"], "mode": "image_prompt", "weights": str(text_model), "random_vision": VISION,
                     "image_prompt_min_side": 8.0}
    return base


def test_only_the_projector_trains_and_the_run_saves_official_keys(coco, text_model, tmp_path):
    start = read_checkpoint(text_model)["state_dict"]
    trainer = Trainer(build_train_config(data=image_prompt_config(coco, text_model, tmp_path / "run")))
    assert {n for n, p in trainer.model.named_parameters() if p.requires_grad} == {
        f"image_prompt_encoder.projector.{i}.{kind}" for i in (0, 2) for kind in ("weight", "bias")}
    initial = {k: v.clone() for k, v in trainer.model.image_prompt_encoder.state_dict().items()}
    summary = trainer.fit()
    saved = read_checkpoint(tmp_path / "run" / "last.pth")["state_dict"]
    for key, value in start.items():  # detector and text tower unchanged, BatchNorm statistics included
        assert torch.equal(saved[key], value.float()), key
    moved = [k for k in initial if not torch.equal(saved["image_prompt_encoder." + k], initial[k])]
    assert moved and all(k.startswith("projector.") for k in moved)
    lines = [json.loads(line) for line in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()]
    assert sum("loss" in line for line in lines) == summary["iterations"] == 2 * trainer.iters_per_epoch
    assert [line["epoch"] for line in lines if "coco/bbox_mAP_50" in line] == [1, 2]
    # the trained file predicts with reference images through the projector it learned
    api = YOLOWorld.from_pretrained(tmp_path / "run" / "best.pth", imgsz=64)
    assert api.model.image_prompt_encoder.projector is not None
    records = json.loads((coco / "annotations.json").read_text())
    box = records["annotations"][0]["bbox"]
    image = coco / "images" / next(i["file_name"] for i in records["images"]
                                   if i["id"] == records["annotations"][0]["image_id"])
    api.set_classes(["red circle", VisualPrompt(str(image), box=(box[0], box[1], box[0] + box[2], box[1] + box[3]),
                                                name="example")])
    assert api.predict(str(image), conf=0.001)[0].names == ["red circle", "example"]


def test_validation_is_prompted_by_training_crops(coco, text_model, tmp_path):
    trainer = Trainer(build_train_config(data=image_prompt_config(coco, text_model, tmp_path / "run")))
    texts = trainer.scoring.val.vocabulary.texts
    text_rows = trainer.texts.encode(texts)
    rows = trainer.references.encoder(trainer.model, trainer.texts.encode)(texts)
    with_crops = [texts.index(t) for t, c in trainer.references.class_of_text.items() if c in trainer.references.raw]
    assert with_crops and torch.equal(rows[-1], text_rows[-1])  # the padding prompt keeps its text
    for row in with_crops:
        assert not torch.allclose(rows[row], text_rows[row])


class StopRun(Exception):
    """Stands for a crash right after the first epoch's resume state was written."""


def test_resumed_image_prompt_run_equals_an_uninterrupted_one(coco, text_model, tmp_path, monkeypatch):
    settings = dict(eval={"interval": 5})
    train(build_train_config(data=image_prompt_config(coco, text_model, tmp_path / "full", **settings)))
    end_epoch = Trainer._end_epoch

    def end_epoch_then_crash(self):
        end_epoch(self)
        raise StopRun

    monkeypatch.setattr(Trainer, "_end_epoch", end_epoch_then_crash)
    config = build_train_config(data=image_prompt_config(coco, text_model, tmp_path / "split", **settings))
    with pytest.raises(StopRun):
        train(config)
    monkeypatch.undo()
    state = torch.load(tmp_path / "split" / "last_state.pt", weights_only=True)
    assert state["epoch"] == 1
    assert not any(k.startswith("image_prompt_encoder.image_encoder.") for k in state["model"])  # frozen: rebuilt
    train(config, resume=True)
    ours = read_checkpoint(tmp_path / "split" / "last.pth")["state_dict"]
    reference = read_checkpoint(tmp_path / "full" / "last.pth")["state_dict"]
    for key in reference:
        torch.testing.assert_close(ours[key], reference[key], atol=0, rtol=0, msg=key)


def test_val_prompts_named_categories_by_reference_images(coco, text_model, tmp_path, capsys):
    from test_visual_prompts import save_tower

    from yoloworld.cli import main

    records = json.loads((coco / "annotations.json").read_text())
    first = records["annotations"][0]
    image = coco / "images" / next(i["file_name"] for i in records["images"] if i["id"] == first["image_id"])
    x, y, w, h = first["bbox"]
    name = next(c["name"] for c in records["categories"] if c["id"] == first["category_id"])
    args = ["val", "--weights", str(text_model), "--ann", str(coco / "annotations_val.json"), "--images",
            str(coco / "images"), "--imgsz", "64", "--vision-model", str(save_tower(tmp_path / "tower")),
            "--metrics-json", str(tmp_path / "metrics.json")]
    assert main([*args, "--visual-prompt", f"{name}={image}:{x},{y},{x + w},{y + h}"]) == 0
    assert "AP50" in json.loads((tmp_path / "metrics.json").read_text())
    capsys.readouterr()
    assert main([*args, "--visual-prompt", f"no such class={image}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a category" in err and "\n" not in err


def test_two_processes_train_the_projector_in_sync(coco, text_model, tmp_path):
    from test_ddp import train_in_sync

    config = image_prompt_config(coco, text_model, tmp_path / "ddp", schedule={"epochs": 1, "warmup_min_iters": 1,
                                                                               "warmup_epochs": 0.0})
    summary, _ = train_in_sync(config, tmp_path / "ddp", tmp_path)
    start = read_checkpoint(text_model)["state_dict"]
    saved = read_checkpoint(tmp_path / "ddp" / "last.pth")["state_dict"]
    assert all(torch.equal(saved[k], v.float()) for k, v in start.items())  # frozen in both processes
    assert summary["epochs_validated"] == 1 and "coco/bbox_mAP_50" in summary["best"]  # by the main process alone
