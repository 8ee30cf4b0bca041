"""`yoloworld export --format openvino --int8` end to end with the built-in demo model (trained on synthetic
shapes, 256 px): calibration from a folder, `predict` and `val` on the export folder, AP50 kept; and the bad
inputs of deployment as one line with exit code 2."""

import json
import sys
from pathlib import Path

import pytest

from yoloworld.cli import main
from yoloworld.data.synth import SynthConfig, synthesize

DEMO = Path(__file__).resolve().parents[1] / "yoloworld" / "assets" / "demo.pt"


def call(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Synthetic shapes: a calibration folder and, drawn independently, a small validation set."""
    root = tmp_path_factory.mktemp("shapes")
    synthesize(root / "calib", SynthConfig(images=8, seed=99, max_side=320), overwrite=True)
    synthesize(root / "val", SynthConfig(images=12, seed=5, max_side=320), overwrite=True)
    return {"calib": root / "calib" / "coco" / "images", "val": root / "val" / "coco"}


def val_metrics(weights, shapes, tmp_path, capsys) -> dict:
    metrics = tmp_path / f"{Path(weights).name}.json"
    code, _, err = call(["val", "--weights", weights, "--ann", shapes["val"] / "annotations.json", "--images",
                         shapes["val"] / "images", "--metrics-json", metrics], capsys)
    assert code == 0, err
    return json.loads(metrics.read_text())


def test_int8_openvino_export_keeps_ap50_and_runs_in_predict_and_val(shapes, tmp_path, capsys):
    out = tmp_path / "demo_openvino_model"
    code, stdout, err = call(["export", "--weights", DEMO, "--format", "openvino", "--int8", "--calib",
                              shapes["calib"], "--calib-images", 8, "--out", out], capsys)
    assert code == 0, err
    assert "INT8" in stdout and (out / "demo.xml").is_file()
    fp32, int8 = val_metrics(DEMO, shapes, tmp_path, capsys), val_metrics(out, shapes, tmp_path, capsys)
    assert fp32["AP50"] >= 0.9 and int8["AP50"] >= fp32["AP50"] - 0.01  # the bound: <= 1 point of AP50
    detections = tmp_path / "dets.json"
    code, _, err = call(["predict", shapes["val"] / "images", "--weights", out / "demo.xml", "--json", detections,
                         "--no-save"], capsys)
    assert code == 0, err
    assert sum(len(r["detections"]) for r in json.loads(detections.read_text())) > 0
    # exported for a fixed 256x256 input: rect inference is refused in one line
    code, _, err = call(["predict", shapes["val"] / "images", "--weights", out, "--rect", "--no-save"], capsys)
    assert code == 2 and "--dynamic-shape" in err and "\n" not in err.strip()


@pytest.mark.parametrize("flags, message", [
    (["--imgsz", "100"], "not a multiple of 32"),
    (["--format", "openvino", "--int8", "--calib", "{empty}"], "holds no images"),
    (["--format", "openvino", "--int8", "--calib", "{empty}/missing"], "no such folder"),
    (["--int8", "--calib", "{empty}"], "--format openvino"),
    (["--format", "openvino", "--int8"], "--calib DIR"),
])
def test_bad_export_requests_are_one_line_with_exit_code_2(flags, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    flags = [f.format(empty=tmp_path / "empty") for f in flags]
    code, _, err = call(["export", "--weights", DEMO, "--out", tmp_path / "m_openvino_model", *flags], capsys)
    assert code == 2 and message in err and "\n" not in err.strip(), err


@pytest.mark.parametrize("package, flags, extra", [
    ("openvino", ["--format", "openvino"], "yoloworld[openvino]"),
    ("nncf", ["--format", "openvino", "--int8", "--calib", "."], "yoloworld[openvino]"),
])
def test_a_missing_runtime_package_is_one_line(package, flags, extra, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # `import PACKAGE` now fails like an install without it
    code, _, err = call(["export", "--weights", DEMO, "--out", tmp_path / "m_openvino_model", *flags], capsys)
    assert code == 2 and extra in err and "\n" not in err.strip(), err
    (tmp_path / "m_openvino_model").mkdir()
    (tmp_path / "m_openvino_model" / "m.xml").write_text("<net/>")
    if package == "openvino":
        code, _, err = call(["predict", ".", "--weights", tmp_path / "m_openvino_model", "--no-save"], capsys)
        assert code == 2 and extra in err and "\n" not in err.strip(), err
