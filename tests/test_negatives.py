"""Negative prompts: scored with the classes, never reported, and a box a negative scores higher is not the class.

Look-alike data: red circles (labelled) among red squares and triangles (drawn, never labelled); the class is
"red circle", the negatives the look-alikes' own texts.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli
from yoloworld.data.synth import SynthConfig, synthesize
from yoloworld.errors import InputError
from yoloworld.eval import load_annotations, results_to_coco
from yoloworld.eval.calibrate import class_curves, prf

LOOK_ALIKES = ["red square", "red triangle"]
CONF = 0.01  # low: the look-alikes then reach the class


@pytest.fixture(scope="module")
def look_alikes(tmp_path_factory):
    root = tmp_path_factory.mktemp("negatives") / "synth"
    synthesize(root, SynthConfig(images=12, seed=2, min_side=256, max_side=256, val_fraction=0.0,
                                 only=("red circle",), unlabelled=tuple(LOOK_ALIKES)))
    annotations = load_annotations(root / "coco" / "annotations.json", "coco")
    paths = [str(root / "coco" / "images" / image["file_name"]) for image in annotations.dataset["images"]]
    return annotations, paths


@pytest.fixture(scope="module")
def demo():
    import yoloworld

    return yoloworld.load("demo", imgsz=256)


def precision_recall(annotations, paths, results) -> tuple[float, float]:
    records = []
    for image, result in zip(annotations.dataset["images"], results):
        records += results_to_coco(image["id"], result.xyxy, result.scores, result.class_ids, [1])
    curve = class_curves(annotations, records)[0]
    return prf(*curve.counts_above(0.0), curve.ground_truth)[:2]


def described(result, keep=None) -> set:
    keep = slice(None) if keep is None else keep
    return {tuple(box.round(1)) + (round(float(s), 4),) for box, s in zip(result.xyxy[keep], result.scores[keep])}


def test_negatives_raise_precision_and_keep_recall_on_look_alikes(look_alikes, demo):
    annotations, paths = look_alikes
    plain = demo.set_classes(["red circle"]).predict(paths, conf=CONF)
    negated = demo.set_classes(["red circle"], negatives=LOOK_ALIKES).predict(paths, conf=CONF)
    before, after = precision_recall(annotations, paths, plain), precision_recall(annotations, paths, negated)
    assert after[0] > before[0] + 0.1, (before, after)  # the look-alikes were most of the false detections
    assert after[1] >= before[1] - 1e-9, (before, after)
    # the same texts as classes (the neck attends to every text, so this is the like-for-like run): the negatives
    # only ever remove red-circle detections, never add or rescore one
    as_classes = demo.set_classes(["red circle", *LOOK_ALIKES]).predict(paths, conf=CONF)
    for with_negatives, reference in zip(negated, as_classes):
        assert set(with_negatives.class_names[c] for c in with_negatives.class_ids) <= {"red circle"}
        circles = reference.class_ids == 0
        assert described(with_negatives) <= described(reference, circles)
        assert len(with_negatives) <= int(circles.sum())


def test_the_negative_flag_of_predict(look_alikes, demo, tmp_path):
    _, paths = look_alikes
    out = tmp_path / "d.json"
    result = run_cli("predict", *paths[:3], "--weights", "demo", "--imgsz", 256, "--classes", "red circle",
                     "--negative", ",".join(LOOK_ALIKES), "--conf", CONF, "--no-save", "--json", out)
    assert result.returncode == 0, result.stderr
    records = json.loads(out.read_text())
    expected = demo.set_classes(["red circle"], negatives=LOOK_ALIKES).predict(paths[:3], conf=CONF)
    assert [len(r["detections"]) for r in records] == [len(r) for r in expected]
    clash = run_cli("predict", paths[0], "--weights", "demo", "--classes", "red circle", "--negative", "red circle")
    assert clash.returncode == 2 and "negative 'red circle' is also a class" in clash.stderr


def test_negatives_are_saved_with_the_vocabulary(demo, look_alikes, tmp_path):
    import yoloworld

    demo.set_classes(["red circle", "blue circle"], negatives=LOOK_ALIKES)
    demo.save(tmp_path / "negated.pth")
    loaded = yoloworld.load(tmp_path / "negated.pth")
    assert loaded.class_names == ["red circle", "blue circle"] and loaded.vocabulary.negatives == LOOK_ALIKES
    image = look_alikes[1][0]
    ours, saved = demo.predict(image, conf=CONF)[0], loaded.predict(image, conf=CONF)[0]
    assert sorted(ours.scores.round(4).tolist()) == pytest.approx(sorted(saved.scores.round(4).tolist()), abs=2e-3)
    with pytest.raises(InputError, match="also a class"):
        demo.set_classes(["red circle"], negatives="red circle")
