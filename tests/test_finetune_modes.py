"""Every fine-tuning mode end to end for a few iterations: normal, efficient, prompt, rep (tutorial chapter 4)."""

from __future__ import annotations

import pytest
import torch
from test_train_support import (
    finetune_config,
    make_base_checkpoint,
    make_embeddings,
    make_synth,
    run_cli,
    write_yaml,
)

from yoloworld.api import YOLOWorld
from yoloworld.engine.train_config import build_train_config
from yoloworld.engine.trainer import Trainer
from yoloworld.errors import CheckpointError
from yoloworld.models.checkpoint import read_checkpoint
from yoloworld.models.reparam import reparameterize_checkpoint

ONE_EPOCH = {"epochs": 1, "warmup_min_iters": 1, "warmup_epochs": 0.0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    return (make_synth(root / "synth", images=8), make_base_checkpoint(root / "base.pt"),
            make_embeddings(root / "emb.npy", 9))


@pytest.fixture(autouse=True)
def private_text_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOWORLD_CACHE", str(tmp_path / "cache"))


def fit(config_data: dict) -> Trainer:
    trainer = Trainer(build_train_config(data=config_data))
    trainer.fit()
    return trainer


def test_normal_fine_tuning_starts_from_the_checkpoint(setup, tmp_path):
    coco, base, _ = setup
    before = read_checkpoint(base)["state_dict"]
    trainer = Trainer(build_train_config(data=finetune_config(coco, tmp_path / "run", "normal", base,
                                                              schedule=ONE_EPOCH)))
    loaded = trainer.model.state_dict()
    assert all(torch.equal(loaded[k], before[k]) for k in before)  # every weight, text tower included
    assert not any(p.requires_grad for p in trainer.model.text_model.parameters())  # CLIP stays frozen
    trainer.fit()
    assert read_checkpoint(tmp_path / "run" / "last.pth")["meta"]["yoloworld"]["mode"] == "normal"


def test_efficient_neck_drops_the_text_path(setup, tmp_path):
    coco, base, _ = setup
    trainer = Trainer(build_train_config(data=finetune_config(coco, tmp_path / "run", "efficient", base,
                                                              schedule=ONE_EPOCH)))
    assert trainer.model.config.neck_block == "efficient"
    before = read_checkpoint(base)["state_dict"]
    loaded = trainer.model.state_dict()
    dropped = {k for k in before if ".attn_block.guide_fc." in k or k.endswith(".attn_block.bias")}
    assert dropped and not dropped & set(loaded)
    assert all(torch.equal(loaded[k], before[k]) for k in before if k not in dropped)  # the rest loads as is
    trainer.fit()
    state = read_checkpoint(tmp_path / "run" / "last.pth")["state_dict"]
    assert not any(".attn_block.guide_fc." in k for k in state)


def test_prompt_tuning_trains_only_the_prompts(setup, tmp_path):
    coco, base, embeddings = setup
    trainer = fit(finetune_config(coco, tmp_path / "run", "prompt", base, embeddings, schedule=ONE_EPOCH,
                                  optim={"lr": 0.01, "batch_size": 2}))
    before = read_checkpoint(base)["state_dict"]
    after = read_checkpoint(tmp_path / "run" / "last.pth")["state_dict"]
    frozen = [k for k in before if not k.startswith("backbone.text_model.")]
    assert all(torch.equal(after[k], before[k]) for k in frozen)  # weights and BatchNorm statistics untouched
    initial = torch.nn.functional.normalize(torch.from_numpy(__import__("numpy").load(embeddings)), dim=-1)
    assert not torch.allclose(after["embeddings"], initial)
    assert trainer.dataset.num_texts == 9
    model = YOLOWorld.from_pretrained(tmp_path / "run" / "last.pth", imgsz=64)  # predict-ready, no text model
    assert model.class_names == ["red circle", "red square", "red triangle", "green circle", "green square",
                                 "green triangle", "blue circle", "blue square", "blue triangle"]
    result = model.predict(str(next((coco / "images").iterdir())), conf=0.0)[0]
    assert len(result.scores) > 0


def test_reparameterized_fine_tuning(setup, tmp_path):
    coco, base, embeddings = setup
    fit(finetune_config(coco, tmp_path / "run", "rep", base, embeddings, schedule=ONE_EPOCH))
    saved = read_checkpoint(tmp_path / "run" / "last.pth")
    assert saved["state_dict"]["bbox_head.head_module.cls_contrasts.0.conv.weight"].shape[0] == 9
    assert not any("text_model" in k or "guide_fc" in k for k in saved["state_dict"])
    assert YOLOWorld.from_pretrained(tmp_path / "run" / "last.pth", imgsz=64).class_names[0] == "red circle"
    # a checkpoint already written by `yoloworld reparam` trains without embeddings
    folded = tmp_path / "folded.pt"
    from yoloworld.models.prompt import read_embeddings

    reparameterize_checkpoint(base, folded, read_embeddings(embeddings)[0])
    fit(finetune_config(coco, tmp_path / "again", "rep", folded, schedule=ONE_EPOCH))
    assert (tmp_path / "again" / "last.pth").exists()


def test_class_count_disagreeing_with_the_checkpoint_is_a_one_line_error(setup, tmp_path):
    coco, base, _ = setup
    wrong = make_embeddings(tmp_path / "five.npy", 5)
    with pytest.raises(CheckpointError, match="holds 5 classes but the training set has 9"):
        Trainer(build_train_config(data=finetune_config(coco, tmp_path / "run", "prompt", base, wrong)))
    config = write_yaml(tmp_path / "rep.yaml", finetune_config(coco, tmp_path / "run2", "rep", base, wrong))
    result = run_cli("train", str(config))
    assert result.returncode == 2 and "holds 5 classes but the training set has 9" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error")]) == 1


def test_fine_tuning_an_official_checkpoint_gives_files_the_loaders_read(fixtures, tmp_path):
    """Official mmengine .pth (with its CLIP text tower) -> 1 epoch of training -> best.pth that load_detector and
    YOLOWorld.from_pretrained read like an official file, vocabulary included."""
    coco = make_synth(tmp_path / "synth", images=8)
    data = finetune_config(coco, tmp_path / "run", "normal", fixtures / "v2_n.pth", schedule=ONE_EPOCH)
    data["model"]["text_model"] = str(fixtures / "tiny-clip")
    fit(data)
    from yoloworld.models.checkpoint import load_detector

    model, checkpoint = load_detector(tmp_path / "run" / "best.pth", text_model=fixtures / "tiny-clip")
    official = read_checkpoint(fixtures / "v2_n.pth")["state_dict"]
    assert set(checkpoint["state_dict"]) == set(official)  # the official key layout, text tower included
    api = YOLOWorld.from_pretrained(tmp_path / "run" / "best.pth", text_model=fixtures / "tiny-clip", imgsz=64)
    assert api.class_names[:2] == ["red circle", "red square"]
    assert len(api.predict(str(next((coco / "images").iterdir())), conf=0.0)[0].scores) > 0
