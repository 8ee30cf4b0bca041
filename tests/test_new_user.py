"""What a new user meets, each in a fresh process as they run it (issue 22): the README's export line, hints that
are commands that work, defaults that chain, help without torch, and one-line errors that name the right thing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO, cli_env, run_cli

DEMO = REPO / "yoloworld" / "assets" / "demo.pt"
DEMO_CLASSES = "red circle,green square"


def run_python(code: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=cli_env(), timeout=300, cwd=cwd or REPO)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[-1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """`data synth --out data/synth` with its defaults (small images), in a folder of its own."""
    root = tmp_path_factory.mktemp("user")
    result = run_cli("data", "synth", "--out", "data/synth", "--images", 10, "--min-side", 96, "--max-side", 128,
                     cwd=root)
    assert result.returncode == 0, result.stderr
    return root


# ---------------------------------------------------------------- export (22.1)

@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_the_readme_export_line_with_nms_runs_in_a_fresh_process(tmp_path, runtime):
    pytest.importorskip("onnxruntime" if runtime == "onnx" else "openvino")
    extra = ["--dynamic-batch"] if runtime == "onnx" else []
    result = run_cli("export", "--weights", DEMO, "--classes", DEMO_CLASSES, "--format", runtime, "--nms", *extra,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "_cuda_version" not in result.stderr
    written = tmp_path / ("demo.onnx" if runtime == "onnx" else "demo_openvino_model")
    assert written.exists()


# ---------------------------------------------------------------- hints (22.4)

def test_an_offline_weights_name_in_train_names_the_recipe_key(synth):
    result = run_cli("train", "synth_demo", "model.weights=yolo_world_v2_s", cwd=synth)
    line = one_line_error(result)
    assert "model.weights=/path/to/yolo_world_v2_s_obj365v1_goldg_pretrain-55b943ea.pth" in line, line


def test_yolo2coco_prints_a_training_command_that_reads_its_files(synth):
    result = run_cli("convert", "yolo2coco", "data/synth/yolo", "--texts", "texts.json", cwd=synth)
    assert result.returncode == 0, result.stderr
    assert "--ann" not in result.stdout  # `train` has no such flag
    command = result.stdout.strip().splitlines()[-1].split(": ", 1)[1].split()
    assert command[:3] == ["yoloworld", "train", "finetune_coco"]
    # every data path and key of the hint is accepted: the run gets as far as the (offline) weights download
    line = one_line_error(run_cli(*command[1:], cwd=synth))
    assert "yolo_world_v2_s: cannot download" in line, line
    shown = run_cli(*command[1:], "--show", cwd=synth).stdout
    assert "ann: data/synth/yolo/annotations/val.json" in shown and "classes_file: texts.json" in shown


# ---------------------------------------------------------------- defaults chain (22.6)

def test_data_synth_writes_the_val_split_the_synth_demo_recipe_reads(synth):
    assert (synth / "data" / "synth" / "coco" / "annotations_val.json").is_file()
    assert "annotations_val.json" in run_cli("data", "synth", "--help").stdout
    for split in ("annotations.json", "annotations_val.json"):
        result = run_cli("data", "check", "--ann", f"data/synth/coco/{split}", "--images", "data/synth/coco/images",
                         "--no-grid", cwd=synth)
        assert result.returncode == 0, result.stderr


def test_the_training_command_data_synth_prints_trains_and_validates(tmp_path):
    written = run_cli("data", "synth", "--out", "data/synth", "--images", 6, "--min-side", 96, "--max-side", 128,
                      cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    command = written.stdout.strip().splitlines()[-1]
    assert command == "train on it: yoloworld train synth_demo", command
    tiny = ["data.augment.image_size=64", "data.workers=0", "schedule.epochs=1", "schedule.warmup_min_iters=1"]
    trained = run_cli("train", "synth_demo", *tiny, cwd=tmp_path, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "epoch 1 validation: AP" in trained.stderr + trained.stdout


# ---------------------------------------------------------------- help, version, --list (22.10)

def test_help_of_every_command_does_not_import_torch():
    result = run_python("""
        import sys
        from yoloworld.cli import COMMANDS, main
        for argv in [["--help"]] + [[name, "--help"] for name in COMMANDS] + [["data", "synth", "--help"]]:
            try:
                main(argv)
            except SystemExit as exc:
                assert exc.code == 0, argv
            assert "torch" not in sys.modules, argv
        print("torch-free")
    """)
    assert result.returncode == 0 and "torch-free" in result.stdout, result.stderr[-2000:]


def test_version():
    from yoloworld import __version__

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"yoloworld {__version__}"


def test_train_list_shows_each_recipe_description_whole():
    from yoloworld.engine.train_config import RECIPES_DIR

    listing = " ".join(run_cli("train", "--list").stdout.split())
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        paragraph = []  # the recipe's opening comment, up to its first blank comment line
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#") or not line.strip("# "):
                break
            paragraph.append(line.strip("# "))
        assert f"{path.stem} {' '.join(' '.join(paragraph).split())}" in listing, path.stem


# ---------------------------------------------------------------- one-line errors that name the right thing

def test_to_supervision_without_supervision_names_the_extra():
    result = run_python("""
        import sys
        sys.modules["supervision"] = None  # as if not installed
        import numpy as np
        from yoloworld.errors import YOLOWorldError
        from yoloworld.results import Results
        r = Results(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), ["a"], (8, 8))
        try:
            r.to_supervision()
        except YOLOWorldError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pip install 'yoloworld[supervision]'" in result.stdout


