"""Bad input never ends in a traceback: every command, every class of bad input, one line naming the file or flag,
exit code 2. Inputs are generated here, small. Models: fixtures/official/v2_n.pth and tiny-clip/."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_eval_val_model import write_tiny_coco

from yoloworld.cli import main
from yoloworld.errors import YOLOWorldError


def run_main(argv, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    return code, capsys.readouterr().err.strip()


def assert_one_line(argv, capsys, *words, code: int = 2) -> str:
    got, err = run_main(argv, capsys)
    assert got == code, (argv, got, err)
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert all(word in err for word in words), (words, err)
    return err


@pytest.fixture(scope="module")
def world(fixtures, tmp_path_factory):
    """A folder of images, a tiny COCO set, a file and a folder to misuse as outputs."""
    root = tmp_path_factory.mktemp("world")
    images = root / "images"
    images.mkdir()
    ann = write_tiny_coco(images)
    afile = root / "afile.txt"
    afile.write_text("not a folder")
    return {"root": root, "images": images, "ann": ann, "afile": afile, "folder": images,
            "model": ["--weights", fixtures / "v2_n.pth", "--text-model", fixtures / "tiny-clip"]}


# ---------------------------------------------------------------- 1. outputs that cannot be written

def output_cases(w):
    m, ann, images, afile, folder = w["model"], w["ann"], w["images"], w["afile"], w["folder"]
    under_file = afile / "x"
    return {
        "predict --save-dir is a file": (["predict", images, *m, "--classes", "a", "--save-dir", afile], "--save-dir"),
        "predict --json is a folder": (["predict", images, *m, "--classes", "a", "--json", folder], "--json"),
        "predict --json under a file": (["predict", images, *m, "--classes", "a", "--json", under_file / "d.json"],
                                        "--json"),
        "val --metrics-json is a folder": (["val", *m, "--ann", ann, "--images", images, "--metrics-json", folder],
                                           "--metrics-json"),
        "val --save-json under a file": (["val", *m, "--ann", ann, "--images", images, "--save-json",
                                          under_file / "p.json"], "--save-json"),
        "val --out-dir is a file": (["val", *m, "--ann", ann, "--images", images, "--out-dir", afile], "--out-dir"),
        "embed --out is a folder": (["embed", "--classes", "a", "--text-model", m[3], "--out", w["root"] / "d.npy"],
                                    "--out"),
        "reparam --out under a file": (["reparam", "--weights", m[1], "--embeddings", w["root"] / "none.npy", "--out",
                                        under_file / "r.pth"], "--out"),
        "export --out is a folder": (["export", *m, "--classes", "a", "--out", w["root"] / "d.onnx"], "--out"),
        "data check --grid is a folder": (["data", "check", "--ann", ann, "--images", images, "--grid", folder],
                                          "--grid"),
        "data synth --out is a file": (["data", "synth", "--out", afile, "--images", "2"], "--out"),
        "convert --texts is a folder": (["convert", "yolo2coco", w["root"] / "yolo", "--texts", folder], "--texts"),
        "texts --out is a folder": (["texts", "--names", "a", "--out", folder], "--out"),
        "train out= is a file": (["train", "synth_demo", f"out={afile}"], "out"),
    }


def test_outputs_that_cannot_be_written_are_refused_before_any_work(world, capsys):
    (world["root"] / "d.npy").mkdir(exist_ok=True)
    (world["root"] / "d.onnx").mkdir(exist_ok=True)
    cases = output_cases(world)
    for name, (argv, flag) in cases.items():
        err = assert_one_line(argv, capsys, flag)
        assert "Traceback" not in err, name


# ---------------------------------------------------------------- 2 and 3. sizes and flags

FLAG_CASES = {
    "--imgsz -1": (["--imgsz", "-1"], "--imgsz"),
    "--imgsz 0": (["--imgsz", "0"], "--imgsz"),
    "--imgsz 100": (["--imgsz", "100"], "--imgsz"),
    "--imgsz 100000": (["--imgsz", "100000"], "--imgsz"),
    "--conf -0.1": (["--conf", "-0.1"], "--conf"),
    "--conf 2": (["--conf", "2"], "--conf"),
    "--conf nan": (["--conf", "nan"], "--conf"),
    "--iou 0": (["--iou", "0"], "--iou"),
    "--iou 1.5": (["--iou", "1.5"], "--iou"),
    "--max-det 0": (["--max-det", "0"], "--max-det"),
    "--batch 0": (["--batch", "0"], "--batch"),
    "--batch -3": (["--batch", "-3"], "--batch"),
    "--device foo": (["--device", "foo"], "foo"),
    "--device mps": (["--device", "mps"], "mps"),
    "--classes ''": (["--classes", ""], "class"),
    "--classes 'a;b'": (["--classes", "a;b"], ";"),
}


@pytest.mark.parametrize("case", FLAG_CASES)
def test_bad_flags_of_predict_are_one_line(world, capsys, case):
    extra, word = FLAG_CASES[case]
    argv = ["predict", world["images"], *world["model"], "--no-save"]
    if "--classes" not in extra:
        argv += ["--classes", "a"]
    assert_one_line(argv + extra, capsys, word)


@pytest.mark.parametrize("command", ["val", "export"])
def test_bad_flags_of_val_and_export_are_one_line(world, capsys, command):
    base = {"val": ["val", *world["model"], "--ann", world["ann"], "--images", world["images"]],
            "export": ["export", *world["model"], "--classes", "a", "--out", world["root"] / "m.onnx"]}[command]
    for extra, word in (["--imgsz", "100"], "--imgsz"), (["--conf", "inf"], "--conf"), (["--device", "foo"], "foo"):
        assert_one_line(base + extra, capsys, word)
    if command == "export":
        assert_one_line(base + ["--opset", "99"], capsys, "--opset")


def test_bad_recipe_values_are_one_line(capsys):
    for override, word in (("optim.batch_size=0", "optim.batch_size"), ("eval.batch_size=0", "eval.batch_size"),
                           ("optim.lr=[", "optim.lr"), ("data.augment.image_size=100", "image_size"),
                           ("device=foo", "foo")):
        assert_one_line(["train", "synth_demo", override, "--show"], capsys, word)


def test_huge_and_thin_images_predict_or_fail_cleanly(world, capsys, tmp_path):
    thin = tmp_path / "thin.png"
    cv2.imwrite(str(thin), np.full((20, 20000, 3), 100, np.uint8))
    code, err = run_main(["predict", thin, *world["model"], "--classes", "a", "--no-save"], capsys)
    assert code == 0, err
    assert_one_line(["data", "synth", "--out", tmp_path / "s", "--images", "1", "--max-side", "100000"], capsys,
                    "--max-side")


# ---------------------------------------------------------------- 4. malformed files

def malformed_files(root):
    deep = "[" * 100000 + "]" * 100000
    files = {
        "deep.json": deep,
        "bigint.json": json.dumps([["a"]])[:-1] + ", " + "9" * 5000 + "]",
        "nan.json": '[["a"], NaN]',
        "latin1.txt": "caf\xe9\n".encode("latin-1"),
        "dict.json": '{"a": 1}',
    }
    paths = {}
    for name, content in files.items():
        path = root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        paths[name] = path
    return paths


def test_malformed_class_files_are_one_line_naming_the_file(world, capsys, tmp_path):
    for name, path in malformed_files(tmp_path).items():
        for argv in (["predict", world["images"], *world["model"], "--no-save", "--classes-file", path],
                     ["embed", "--classes-file", path, "--text-model", world["model"][3], "--out", tmp_path / "e.npy"]):
            assert_one_line(argv, capsys, path.name)


def coco_with(ann_path, tmp_path, mutate) -> str:
    data = json.loads(ann_path.read_text())
    mutate(data)
    out = tmp_path / "bad_ann.json"
    out.write_text(json.dumps(data, allow_nan=True))
    return out


ANNOTATION_MUTATIONS = {
    "NaN box": lambda d: d["annotations"][0].__setitem__("bbox", [float("nan"), 1, 2, 3]),
    "infinite box": lambda d: d["annotations"][0].__setitem__("bbox", [1, 1, float("inf"), 3]),
    "string box": lambda d: d["annotations"][0].__setitem__("bbox", ["a", 1, 2, 3]),
    "list as image id": lambda d: d["annotations"][0].__setitem__("image_id", [1]),
    "huge category id": lambda d: d["annotations"][0].__setitem__("category_id", 10**30),
    "images not a list": lambda d: d.__setitem__("images", {"a": 1}),
}


@pytest.mark.parametrize("case", ANNOTATION_MUTATIONS)
def test_malformed_annotations_never_crash_data_check_or_val(world, capsys, tmp_path, case):
    ann = coco_with(world["ann"], tmp_path, ANNOTATION_MUTATIONS[case])
    code, err = run_main(["data", "check", "--ann", ann, "--images", world["images"], "--no-grid"], capsys)
    assert code in (0, 2) and "Traceback" not in err and (code == 0 or "\n" not in err), err
    code, err = run_main(["val", *world["model"], "--ann", ann, "--images", world["images"]], capsys)
    assert code in (0, 2) and "Traceback" not in err and (code == 0 or ann.name in err), err


def test_a_broken_clip_folder_is_one_line(world, capsys, tmp_path):
    import shutil

    clip = tmp_path / "clip"
    shutil.copytree(world["model"][3], clip)
    (clip / "config.json").write_text("{broken")
    assert_one_line(["embed", "--classes", "a", "--text-model", clip, "--out", tmp_path / "e.npy"], capsys, "clip")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children,
                                                                                      max_size=4), max_leaves=20))
def test_any_json_as_a_class_file_is_accepted_or_one_error(tmp_path_factory, data):
    """Property: whatever JSON a class-text file holds, reading it gives class lists or one YOLOWorldError."""
    from yoloworld.vocabulary import load_class_file

    path = tmp_path_factory.mktemp("prop") / "texts.json"
    path.write_text(json.dumps(data, allow_nan=True))
    try:
        classes = load_class_file(path)
    except YOLOWorldError as exc:
        assert "\n" not in str(exc) and "texts.json" in str(exc)
    else:
        assert all(isinstance(g, list) and g and all(isinstance(t, str) for t in g) for g in classes)


# ---------------------------------------------------------------- 5. checkpoints and side files

def test_bad_checkpoints_and_side_files_are_checkpoint_errors(world, capsys, tmp_path, fixtures):
    state = torch.load(fixtures / "v2_n.pth", weights_only=True)
    key = next(iter(state["state_dict"]))
    state["state_dict"][key] = "a string"
    torch.save(state, tmp_path / "strings.pth")
    assert_one_line(["predict", world["images"], "--weights", tmp_path / "strings.pth", "--classes", "a"], capsys,
                    "strings.pth", "not a tensor")
    np.save(tmp_path / "emb.npy", np.zeros((3, 7), np.float32))
    (tmp_path / "emb.json").write_text(json.dumps({"classes": [["a"]], "padded": False}))
    assert_one_line(["reparam", "--weights", fixtures / "v2_n.pth", "--embeddings", tmp_path / "emb.npy", "--out",
                     tmp_path / "r.pth"], capsys, "emb")
    (tmp_path / "yaml.pth").write_text("model: s\n")
    assert_one_line(["predict", world["images"], "--weights", tmp_path / "yaml.pth", "--classes", "a"], capsys,
                    "yaml.pth", "not")


# ---------------------------------------------------------------- 7. a bad video among good files

def test_an_unreadable_video_in_a_folder_is_skipped_with_a_warning(world, capsys, tmp_path, caplog):
    folder = tmp_path / "mixed"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((64, 64, 3), 80, np.uint8))
    (folder / "broken.mp4").write_bytes(b"not a video")
    code, err = run_main(["predict", folder, *world["model"], "--classes", "a", "--no-save"], capsys)
    assert code == 0, err
    assert any("broken.mp4" in r.getMessage() for r in caplog.records)
