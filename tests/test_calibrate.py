"""Calibrated per-class thresholds: `yoloworld calibrate` finds them on a labelled sample and stores them with the
vocabulary; predict, label and the API apply them unless a conf is given.

The sample: the demo model on striped shapes (it was trained on solid ones), where its scores drop unevenly
from class to class, the case one global threshold serves badly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import match_detections, run_cli
from yoloworld.data.synth import SynthConfig, synthesize
from yoloworld.errors import CheckpointError
from yoloworld.eval.calibrate import ClassCurve, Target, class_threshold, global_threshold
from yoloworld.thresholds import ClassThresholds

SHAPES = dict(min_side=256, max_side=256, val_fraction=0.0, texture="striped")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """(calibrated weights, calibrate's output, the sample's images)."""
    root = tmp_path_factory.mktemp("calibrate")
    synthesize(root / "synth", SynthConfig(images=12, seed=5, **SHAPES))
    coco = root / "synth" / "coco"
    out = root / "demo_calibrated.pth"
    result = run_cli("calibrate", "--weights", "demo", "--ann", coco / "annotations.json", "--images",
                     coco / "images", "--imgsz", 256, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result.stdout, coco / "images"


def test_calibrate_prints_a_per_class_table_and_stores_the_thresholds_with_the_vocabulary(calibrated):
    import yoloworld

    out, stdout, _ = calibrated
    model = yoloworld.load(out)
    assert model.thresholds is not None and model.thresholds.target == "f1"
    assert set(model.thresholds.per_class) <= set(model.class_names)
    assert len(model.thresholds.per_class) >= 6  # most classes have boxes in 12 images
    values = list(model.thresholds.per_class.values())
    assert all(0.01 <= v <= 1 for v in values) and max(values) - min(values) > 0.05  # not one global value
    for name in model.class_names:
        assert any(line.startswith(name) for line in stdout.splitlines()), name
    assert "mean F1" in stdout


def test_predict_applies_each_class_its_own_threshold_and_says_so_once(calibrated, caplog):
    import yoloworld

    out, _, images = calibrated
    model = yoloworld.load(out)
    with caplog.at_level("INFO"):
        model.predict(str(next(images.glob("*.jpg"))), conf=0.3)
    assert "per-class thresholds" not in caplog.text  # a conf given: one threshold for all
    paths = sorted(str(p) for p in images.glob("*.jpg"))[:4]
    thresholds = torch.tensor(model.thresholds.for_classes(model.vocabulary.classes))
    calibrated_results = model.predict(paths)
    everything = model.predict(paths, conf=float(thresholds.min()))
    for ours, wide in zip(calibrated_results, everything):
        keep = wide.scores > thresholds.numpy()[wide.class_ids]  # NMS is per class: the same as a filter after it
        assert sorted(zip(ours.class_ids.tolist(), np.round(ours.scores, 5).tolist())) == \
            sorted(zip(wide.class_ids[keep].tolist(), np.round(wide.scores[keep], 5).tolist()))
    result = run_cli("predict", *paths[:2], "--weights", out, "--no-save")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("calibrated per-class thresholds") == 1


def test_synonyms_share_their_class_threshold_and_new_classes_get_the_fallback():
    thresholds = ClassThresholds({"red circle": 0.4, "blue square": 0.2}, fallback=0.3)
    assert thresholds.for_classes([["red disc", "red circle"], ["blue square"], ["green star"]]) == [0.4, 0.2, 0.3]


def test_thresholds_follow_the_target():
    # best first: hit, hit, miss, hit, miss, miss; 3 boxes labelled
    curve = ClassCurve(np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), np.array([1, 1, 0, 1, 0, 0], bool), 3)
    assert class_threshold(curve, Target("f1"), 0.01) == pytest.approx(0.55)  # 3 of 4 kept: F1 0.857
    assert class_threshold(curve, Target.parse("precision=0.9"), 0.01) == pytest.approx(0.75)  # the two sure ones
    # within one standard error of the best F1 (3 boxes: 0.2), the cut nearest the single threshold is taken
    assert class_threshold(curve, Target("f1"), 0.01, prior=0.8) == pytest.approx(0.75)
    assert class_threshold(curve, Target("f1"), 0.01, prior=0.25) == pytest.approx(0.205)  # 5 of 6 kept: F1 0.67
    tied = ClassCurve(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 0], bool), 1)
    assert class_threshold(tied, Target("f1"), 0.01) == pytest.approx(0.35)  # never between equal scores
    assert class_threshold(ClassCurve(np.array([0.5]), np.array([False]), 2), Target("f1"), 0.01) is None
    # one threshold for both: 0.55 keeps all of the first class's hits and none of the second's misses
    other = ClassCurve(np.array([0.95, 0.5]), np.array([1, 0], bool), 1)
    assert global_threshold([curve, other], Target("f1"), 0.01) == pytest.approx(0.55)


def test_label_takes_calibrated_thresholds_unless_a_conf_is_given():
    from yoloworld.autolabel import LabelSettings

    settings = LabelSettings(class_conf={"red square": 0.9})
    assert settings.thresholds(["red circle", "red square"], [0.4, 0.2]).tolist() == pytest.approx([0.4, 0.9])
    assert LabelSettings(conf=0.5).thresholds(["red circle"], [0.4]).tolist() == [0.5]
    assert LabelSettings().thresholds(["red circle"]).tolist() == [0.25]


def test_bad_targets_and_malformed_thresholds_are_one_line_errors(tmp_path):
    result = run_cli("calibrate", "--weights", "demo", "--ann", tmp_path / "a.json", "--images", tmp_path,
                     "--out", tmp_path / "o.pth", "--target", "precision=2")
    assert result.returncode == 2 and "--target 'precision=2'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(CheckpointError, match="threshold 1.5"):
        ClassThresholds.from_meta({"classes": {"a": 1.5}, "fallback": 0.2}, "w.pth")
    with pytest.raises(CheckpointError, match="malformed metadata"):
        ClassThresholds.from_meta({"classes": ["a"]}, "w.pth")


def test_exports_keep_the_thresholds_and_negatives_and_the_runner_applies_them(calibrated, tmp_path):
    import yoloworld

    out, _, images = calibrated
    onnx = tmp_path / "calibrated.onnx"
    classes, negatives = ["red circle", "blue square"], ["red square"]
    result = run_cli("export", "--weights", out, "--nms", "--classes", ",".join(classes), "--negative",
                     ",".join(negatives), "--out", onnx, "--no-check")
    assert result.returncode == 0, result.stderr
    exported, model = yoloworld.load(onnx), yoloworld.load(out).set_classes(classes, negatives=negatives)
    assert exported.thresholds == model.thresholds and exported.vocabulary.negatives == negatives
    assert exported.meta["conf"] == pytest.approx(min(model.thresholds.for_classes(model.vocabulary.classes)))
    paths = sorted(str(p) for p in images.glob("*.jpg"))[:6]
    found = 0
    for ours, theirs in zip(exported.predict(paths), model.predict(paths)):
        _, unmatched_ours, unmatched_theirs = match_detections(ours, theirs, box_tol=0.5, score_tol=1e-3)
        assert not len(unmatched_ours) and not len(unmatched_theirs)
        found += len(ours)
    assert found  # the comparison compared something


def test_the_app_uses_calibrated_thresholds_unless_unticked_and_takes_negatives(calibrated):
    import cv2

    import yoloworld
    from yoloworld.app.session import AppSession

    out, _, images = calibrated
    path = sorted(images.glob("*.jpg"))[0]
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    session = AppSession([str(out)])
    try:
        found = session.detect_image(image, str(out), "", 100, 0.99, 0.7)  # the box ticked: the slider is unused
        expected = yoloworld.load(out).predict(str(path), iou=0.7)[0]
        assert sorted(d["score"] for d in found.records[0]["detections"]) == \
            pytest.approx(sorted(expected.scores.tolist()), abs=1e-4)
        assert not session.detect_image(image, str(out), "", 100, 0.99, 0.7, "", False).records[0]["detections"]
        negated = session.detect_image(image, str(out), "red circle", 100, 0.01, 0.7, "red square", False)
        assert {d["class_name"] for d in negated.records[0]["detections"]} <= {"red circle"}
        assert session.model(str(out)).vocabulary.negatives == ["red square"]
        session.detect_image(image, str(out), "", 100, 0.01, 0.7, "", False)  # the box emptied: negatives gone
        assert not session.model(str(out)).vocabulary.negatives
    finally:
        session.close()
