"""A command deletes or replaces only what it wrote itself: the user's files in every output place survive, an
output folder overlapping the sources is refused, a link out of an output folder is never followed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import run_cli

from yoloworld.data.synth import SynthConfig, synthesize
from yoloworld.engine.trainer import fresh_out_dir
from yoloworld.errors import InputError
from yoloworld.outputs import MANIFEST_NAME, OutputFolder

DEMO = Path(__file__).resolve().parents[1] / "yoloworld" / "assets" / "demo.pt"
MODEL = ["--weights", DEMO, "--imgsz", 128, "--classes", "red circle,green square,blue triangle"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three synthetic photos in a folder of the user's."""
    root = tmp_path_factory.mktemp("shapes")
    synthesize(root / "synth", SynthConfig(images=3, seed=1, min_side=128, max_side=128))
    return root / "synth" / "coco" / "images"


def user_folder(tmp_path: Path, photos: Path) -> Path:
    """data/images/*.jpg (the user's photos) and data/notes.txt: the issue's folder."""
    shutil.copytree(photos, tmp_path / "data" / "images")
    (tmp_path / "data" / "notes.txt").write_text("mine")
    return tmp_path / "data"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_label_overwrite_into_the_photos_parent_is_refused_and_deletes_nothing(tmp_path, photos):
    data = user_folder(tmp_path, photos)
    before = snapshot(data)
    err = one_line_error(run_cli("label", data / "images", *MODEL, "--out", data, "--overwrite"))
    assert f"--out {data}" in err and str(data / "images") in err
    assert snapshot(data) == before


@pytest.mark.parametrize("out", ["{photos}", "{photos}/..", "{photos}/dataset"])
def test_an_output_folder_that_is_holds_or_lies_inside_a_source_is_refused(out, tmp_path, photos):
    data = user_folder(tmp_path, photos)
    out = out.format(photos=data / "images")
    before = snapshot(data)
    err = one_line_error(run_cli("label", data / "images", *MODEL, "--out", out))
    assert out in err and "source" in err
    assert snapshot(data) == before


def test_label_overwrite_removes_its_own_earlier_files_and_keeps_the_users(tmp_path, photos):
    data = user_folder(tmp_path, photos)
    out = tmp_path / "ds"
    first = run_cli("label", data / "images", *MODEL, "--out", out, "--format", "yolo", "--conf", 0.01)
    assert first.returncode == 0, first.stderr
    ours = snapshot(out)
    assert any(name.startswith("images/") for name in ours) and MANIFEST_NAME in ours
    mine = {"notes.txt": b"mine", "images/train/my_photo.jpg": b"jpeg", "labels/train/my_photo.txt": b"0 .5 .5 .1 .1"}
    for name, data_bytes in mine.items():
        (out / name).write_bytes(data_bytes)
    (data / "images" / "000002.jpg").unlink()  # the second run labels two photos: the third's copy must go
    second = run_cli("label", data / "images", *MODEL, "--out", out, "--format", "coco", "--overwrite")
    assert second.returncode == 0, second.stderr
    after = snapshot(out)
    assert all(after[name] == data_bytes for name, data_bytes in mine.items())
    assert not (out / "data.yaml").exists() and (out / "annotations.json").exists()
    assert not any(name.startswith("images/") and "my_photo" not in name and name in ours for name in after)
    assert sorted(p.name for p in (out / "images").glob("0*.jpg")) == ["000000.jpg", "000001.jpg"]


def test_a_link_out_of_the_output_folder_is_never_followed(tmp_path, photos):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "000000.jpg").write_bytes(b"precious")
    (outside / "keep.txt").write_text("precious")
    out = tmp_path / "ds"
    first = run_cli("label", photos, *MODEL, "--out", out)
    assert first.returncode == 0, first.stderr
    shutil.rmtree(out / "images")
    (out / "images").symlink_to(outside, target_is_directory=True)  # images/000000.jpg is in the record
    (out / "summary.json").unlink()
    (out / "summary.json").symlink_to(outside / "keep.txt")
    err = one_line_error(run_cli("label", photos, *MODEL, "--out", out, "--overwrite"))
    assert "link" in err
    assert (outside / "000000.jpg").read_bytes() == b"precious" and (outside / "keep.txt").read_text() == "precious"
    assert not (out / "summary.json").is_symlink()  # the link itself (ours by name) went, not its target


