"""`yoloworld predict` end to end, and its one-line errors for bad input."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import run_cli

DEMO = Path(__file__).resolve().parents[1] / "yoloworld" / "assets" / "demo.pt"


@pytest.fixture(scope="module")
def images(fixtures, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    raw = np.load(fixtures / "inputs.npz")["image_raw"][:, :, ::-1]
    cv2.imwrite(str(folder / "a.png"), raw)
    cv2.imwrite(str(folder / "b.jpg"), cv2.resize(raw, (320, 214)))
    (folder / "broken.jpg").write_bytes(b"not really a jpeg")
    return folder


def model_args(fixtures):
    return ["--weights", fixtures / "v2_n.pth", "--text-model", fixtures / "tiny-clip"]


def test_predict_folder_writes_annotated_images_and_json(fixtures, images, tmp_path):
    out = run_cli("predict", images, *model_args(fixtures), "--classes", "person,car|a red car,dog",
                  "--conf", "0.3", "--save-dir", tmp_path / "vis", "--json", tmp_path / "dets.json")
    assert out.returncode == 0, out.stderr
    assert "broken.jpg" in out.stderr and "Traceback" not in out.stderr  # skipped with a warning
    records = json.loads((tmp_path / "dets.json").read_text())
    assert [r["file"].rsplit("/", 1)[-1] for r in records] == ["a.png", "b.jpg"]
    assert records[0]["width"] == 640 and records[0]["height"] == 427
    names = {d["class_name"] for r in records for d in r["detections"]}
    assert names and names <= {"person", "car", "dog"}
    assert (tmp_path / "vis" / "a.png").exists() and (tmp_path / "vis" / "b.jpg").exists()


def test_classes_file_accepts_official_class_text_json(fixtures, images, tmp_path):
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps([["person"], ["car", "a red car"]]))
    out = run_cli("predict", images / "a.png", *model_args(fixtures), "--classes-file", texts, "--no-save",
                  "--json", tmp_path / "d.json")
    assert out.returncode == 0, out.stderr
    assert {d["class_name"] for d in json.loads((tmp_path / "d.json").read_text())[0]["detections"]} <= {"person", "car"}


def test_video_source_gives_one_record_per_frame(fixtures, images, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 214))
    frame = cv2.imread(str(images / "b.jpg"))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    out = run_cli("predict", video, *model_args(fixtures), "--classes", "person", "--save-dir", tmp_path / "v",
                  "--json", tmp_path / "v.json")
    assert out.returncode == 0, out.stderr
    records = json.loads((tmp_path / "v.json").read_text())
    assert [r["frame"] for r in records] == [0, 1, 2]


def bad_class_file(tmp_path):
    path = tmp_path / "bad_texts.json"
    path.write_text(json.dumps({"person": 1}))
    return path


def not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2)}}, path)
    return path


@pytest.mark.parametrize("case", ["missing_path", "empty_classes", "bad_checkpoint", "bad_class_json",
                                  "all_corrupt", "truncated_checkpoint"])
def test_bad_input_is_one_line_exit_2(fixtures, images, tmp_path, case):
    args = {
        "missing_path": ["predict", tmp_path / "nope.jpg", *model_args(fixtures), "--classes", "a"],
        "empty_classes": ["predict", images / "a.png", *model_args(fixtures), "--classes", " , "],
        "bad_checkpoint": ["predict", images / "a.png", "--weights", not_a_checkpoint(tmp_path), "--classes", "a"],
        "bad_class_json": ["predict", images / "a.png", *model_args(fixtures), "--classes-file", bad_class_file(tmp_path)],
        "all_corrupt": ["predict", images / "broken.jpg", *model_args(fixtures), "--classes", "a"],
        "truncated_checkpoint": ["predict", images / "a.png", "--weights", truncated(fixtures, tmp_path), "--classes", "a"],
    }[case]
    out = run_cli(*args)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr


def truncated(fixtures, tmp_path):
    path = tmp_path / "truncated.pth"
    path.write_bytes((fixtures / "v2_n.pth").read_bytes()[:100000])
    return path


def test_demo_runs_offline_and_says_it_is_a_demo(tmp_path):
    out = run_cli("predict", "--demo", "--save-dir", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "demo model trained on synthetic" in out.stdout and "--weights" in out.stdout
    record = json.loads((tmp_path / "demo.json").read_text())[0]
    assert (tmp_path / "demo.png").exists() and record["detections"]
    assert all(d["score"] >= 0.25 for d in record["detections"])


def test_truncated_jpeg_is_predicted_with_a_warning_naming_it(tmp_path):
    from yoloworld.data.synth import SynthConfig, draw_image

    image, _ = draw_image(np.random.default_rng(0), SynthConfig(images=1))
    path = tmp_path / "cut.jpg"
    cv2.imwrite(str(path), image)
    path.write_bytes(path.read_bytes()[:-2000])  # an interrupted download
    out = run_cli("predict", path, "--weights", DEMO, "--no-save", "--json", tmp_path / "d.json")
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if "truncated" in line]
    assert len(warnings) == 1 and str(path) in warnings[0], out.stderr
    assert len(json.loads((tmp_path / "d.json").read_text())) == 1


def test_demo_draws_the_same_picture_for_the_same_seed(tmp_path):
    from yoloworld.cli import main

    for folder, seed in (("a", []), ("b", []), ("c", ["--seed", "1"])):
        assert main(["predict", "--demo", "--save-dir", str(tmp_path / folder), *seed]) == 0
    picture = {folder: (tmp_path / folder / "demo_input.png").read_bytes() for folder in "abc"}
    assert picture["a"] == picture["b"] != picture["c"]
    detections = [json.loads((tmp_path / folder / "demo.json").read_text())[0]["detections"] for folder in "ab"]
    assert detections[0] == detections[1]
