"""Bugs a code review found; each test failed before its fix. Models: fixtures/official/v2_n.pth, tiny-clip/."""

import shutil

import cv2
import numpy as np
import pytest
import torch
from test_eval_val_model import write_tiny_coco

from yoloworld.api import YOLOWorld
from yoloworld.cli import main
from yoloworld.errors import CheckpointError
from yoloworld.export.onnx_export import plan_export


@pytest.fixture
def api(fixtures):
    return YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip").set_classes("a,b")


def test_saving_in_half_precision_leaves_the_live_text_tower_in_float32(api, tmp_path):
    api.save(tmp_path / "half.pt", keep_text_model=True, half=True)
    assert all(p.dtype == torch.float32 for p in api.model.parameters())
    stored = torch.load(tmp_path / "half.pt", weights_only=True)
    assert stored["state_dict"]["backbone.text_model.model.text_projection.weight"].dtype == torch.float16
    reloaded = YOLOWorld.from_pretrained(tmp_path / "half.pt")  # the text tower rebuilds from the stored config
    assert reloaded.model.text_model is not None and reloaded.class_names == ["a", "b"]


def test_planning_an_export_leaves_the_callers_model_alone(api):
    api.model.train()
    plan = plan_export(api, "a,b", vocabulary="dynamic")
    assert api.model.training  # not switched to eval behind the caller's back
    assert plan.graph.detector is not api.model


@pytest.mark.parametrize("state", [[1, 2], {"version": 1}, {"version": 1, "epoch": "x"}])
def test_a_damaged_resume_state_is_a_checkpoint_error(tmp_path, state):
    from yoloworld.engine.state import STATE_FILE, load_resume_state

    torch.save(state, tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError, match=STATE_FILE):
        load_resume_state(tmp_path)


def test_text_model_takes_a_hub_id_from_the_cache(fixtures, tmp_path, monkeypatch, capsys):
    """`--text-model org/name` works offline once the hub cache holds it (here a cache laid out by hand)."""
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--someone--tiny-clip" / "snapshots" / ("0" * 40)
    shutil.copytree(fixtures / "tiny-clip", snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    images = tmp_path / "images"
    images.mkdir()
    ann = write_tiny_coco(images)
    for command in (["val", "--ann", str(ann), "--images", str(images)],
                    ["embed", "--classes", "person,car", "--out", str(tmp_path / "e.npy")],
                    ["predict", str(images), "--classes", "person", "--no-save"]):
        weights = [] if command[0] == "embed" else ["--weights", str(fixtures / "v2_n.pth")]
        assert main(command + weights + ["--text-model", "someone/tiny-clip"]) == 0, capsys.readouterr().err
    assert main(["embed", "--classes", "a", "--out", str(tmp_path / "f.npy"), "--text-model", "someone/absent"]) == 2
    assert "hf download someone/absent" in capsys.readouterr().err


def test_clashing_output_names_are_the_same_in_every_run(fixtures, tmp_path):
    image = np.full((64, 80, 3), 90, np.uint8)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "same.png"), image)
    names = []
    for run in ("1", "2"):
        out = tmp_path / f"out{run}"
        assert main(["predict", str(tmp_path / "a"), str(tmp_path / "b"), "--weights", str(fixtures / "v2_n.pth"),
                     "--text-model", str(fixtures / "tiny-clip"), "--classes", "x", "--save-dir", str(out)]) == 0
        names.append(sorted(p.name for p in out.iterdir() if p.name != ".yoloworld-outputs.json"))
    assert names[0] == names[1] == ["same.png", "same_2.png"]


@pytest.mark.parametrize("override, words", [
    ("model.arch.contrastive=x", ["model.arch.contrastive", "bn, l2, rep"]),
    ("model.arch.neck_block=y", ["model.arch.neck_block", "efficient"]),
    ("optim.lr=.inf", ["optim.lr", "finite"]),
])
def test_a_bad_config_value_is_one_line_naming_the_key(override, words, capsys):
    code = main(["train", "synth_demo", override, "--show"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert all(word in err for word in words), err