@pytest.mark.parametrize("entry", ["../escape.txt", "/etc/passwd", "a/../../escape.txt", MANIFEST_NAME])
def test_a_hostile_output_record_names_nothing_outside_the_folder(entry, tmp_path):
    (tmp_path / "escape.txt").write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_text(json.dumps({"files": {entry: "label"}}))
    with pytest.raises(InputError, match=MANIFEST_NAME):
        OutputFolder(folder).remove()
    assert (tmp_path / "escape.txt").read_text() == "precious"


@pytest.mark.parametrize("text", ["{", "[]", "", '{"files": ["a"]}'])
def test_a_damaged_output_record_is_one_clear_error(text, tmp_path):
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(InputError, match=f"{MANIFEST_NAME}: damaged"):
        OutputFolder(tmp_path)


def test_data_synth_overwrite_removes_only_its_own_files(tmp_path):
    out = tmp_path / "synth"
    assert run_cli("data", "synth", "--out", out, "--images", 4).returncode == 0
    mine = {"coco/notes.txt": b"mine", "yolo/images/train/my.jpg": b"jpeg", "coco/images/photo.jpg": b"jpeg"}
    for name, data_bytes in mine.items():
        (out / name).write_bytes(data_bytes)
    result = run_cli("data", "synth", "--out", out, "--images", 2, "--overwrite")
    assert result.returncode == 0, result.stderr
    after = snapshot(out)
    assert all(after[name] == data_bytes for name, data_bytes in mine.items())
    assert sorted(p.name for p in (out / "coco" / "images").glob("0*.jpg")) == ["000000.jpg", "000001.jpg"]
    assert sorted(p.name for p in (out / "yolo" / "images" / "train").glob("0*.jpg")) == ["000000.jpg", "000001.jpg"]


def test_data_synth_never_replaces_a_file_it_did_not_write(tmp_path):
    out = tmp_path / "synth"
    (out / "coco" / "images").mkdir(parents=True)
    (out / "coco" / "images" / "000001.jpg").write_bytes(b"my photo")
    err = one_line_error(run_cli("data", "synth", "--out", out, "--images", 2, "--overwrite"))
    assert "000001.jpg" in err and "did not write" in err
    assert (out / "coco" / "images" / "000001.jpg").read_bytes() == b"my photo"


def test_predict_save_dir_keeps_the_users_files_and_stays_apart_from_the_sources(tmp_path, photos):
    save = tmp_path / "vis"
    save.mkdir()
    (save / "000000.jpg").write_bytes(b"my own picture")
    err = one_line_error(run_cli("predict", photos, *MODEL, "--save-dir", save))
    assert "000000.jpg" in err and "did not write" in err
    assert (save / "000000.jpg").read_bytes() == b"my own picture" and len(list(save.iterdir())) == 1
    (save / "000000.jpg").unlink()
    for _ in range(2):  # a rerun replaces the annotated files of the first run
        result = run_cli("predict", photos, *MODEL, "--save-dir", save)
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in save.glob("*.jpg")) == ["000000.jpg", "000001.jpg", "000002.jpg"]
    before = snapshot(photos)
    err = one_line_error(run_cli("predict", photos, *MODEL, "--save-dir", photos / "annotated"))
    assert "source" in err and snapshot(photos) == before


def test_convert_yolo2coco_never_replaces_the_users_annotations(tmp_path):
    out = tmp_path / "synth"
    synthesize(out, SynthConfig(images=2, seed=3, min_side=64, max_side=64))
    (out / "yolo" / "annotations.json").write_text("my own annotations")
    err = one_line_error(run_cli("convert", "yolo2coco", out / "yolo"))
    assert "annotations.json" in err
    assert (out / "yolo" / "annotations.json").read_text() == "my own annotations"
    assert run_cli("convert", "yolo2coco", out / "yolo", "--out", out / "mine.json").returncode == 0
    assert run_cli("convert", "yolo2coco", out / "yolo", "--out", out / "mine.json").returncode == 0  # its own: rerun