def test_embed_images_errors_name_the_images_flag(tmp_path):
    (tmp_path / "refs").mkdir()
    line = one_line_error(run_cli("embed", "--images", "refs/", "--weights", DEMO, "--out", "e.npy", cwd=tmp_path))
    assert line.startswith("error: --images 'refs/'") and "--visual-prompt" not in line, line


def test_a_model_saved_without_padding_and_text_tower_takes_a_subset_and_never_names_the_padding(tmp_path, synth):
    result = run_python(f"""
        from yoloworld import YOLOWorld
        model = YOLOWorld.from_pretrained({str(DEMO)!r})
        model.set_classes(["red circle", "green square"], padding=False)
        model.save("unpadded.pt")
    """, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    images = synth / "data" / "synth" / "coco" / "images"
    ok = run_cli("predict", images, "--weights", "unpadded.pt", "--classes", "red circle", "--no-save", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    line = one_line_error(run_cli("predict", images, "--weights", "unpadded.pt", "--classes", "red circle,purple cow",
                                  "--no-save", cwd=tmp_path))
    assert "'purple cow'" in line and "' '" not in line, line


def test_a_mistyped_weights_name_gets_a_suggestion(tmp_path):
    line = one_line_error(run_cli("embed", "--classes", "a", "--weights", "yolo_world_v2s", "--out", "e.npy",
                                  cwd=tmp_path))
    assert "did you mean yolo_world_v2_s" in line, line


def test_val_scores_the_json_that_predict_writes_like_val_itself(synth):
    images, ann = "data/synth/coco/images", "data/synth/coco/annotations_val.json"
    settings = ["--weights", DEMO, "--conf", "0.001"]
    predicted = run_cli("predict", images, *settings, "--json", "dets.json", "--no-save", cwd=synth)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    scored = run_cli("val", "--predictions", "dets.json", "--ann", ann, "--metrics-json", "from_json.json", cwd=synth)
    assert scored.returncode == 0, scored.stderr[-2000:]
    direct = run_cli("val", *settings, "--ann", ann, "--images", images, "--metrics-json", "direct.json", cwd=synth)
    assert direct.returncode == 0, direct.stderr[-2000:]
    from_json = json.loads((synth / "from_json.json").read_text())
    reference = json.loads((synth / "direct.json").read_text())
    assert reference["AP50"] > 0.5
    for key in ("AP", "AP50", "AP75"):
        assert abs(from_json[key] - reference[key]) < 2e-3, (key, from_json[key], reference[key])


def test_errors_are_spelled_one_way(tmp_path):
    for argv in (["predict", "nothere.jpg", "--weights", DEMO], ["train", "no_such_recipe"],
                 ["val", "--ann", "x.json"], ["data", "check"], ["export", "--weights", "nothere.pth"]):
        result = run_cli(*argv, cwd=tmp_path)
        assert result.returncode == 2, argv
        assert result.stderr.startswith("error: ") and "Error:" not in result.stderr, (argv, result.stderr)
