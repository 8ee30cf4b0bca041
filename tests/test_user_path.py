"""What a new user meets first: readable labels, and a model trained with the built-in recipe that works in every
command (val, predict, embed, export), with or without its text tower."""

import json
import sys

import numpy as np
import pytest
from test_train_support import make_synth, tiny_config

from yoloworld.api import YOLOWorld
from yoloworld.cli import main
from yoloworld.engine.train_config import build_train_config
from yoloworld.engine.trainer import train
from yoloworld.results import Results, palette


def plotted(boxes, scores, classes, names):
    image = np.full((240, 320, 3), 200, np.uint8)
    result = Results(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes, np.int64), names,
                     (240, 320))
    return result.plot(image)


def test_a_label_at_the_image_edge_is_moved_inside_whole():
    canvas = plotted([[250, 0, 320, 60]], [0.91], [0], ["traffic light"])
    colour = np.array(palette(0))
    label_rows = canvas[:14]
    columns = np.flatnonzero((label_rows == colour).all(-1).any(0))
    assert columns.min() < 250 and columns.max() == 319  # shifted left of the box (x1=250) to end at the edge


def test_the_most_confident_label_is_drawn_last():
    # NMS order (descending score): the low-score label used to be drawn over the high-score one
    canvas = plotted([[20, 100, 140, 200], [20, 100, 140, 200]], [0.95, 0.30], [1, 2], ["car", "person over there", "dog"])
    assert not (canvas[80:100] == np.array(palette(2))).all(-1).any()
    assert (canvas[80:100] == np.array(palette(1))).all(-1).any()


# ---------------------------------------------------------------- a model we train works everywhere

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run of the training recipe shape (random text tower, not CLIP) with a deployable copy."""
    root = tmp_path_factory.mktemp("trained")
    coco = make_synth(root / "synth")
    deploy = root / "deploy.pt"
    config = tiny_config(coco, root / "run", schedule={"epochs": 1, "warmup_min_iters": 1, "warmup_epochs": 0.0},
                         checkpoint={"every_minutes": 0.0, "deploy": str(deploy)})
    train(build_train_config(data=config))
    return {"run": root / "run", "deploy": deploy, "coco": coco, "root": root}


def call(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_command_reads_a_trained_checkpoint_without_text_model(trained, capsys):
    run, coco, root = trained["run"], trained["coco"], trained["root"]
    images = coco / "images"
    val = ["val", "--ann", coco / "annotations_val.json", "--images", images]
    for argv in (val + ["--weights", run / "best.pth"],
                 ["predict", images, "--weights", run / "best.pth", "--no-save"],
                 ["embed", "--weights", run / "best.pth", "--classes", "red circle", "--out", root / "e.npy"],
                 ["export", "--weights", run / "best.pth", "--vocab", "dynamic", "--out", root / "d.onnx"],
                 ["predict", images, "--weights", run, "--no-save"]):  # a run folder: its best.pth
        code, _, err = call(argv, capsys)
        assert code == 0, (argv, err)
    api = YOLOWorld.from_pretrained(run / "best.pth")
    assert api.model.text_model is not None and len(api.class_names) == 9  # the trained vocabulary is stored


def test_a_model_saved_with_its_vocabulary_validates_and_exports(trained, capsys, tmp_path):
    deploy, coco = trained["deploy"], trained["coco"]
    api = YOLOWorld.from_pretrained(deploy)
    assert api.model.text_model is None and len(api.class_names) == 9
    code, out, err = call(["val", "--weights", deploy, "--ann", coco / "annotations_val.json", "--images",
                           coco / "images"], capsys)
    assert code == 0, err
    assert "AP" in out
    code, out, err = call(["export", "--weights", deploy, "--out", tmp_path / "m.onnx"], capsys)
    assert code == 0, err
    assert "baked vocabulary: red circle" in out
    code, _, err = call(["export", "--weights", deploy, "--vocab", "dynamic", "--out", tmp_path / "d.onnx"], capsys)
    assert code == 2 and "--vocab baked" in err
    other = json.loads((coco / "annotations_val.json").read_text())
    other["categories"] = [{**c, "name": f"thing {c['id']}"} for c in other["categories"]]
    (tmp_path / "other.json").write_text(json.dumps(other))
    code, _, err = call(["val", "--weights", deploy, "--ann", tmp_path / "other.json", "--images", coco / "images"],
                        capsys)
    assert code == 2 and "not the vocabulary stored with the model" in err and "\n" not in err.strip()


def test_onnx_without_its_packages_names_the_extra(trained, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails like a plain install
    code, _, err = call(["export", "--weights", trained["deploy"], "--out", tmp_path / "m.onnx"], capsys)
    assert code == 2 and "yoloworld[export]" in err
    (tmp_path / "m.onnx").write_bytes(b"x")
    code, _, err = call(["predict", trained["coco"] / "images", "--weights", tmp_path / "m.onnx", "--no-save"], capsys)
    assert code == 2 and "yoloworld[export]" in err


def test_the_export_check_says_when_it_compared_nothing():
    from yoloworld.cli.export import check_line

    empty = {"detections matched": 0.0, "score gap": 0.0, "count pytorch": 0.0, "count exported": 0.0}
    assert "nothing was compared" in check_line(empty, nms=True, conf=0.25)
    found = {**empty, "detections matched": 1.0, "count pytorch": 4.0, "count exported": 4.0}
    assert "100.0% of 4 detections matched" in check_line(found, nms=True, conf=0.25)


def test_a_run_folder_without_weights_and_a_yaml_as_weights_are_one_line(tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "recipe.yaml").write_text("model: {size: s}\n")
    image = tmp_path / "a.png"
    image.write_bytes(b"")  # never read: the weights fail first
    cases = ((tmp_path / "empty_run", "best.pth"), (tmp_path / "recipe.yaml", "not a checkpoint (not a PyTorch file"))
    for weights, words in cases:
        code, _, err = call(["predict", image, "--weights", weights, "--classes", "a"], capsys)
        assert code == 2 and words in err, err
