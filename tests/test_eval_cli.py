"""`yoloworld val --predictions`: end to end, reports, and one-line errors for bad input."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_coco import make_dataset

from yoloworld.cli import main
from yoloworld.eval import evaluate_detections

REPO = Path(__file__).resolve().parents[1]


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture()
def coco_files(tmp_path):
    ground_truth, predictions = make_dataset(num_images=40, num_categories=5, seed=5)
    return write_json(tmp_path / "ann.json", ground_truth), write_json(tmp_path / "preds.json", predictions)


@pytest.fixture()
def lvis_files(tmp_path):
    ground_truth, predictions = make_dataset(num_images=40, num_categories=9, seed=6, lvis=True)
    return write_json(tmp_path / "lvis.json", ground_truth), write_json(tmp_path / "lvis_preds.json", predictions)


def test_coco_predictions_end_to_end(coco_files, tmp_path, capsys):
    ann, preds = coco_files
    metrics_path, out_dir = tmp_path / "metrics.json", tmp_path / "report"
    code = main(["val", "--predictions", str(preds), "--ann", str(ann), "--metrics-json", str(metrics_path),
                 "--out-dir", str(out_dir)])
    assert code == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["mode"] == "coco"
    assert set(metrics) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"}
    assert metrics == pytest.approx(evaluate_detections(str(ann), str(preds)))
    printed = capsys.readouterr().out
    assert "COCO AP" in printed and f"{100 * metrics['AP']:.1f}" in printed
    with open(out_dir / "per_class_ap_coco.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["category_id"]) for row in rows] == [1, 2, 3, 4, 5]
    assert all(0 <= float(row["AP"]) <= 1 for row in rows)
    assert (out_dir / "pr_curve_coco.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lvis_reports_both_labelled_modes(lvis_files, tmp_path, capsys):
    ann, preds = lvis_files
    metrics_path = tmp_path / "metrics.json"
    assert main(["val", "--predictions", str(preds), "--ann", str(ann), "--metrics-json", str(metrics_path)]) == 0
    printed = capsys.readouterr().out
    assert "LVIS standard AP (max 300 detections per image)" in printed
    assert "LVIS Fixed AP (top 10,000 detections per class over the dataset, no per-image cap)" in printed
    metrics = json.loads(metrics_path.read_text())
    assert metrics["mode"] == "lvis-standard" and metrics["fixed_mode"] == "lvis-fixed"
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"):
        assert isinstance(metrics[key], float) and isinstance(metrics[f"fixed_{key}"], float)
    assert metrics["AP"] == pytest.approx(evaluate_detections(str(ann), str(preds), lvis_mode="standard")["AP"])


def test_lvis_single_mode(lvis_files, tmp_path):
    ann, preds = lvis_files
    metrics_path = tmp_path / "metrics.json"
    assert main(["val", "--predictions", str(preds), "--ann", str(ann), "--lvis-mode", "fixed",
                 "--metrics-json", str(metrics_path)]) == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["mode"] == "lvis-fixed" and "fixed_AP" not in metrics


def bad_input_cases(tmp_path: Path, ann: Path, preds: Path) -> dict:
    """name -> (argv, words the one-line message must contain)."""
    predictions = json.loads(preds.read_text())
    unknown_image = [dict(predictions[0], image_id=987654)] + predictions[1:]
    unknown_category = predictions[:3] + [dict(predictions[3], category_id=77)]
    no_score = [{key: value for key, value in predictions[0].items() if key != "score"}]
    five_numbers = [dict(predictions[0], bbox=[1, 2, 3, 4, 5])]
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = bad / "broken.json"
    broken.write_text('{"images": [],\n "annotations": [,]}')
    val = ["val", "--predictions"]
    return {
        "unknown image id": (val + [str(write_json(bad / "p1.json", unknown_image)), "--ann", str(ann)],
                             ["p1.json", "image ids", "987654"]),
        "unknown category id": (val + [str(write_json(bad / "p2.json", unknown_category)), "--ann", str(ann)],
                                ["p2.json", "category ids", "77"]),
        "empty predictions": (val + [str(write_json(bad / "p3.json", [])), "--ann", str(ann)], ["no detections"]),
        "missing score": (val + [str(write_json(bad / "p4.json", no_score)), "--ann", str(ann)],
                          ["p4.json", "'score'"]),
        "bbox of five numbers": (val + [str(write_json(bad / "p5.json", five_numbers)), "--ann", str(ann)],
                                 ["prediction 0", "malformed bbox"]),
        "annotation file as predictions": (val + [str(ann), "--ann", str(ann)], ["annotation file"]),
        "results list as annotations": (val + [str(preds), "--ann", str(preds)], ["results"]),
        "annotations without categories": (
            val + [str(preds), "--ann", str(write_json(bad / "a1.json", {"images": [], "annotations": []}))],
            ["'categories'"]),
        "captions file": (
            val + [str(preds), "--ann", str(write_json(bad / "a2.json", {
                "images": [{"id": 1}], "categories": [{"id": 1, "name": "x"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "caption": "a cat"}]}))],
            ["no 'bbox'"]),
        "malformed JSON": (val + [str(preds), "--ann", str(broken)], ["line 2, column"]),
        "missing file": (val + [str(bad / "nope.json"), "--ann", str(ann)], ["not found"]),
        "class texts of the wrong length": (
            ["val", "--weights", "w.pth", "--ann", str(ann), "--images", str(bad),
             "--classes-file", str(write_json(bad / "t.json", [["cat"], ["dog"]]))], ["2 synonym lists", "5 categories"]),
        "images not in the folder": (["val", "--weights", "w.pth", "--ann", str(ann), "--images", str(bad)],
                                     ["40 images not found", "--images"]),
        "weights without images": (["val", "--weights", str(bad / "w.pth"), "--ann", str(ann)], ["--images"]),
    }


def test_bad_input_gives_one_line_errors(coco_files, tmp_path, capsys):
    ann, preds = coco_files
    for name, (argv, words) in bad_input_cases(tmp_path, ann, preds).items():
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert err.startswith("error: ") and "\n" not in err, f"{name}: {err!r}"
        assert all(word in err for word in words), f"{name}: {err!r}"


def test_bad_input_through_the_console_entry_point(coco_files, tmp_path):
    ann, _ = coco_files
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    completed = subprocess.run(
        [sys.executable, "-m", "yoloworld", "val", "--predictions", str(write_json(tmp_path / "e.json", [])),
         "--ann", str(ann)], capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().count("\n") == 0 and "no detections" in completed.stderr
