"""Fine-tuning without forgetting: the retained vocabulary is scored in logs, curves and summary, and the four methods
(keep.mix, keep.distill, keep.wise_ft / `yoloworld wise-ft`, keep.l2sp) run end to end on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_support import make_base_checkpoint, run_cli, tiny_config, write_yaml

from yoloworld.api import YOLOWorld
from yoloworld.data.records import DatasetSource, ImageRecord
from yoloworld.data.synth import SynthConfig, synthesize
from yoloworld.data.train_dataset import TrainDataset
from yoloworld.engine.keep import SelfDistillation
from yoloworld.engine.modes import build_training_model
from yoloworld.engine.train_config import build_train_config
from yoloworld.engine.trainer import Trainer
from yoloworld.engine.wise_ft import choose, interpolate
from yoloworld.errors import ConfigError
from yoloworld.models.checkpoint import read_checkpoint

TARGETS = ("red circle", "green square", "blue triangle")
SMALL = {"min_side": 96, "max_side": 128, "max_objects": 3}


def coco_set(root, images, seed, **options):
    synthesize(root, SynthConfig(images=images, seed=seed, **SMALL, **options))
    coco = root / "coco"
    return {"kind": "coco", "ann": str(coco / "annotations.json"), "images": str(coco / "images"),
            "classes_file": str(coco / "class_texts.json")}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("keep")
    others = tuple(name for name in SynthConfig().class_names if name not in TARGETS)
    return {"finetune": coco_set(root / "finetune", 6, 1, only=TARGETS, texture="striped"),
            "val": coco_set(root / "val", 3, 2, only=TARGETS, texture="striped"),
            "retain": coco_set(root / "retain", 3, 3, only=others),
            "mix": coco_set(root / "mix", 4, 4),
            "base": make_base_checkpoint(root / "base.pt")}


@pytest.fixture(autouse=True)
def private_text_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOWORLD_CACHE", str(tmp_path / "cache"))


def keep_config(sets, out, keep: dict, **sections) -> dict:
    config = tiny_config(Path("unused"), out, **sections)  # its dataset paths are replaced below
    config["data"]["train"], config["data"]["val"] = [sets["finetune"]], [sets["val"]]
    config["model"] = {"mode": "normal", "weights": str(sets["base"])}
    config["keep"] = keep
    return config


def scalars(run):
    return [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]


def test_retained_vocabulary_is_scored_before_training_and_at_every_validation(sets, tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", str(write_yaml(tmp_path / "r.yaml", keep_config(sets, run, {"retain": sets["retain"]}))))
    assert result.returncode == 0, result.stderr
    validations = [r for r in scalars(run) if "coco/bbox_mAP" in r]
    assert [r["epoch"] for r in validations] == [0, 1, 2]  # the starting model, then every validation
    assert all(0 <= r["retain/bbox_mAP"] <= 1 and "retain/bbox_mAP_50" in r for r in validations)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] in (1, 2)  # epoch 0 has no weights of its own: it is never "best"
    retain = summary["retain"]
    assert retain["start_AP"] == validations[0]["retain/bbox_mAP"]
    assert retain["best_AP"] == next(r for r in validations if r["epoch"] == summary["best_epoch"])["retain/bbox_mAP"]
    assert (run / "map.png").stat().st_size > 0
    assert "retained vocabulary: AP" in result.stderr and "retained AP" in result.stdout
    assert "epoch 0 validation" in result.stderr
    # against a plain run on the same data (its summary.json), the summary says what share of its AP this run reached
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "summary.json").write_text(json.dumps({"best": {"coco/bbox_mAP": 0.25}}))
    other = Trainer(build_train_config(data=keep_config(sets, tmp_path / "other", {"retain": sets["retain"],
                                                                                   "compare_to": str(plain)})))
    compared = other.fit()["retain"]
    assert compared["reference_AP"] == 0.25 and compared["of_reference"] == compared["target_best_AP"] / 0.25


def test_mixed_data_is_a_fresh_subset_of_fixed_size_every_epoch():
    def source(name, count):
        records = [ImageRecord(f"{name}{i}.jpg", 8, 8, np.zeros((0, 4)), np.zeros(0), [["a"]], image_id=i)
                   for i in range(count)]
        return DatasetSource(name, "coco", records, [["a"]])
    dataset = TrainDataset([source("tune", 5), source("mix", 20)], per_epoch=[None, 8], seed=3)
    assert len(dataset) == 13
    dataset.set_epoch(0)
    first = [dataset.record_index(i) for i in range(13)]
    assert first[:5] == [0, 1, 2, 3, 4]  # the fine-tuning set: every image, in order
    assert len(set(first[5:])) == 8 and all(5 <= i < 25 for i in first[5:])  # 8 different mixed images
    dataset.set_epoch(1)
    assert [dataset.record_index(i) for i in range(5, 13)] != first[5:]  # another subset next epoch
    many = TrainDataset([source("tune", 2), source("mix", 3)], per_epoch=[None, 7])
    drawn = [many.record_index(i) - 2 for i in range(2, 9)]
    assert sorted(drawn[:3]) == [0, 1, 2] and sorted(drawn[3:6]) == [0, 1, 2]  # every image before any repeats


def test_self_distillation_targets_are_the_starting_models_scores(sets):
    config = build_train_config(data=keep_config(sets, "unused", {"distill": 1.0, "retain": sets["retain"]}))
    model = build_training_model(config, []).model.eval()
    distill = SelfDistillation.build(config, model, [], ["red square", "blue circle"], torch.device("cpu"))
    assert distill.teacher.text_model is None and not any(p.requires_grad for p in distill.teacher.parameters())
    images = torch.rand(2, 3, 64, 64)
    text = distill.extend(model.encode_text(["red circle", ""])[None].expand(2, -1, -1), model.encode_text)
    assert text.shape[1] == 4
    logits = [m.detach().requires_grad_() for m in model(images, text)[0]]
    distill.loss(images, text, logits).backward()
    # the student equals the teacher here: the soft-target BCE is at its minimum, every gradient is 0
    assert all(g.abs().max() < 1e-6 for g in (m.grad for m in logits))


def test_every_method_trains_end_to_end_and_resumes_exactly(sets, tmp_path, monkeypatch):
    keep = {"retain": sets["retain"], "mix": sets["mix"], "mix_ratio": 0.5, "distill": 1.0, "l2sp": 0.5}
    full = Trainer(build_train_config(data=keep_config(sets, tmp_path / "full", keep)))
    assert len(full.dataset) == 6 + 3  # the 6 fine-tuning images and round(0.5 x 6) mixed ones per epoch
    assert set(full.distill.texts) == {n for n in SynthConfig().class_names if n not in TARGETS}
    teacher = {k: v.clone() for k, v in full.distill.teacher.state_dict().items()}
    full.fit()
    assert all(torch.equal(v, teacher[k]) for k, v in full.distill.teacher.state_dict().items())
    losses = [r for r in scalars(tmp_path / "full") if "loss_distill" in r]
    assert losses and all(np.isfinite(r["loss_distill"]) and r["loss_distill"] > 0 for r in losses)

    class Stop(Exception):
        pass

    original = Trainer._train_epoch

    def stop_in_epoch_2(self, bar):
        if self.epoch == 1:
            raise Stop
        original(self, bar)

    monkeypatch.setattr(Trainer, "_train_epoch", stop_in_epoch_2)
    with pytest.raises(Stop):
        Trainer(build_train_config(data=keep_config(sets, tmp_path / "cut", keep))).fit()
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    Trainer(build_train_config(data=keep_config(sets, tmp_path / "cut", keep)), resume=True).fit()
    uncut, resumed = (read_checkpoint(tmp_path / name / "last.pth")["state_dict"] for name in ("full", "cut"))
    assert all(torch.equal(uncut[k], resumed[k]) for k in uncut)


def test_l2sp_at_full_strength_keeps_every_trained_weight_at_its_start(sets, tmp_path):
    trainer = Trainer(build_train_config(data=keep_config(sets, tmp_path / "run", {"l2sp": 1e9})))
    start = {k: v.clone() for k, v in trainer.model.named_parameters() if v.requires_grad}
    trainer.fit()
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(after[k], v) for k, v in start.items())  # lr x strength >= 1: pulled all the way back


def test_wise_ft_command_writes_the_chosen_mix(sets, tmp_path):
    run = tmp_path / "run"
    config = keep_config(sets, run, {"retain": sets["retain"], "wise_ft": True},
                         checkpoint={"every_minutes": 0.0, "deploy": str(tmp_path / "deploy.pt")})
    result = run_cli("train", str(write_yaml(tmp_path / "w.yaml", config)))
    assert result.returncode == 0, result.stderr
    table = json.loads((run / "wise_ft.json").read_text())
    deployed, mixed = (read_checkpoint(p) for p in (tmp_path / "deploy.pt", run / "wise_ft.pth"))
    assert deployed["meta"]["yoloworld"]["trained_from"] == "wise_ft.pth"  # the deployable copy is the chosen mix
    assert all(torch.equal(v, mixed["state_dict"][k].half()) for k, v in deployed["state_dict"].items()
               if v.is_floating_point())
    assert [row["alpha"] for row in table["grid"]] == [i / 10 for i in range(11)]
    assert json.loads((run / "summary.json").read_text())["wise_ft"]["chosen"] == table["chosen"]
    # the command: another grid, another file; the file is the chosen interpolation and predicts as any checkpoint
    out = tmp_path / "mixed.pth"
    result = run_cli("wise-ft", str(run), "--alphas", "0,0.5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    chosen = json.loads(out.with_suffix(".json").read_text())["chosen"]["alpha"]
    assert chosen in (0.0, 0.5, 1.0) and f"alpha {chosen:.2f}" in result.stdout
    start, tuned = read_checkpoint(sets["base"])["state_dict"], read_checkpoint(run / "best.pth")["state_dict"]
    written = read_checkpoint(out)["state_dict"]
    expected, _ = interpolate(start, tuned, chosen)
    assert all(torch.allclose(written[k].float(), expected[k].float(), atol=1e-6) for k in expected)
    model = YOLOWorld.from_pretrained(out, imgsz=64)
    assert model.class_names == list(TARGETS)  # the fine-tuned vocabulary travels with the file
    model.predict(np.full((64, 64, 3), 127, np.uint8))


def test_wise_ft_choice_and_interpolation_ends():
    rows = [{"alpha": a, "target_AP": t, "retained_AP": r} for a, t, r in
            [(0.0, 0.1, 0.9), (0.5, 0.58, 0.8), (0.8, 0.6, 0.5), (1.0, 0.6, 0.2)]]
    assert choose(rows, 0.95)["alpha"] == 0.5  # 0.58 >= 0.95 x 0.6, and keeps the most
    assert choose(rows, 1.0)["alpha"] == 0.8
    start, tuned = {"w": torch.zeros(3), "n": torch.tensor(1)}, {"w": torch.ones(3), "n": torch.tensor(5),
                                                                "new": torch.ones(1)}
    assert torch.equal(interpolate(start, tuned, 0.0)[0]["w"], start["w"])
    mixed, count = interpolate(start, tuned, 0.25)
    assert count == 1 and torch.allclose(mixed["w"], torch.full((3,), 0.25))
    assert mixed["n"] == 5 and torch.equal(mixed["new"], tuned["new"])  # integer buffers and new layers: tuned


@pytest.mark.parametrize("keep, sections, message", [
    ({"distill": 1.0}, {"model": {"mode": "normal"}}, "keep.distill: needs the starting model"),
    ({"retain": {"ann": "x.json", "images": "."}}, {"data_val": []}, "keep.retain is scored beside"),
    ({"distill": 1.0}, {}, "keep.distill: name the vocabulary"),
    ({"wise_ft": True}, {}, "keep.wise_ft chooses alpha on the retained vocabulary"),
    ({"compare_to": "runs/plain"}, {}, "keep.compare_to is reported beside the retained vocabulary"),
    ({"l2sp": 1.0}, {"model": {"mode": "prompt", "weights": "w.pt"}}, "applies to text models"),
])
def test_keep_options_that_cannot_work_are_one_line_errors(sets, tmp_path, keep, sections, message):
    config = keep_config(sets, tmp_path / "run", keep)
    if "model" in sections:
        config["model"] = sections["model"]
    if "data_val" in sections:
        config["data"]["val"] = sections["data_val"]
    with pytest.raises(ConfigError, match=message):
        build_train_config(data=config)


def test_two_processes_keep_the_vocabulary_in_sync(sets, tmp_path):
    from test_ddp import train_in_sync

    keep = {"retain": sets["retain"], "mix": sets["mix"], "distill": 1.0, "l2sp": 0.5}
    config = keep_config(sets, tmp_path / "ddp", keep, schedule={"epochs": 1, "warmup_min_iters": 1,
                                                                 "warmup_epochs": 0.0})
    summary, _ = train_in_sync(config, tmp_path / "ddp", tmp_path)
    records = scalars(tmp_path / "ddp")
    assert [r["epoch"] for r in records if "retain/bbox_mAP" in r] == [0, 1]
    assert any("loss_distill" in r for r in records) and "retain" in summary


def test_synthetic_shapes_with_a_new_appearance_and_unlabelled_objects(tmp_path):
    config = SynthConfig(images=6, seed=0, only=("red circle",), unlabelled=("blue square",), texture="striped",
                         max_objects=6, min_side=160, max_side=160)
    synthesize(tmp_path, config)
    data = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert [c["name"] for c in data["categories"]] == ["red circle"]
    import cv2

    blue_outside = 0
    for image in data["images"]:
        pixels = cv2.imread(str(tmp_path / "coco" / "images" / image["file_name"])).astype(int)
        inside = np.zeros(pixels.shape[:2], bool)
        for ann in (a for a in data["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = (int(round(v)) for v in ann["bbox"])
            inside[y:y + h, x:x + w] = True
            red = pixels[y + h // 4: y + 3 * h // 4, x + w // 4: x + 3 * w // 4, 2]
            assert red.max() - red.min() > 60  # striped: the colour and its darker shade
        blue = (pixels[..., 0] > 170) & (pixels[..., 2] < 90)
        blue_outside += int((blue & ~inside).sum())
    assert blue_outside > 100  # the unlabelled squares are drawn, never annotated


def test_wise_ft_refuses_what_it_cannot_score_in_one_line(sets, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_yaml(run / "config.yaml", keep_config(sets, run, {}))
    result = run_cli("wise-ft", str(run))
    assert result.returncode == 2 and "no retained vocabulary to choose alpha on" in result.stderr
    result = run_cli("wise-ft", str(run), *(f"keep.retain.{k}={sets['retain'][k]}" for k in ("ann", "images",
                                                                                          "classes_file")))
    assert result.returncode == 2 and "best.pth: no such checkpoint" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_efficient_neck_run_distils_from_the_original_text_guided_model(sets):
    config = build_train_config(data=keep_config(sets, "unused", {"distill": 1.0, "retain": sets["retain"]}))
    config.model.mode = "efficient"
    student = build_training_model(config, []).model
    distill = SelfDistillation.build(config, student, [], ["red square"], torch.device("cpu"))
    assert student.config.neck_block == "efficient" and distill.teacher.config.neck_block != "efficient"
    start = read_checkpoint(sets["base"])["state_dict"]
    teacher = distill.teacher.state_dict()
    assert all(torch.equal(teacher[k], v) for k, v in start.items() if not k.startswith("backbone.text_model."))
