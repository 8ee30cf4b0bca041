"""A checkpoint carries what a later command needs (its input size, vocabulary, task), and every command uses it:
a run trained at 96 px is validated, predicted and exported at 96 px without --imgsz."""

import json

import onnx
import pytest
import torch
from helpers import run_cli
from test_train_support import make_synth, tiny_config

from yoloworld.api import YOLOWorld, load
from yoloworld.engine.train_config import build_train_config
from yoloworld.engine.trainer import train
from yoloworld.models.checkpoint import open_checkpoint
from yoloworld.models.reparam import reparameterize_checkpoint

IMGSZ = 96  # neither the tiny recipe's 64 nor the default 640


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sized")
    coco = make_synth(root / "synth")
    config = tiny_config(coco, root / "run", schedule={"epochs": 1, "warmup_min_iters": 1, "warmup_epochs": 0.0},
                         checkpoint={"every_minutes": 0.0, "deploy": str(root / "deploy.pt")})
    config["data"]["augment"]["image_size"] = IMGSZ
    train(build_train_config(data=config))
    return {"root": root, "coco": coco, "best": root / "run" / "best.pth"}


def test_every_file_a_run_or_a_command_writes_records_its_input_size_and_task(run, tmp_path):
    root = run["root"]
    api = YOLOWorld.from_pretrained(run["best"])
    api.save(tmp_path / "saved.pt")
    embeds = api.text_embeds.cpu()
    reparameterize_checkpoint(run["best"], tmp_path / "rep.pth", embeds, classes=api.vocabulary.stored_classes(),
                              padded=api.vocabulary.padded)
    for path in (root / "run" / "last.pth", run["best"], root / "deploy.pt", tmp_path / "saved.pt",
                 tmp_path / "rep.pth"):
        stored = torch.load(path, weights_only=True)["meta"]["yoloworld"]
        assert stored["imgsz"] == IMGSZ and stored["task"] == "detect", path.name
        info = open_checkpoint(path).info
        assert (info.imgsz, info.task, len(info.classes)) == (IMGSZ, "detect", 9), path.name


def test_a_run_file_without_the_recorded_size_falls_back_to_its_training_config(run, tmp_path):
    data = torch.load(run["best"], weights_only=True)
    del data["meta"]["yoloworld"]["imgsz"]  # as written before the size was recorded
    torch.save(data, tmp_path / "old.pth")
    assert load(tmp_path / "old.pth").imgsz == IMGSZ


def test_val_without_imgsz_uses_the_trained_size_and_says_so(run, tmp_path):
    coco = run["coco"]
    val = ["val", "--weights", run["best"], "--ann", coco / "annotations_val.json", "--images", coco / "images",
           "--conf", "0"]  # an untrained model: keep every box
    default = run_cli(*val, "--save-json", tmp_path / "default.json", cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    said = default.stdout + default.stderr
    assert f"using the model's input size {IMGSZ} (stored in {run['best']}); --imgsz overrides" in said
    assert said.count("using the model's input size") == 1
    sized = run_cli(*val, "--imgsz", str(IMGSZ), "--save-json", tmp_path / "sized.json", cwd=tmp_path)
    assert sized.returncode == 0, sized.stderr
    assert "using the model's input size" not in sized.stdout + sized.stderr  # an explicit size needs no note
    detections = json.loads((tmp_path / "default.json").read_text())
    assert detections and detections == json.loads((tmp_path / "sized.json").read_text())


def test_export_without_imgsz_uses_the_trained_size(run, tmp_path):
    out = tmp_path / "model.onnx"
    result = run_cli("export", "--weights", run["best"], "--format", "onnx", "--out", out, "--no-check",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{IMGSZ} px input" in result.stdout
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][2:] == [IMGSZ, IMGSZ]


def test_a_segmentation_model_records_its_task_and_a_bad_stored_size_is_one_line(tmp_path):
    from yoloworld.config import ModelConfig
    from yoloworld.errors import CheckpointError
    from yoloworld.models.checkpoint import save_checkpoint
    from yoloworld.models.detector import YOLOWorldDetector

    config = ModelConfig(deepen=0.33, widen=0.125, last_stage_channels=1024, min_cls_channels=16, text_hidden=None,
                         num_prompts=3, mask_channels=8, proto_channels=16)
    save_checkpoint(tmp_path / "seg.pth", YOLOWorldDetector(config, None), {"imgsz": 320})
    info = open_checkpoint(tmp_path / "seg.pth").info
    assert (info.task, info.imgsz) == ("segment", 320)
    data = torch.load(tmp_path / "seg.pth", weights_only=True)
    data["meta"]["yoloworld"]["imgsz"] = 100  # not a multiple of 32
    torch.save(data, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"bad.pth: malformed metadata \(input size 100"):
        open_checkpoint(tmp_path / "bad.pth").info