def test_wise_ft_out_never_replaces_a_file_it_did_not_write(tmp_path):
    synthesize(tmp_path / "synth", SynthConfig(images=2, seed=3, min_side=64, max_side=64))
    coco = tmp_path / "synth" / "coco"
    sets = {"kind": "coco", "ann": str(coco / "annotations.json"), "images": str(coco / "images"),
            "classes_file": str(coco / "class_texts.json")}
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(json.dumps({"model": {"weights": str(DEMO)}, "data": {"val": [sets]},
                                                 "keep": {"retain": sets}}))
    shutil.copyfile(DEMO, run / "best.pth")
    (tmp_path / "mine.pth").write_bytes(b"my own weights")
    err = one_line_error(run_cli("wise-ft", run, "--out", tmp_path / "mine.pth"))
    assert "mine.pth" in err and "did not write" in err
    assert (tmp_path / "mine.pth").read_bytes() == b"my own weights"


def test_a_training_run_never_writes_into_a_folder_holding_files(tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "config.yaml").write_text("mine")
    assert fresh_out_dir(tmp_path / "project") == tmp_path / "project2"
    (tmp_path / "empty").mkdir()
    assert fresh_out_dir(tmp_path / "empty") == tmp_path / "empty"


def test_an_output_record_is_written_before_the_file_and_refuses_a_link_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "out"
    folder.mkdir()
    os.symlink(outside, folder / "sub", target_is_directory=True)
    outputs = OutputFolder(folder)
    with pytest.raises(InputError, match="link"):
        outputs.claim([folder / "sub" / "a.txt"], "test")
    outputs.claim([folder / "a.txt"], "test")
    assert json.loads((folder / MANIFEST_NAME).read_text())["files"] == {"a.txt": "test"}
    assert OutputFolder(folder).remove() == 0 and not (folder / MANIFEST_NAME).read_text().count("a.txt")
    assert outside.is_dir() and (folder / "sub").is_symlink()


def test_an_int8_export_never_replaces_the_fp32_one(tmp_path, photos):
    """Issue 22 point 7: both defaulted to ./W_openvino_model/; an export of another kind needs --overwrite."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    export = ["export", "--weights", DEMO, "--imgsz", 64, "--format", "openvino", "--no-check"]
    int8 = ["--int8", "--calib", photos, "--calib-images", 2]
    assert run_cli(*export, cwd=tmp_path).returncode == 0
    fp32 = tmp_path / "demo_openvino_model"
    (fp32 / "notes.txt").write_text("mine")
    before = snapshot(fp32)
    result = run_cli(*export, *int8, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "demo_openvino_int8_model" / "demo.xml").is_file() and snapshot(fp32) == before
    err = one_line_error(run_cli(*export, *int8, "--out", fp32, cwd=tmp_path))
    assert "another kind (export openvino fp32" in err and "--overwrite" in err and snapshot(fp32) == before
    result = run_cli(*export, "--out", tmp_path / "demo_openvino_int8_model", "--overwrite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "demo_openvino_int8_model" / MANIFEST_NAME).read_text())["files"]
    assert set(record.values()) == {"export openvino fp32, baked vocabulary"}
    assert snapshot(fp32) == before  # notes.txt included


def test_an_onnx_export_never_replaces_a_file_it_did_not_write(tmp_path):
    pytest.importorskip("onnx")
    (tmp_path / "demo.onnx").write_bytes(b"my own model")
    err = one_line_error(run_cli("export", "--weights", DEMO, "--imgsz", 64, "--no-check", cwd=tmp_path))
    assert "demo.onnx" in err and "did not write" in err
    assert (tmp_path / "demo.onnx").read_bytes() == b"my own model"


def test_a_labelling_written_before_output_records_still_resumes_and_overwrites_only_its_files(tmp_path, photos):
    out = tmp_path / "ds"
    args = ["label", photos, *MODEL, "--out", out, "--format", "yolo", "--conf", 0.01, "--val-fraction", 0]
    assert run_cli(*args).returncode == 0
    (out / MANIFEST_NAME).unlink()  # as an earlier version left it
    (out / "notes.txt").write_text("mine")
    resumed = run_cli(*args)
    assert resumed.returncode == 0 and "3 done by an earlier run" in resumed.stdout, resumed.stderr
    (out / MANIFEST_NAME).unlink()
    again = run_cli(*args, "--overwrite", "--review", 0)
    assert again.returncode == 0 and "labelled 3 image(s)" in again.stdout, again.stderr
    assert (out / "notes.txt").read_text() == "mine" and not (out / "review.png").exists()
