"""Sliced inference: small objects a whole-image pass cannot see are found in tiles, merged without duplicates, the
same in every runtime (PyTorch vs ONNX Runtime, as sets). Demo model at 256 px on a generated small-object image."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from helpers import REPO, assert_same_detections, run_cli

import yoloworld
from yoloworld.data.synth_video import CLASSES, small_object_image
from yoloworld.errors import InputError
from yoloworld.slicing import Slicing, tile_windows

DEMO = REPO / "yoloworld" / "assets" / "demo.pt"
CONF = 0.3


@pytest.fixture(scope="module")
def model():
    return yoloworld.load(DEMO, imgsz=256).set_classes(CLASSES)


@pytest.fixture(scope="module")
def scene():
    """768 x 512 with a dozen shapes of 14-24 px: at 256 px input a whole-image pass shrinks them to 5-8 px."""
    return small_object_image(0, 768, 512, objects=12, min_px=14, max_px=24)


def recall(result, objects, min_iou: float = 0.5) -> float:
    import torch
    from torchvision.ops import box_iou

    if not len(result):
        return 0.0
    iou = box_iou(torch.tensor([box for _, box in objects]), torch.from_numpy(result.xyxy)).numpy()
    same = np.array([label for label, _ in objects])[:, None] == result.class_ids[None]
    return float(((iou >= min_iou) & same).any(1).mean())


def test_tiles_cover_the_image_with_the_overlap_asked_for():
    windows = tile_windows((512, 768), Slicing(256, 0.25))
    assert windows[0] == (0, 0, 256, 256) and windows[-1] == (512, 256, 768, 512)
    xs = sorted({w[0] for w in windows})
    assert xs == [0, 192, 384, 512] and all(w[2] - w[0] == 256 and w[3] - w[1] == 256 for w in windows)
    assert tile_windows((100, 120), Slicing(256)) == [(0, 0, 120, 100)]  # smaller than a tile: itself


def test_slicing_finds_small_objects_the_whole_image_misses_without_duplicates(model, scene):
    image, objects = scene
    whole = model.predict(image, conf=CONF)[0]
    sliced = model.predict(image, conf=CONF, slice=256, slice_overlap=0.2)[0]
    assert recall(sliced, objects) >= 0.75 and recall(whole, objects) <= 0.25, (recall(sliced, objects),
                                                                                recall(whole, objects))
    import torch
    from torchvision.ops import box_iou

    overlaps = box_iou(torch.from_numpy(sliced.xyxy), torch.from_numpy(sliced.xyxy)).fill_diagonal_(0)
    same_class = torch.from_numpy(sliced.class_ids[:, None] == sliced.class_ids[None])
    assert not (overlaps[same_class] > 0.5).any()  # one box per object, not one per tile that saw it


def test_sliced_detections_agree_between_pytorch_and_onnx_runtime(model, scene, tmp_path):
    from yoloworld.export.onnx_export import export_onnx, plan_export

    path = tmp_path / "demo.onnx"
    export_onnx(plan_export(model, CLASSES), path, imgsz=256, dynamic_batch=True)
    runner = yoloworld.load(path)
    image, _ = scene
    ours = runner.predict(image, conf=CONF, slice=256)[0]
    reference = model.predict(image, conf=CONF, slice=256)[0]
    assert len(reference) >= 8
    assert_same_detections(ours, reference, box_tol=0.05, score_tol=1e-3, conf=CONF)
    tracked = list(runner.track([image, image], persist=False, conf=CONF, slice=256))  # the base's track, sliced
    assert len(tracked[-1]) >= 8 and len(set(tracked[-1].track_ids.tolist())) == len(tracked[-1])


def test_predict_cli_slices_and_checks_the_tile_side(scene, tmp_path):
    cv2.imwrite(str(tmp_path / "big.png"), scene[0])
    out = run_cli("predict", tmp_path / "big.png", "--weights", DEMO, "--imgsz", "256", "--conf", CONF,
                  "--slice", "256", "--slice-overlap", "0.2", "--json", tmp_path / "p.json", "--no-save")
    assert out.returncode == 0, out.stderr
    assert len(json.loads((tmp_path / "p.json").read_text())[0]["detections"]) >= 8
    out = run_cli("predict", tmp_path / "big.png", "--weights", DEMO, "--slice", "16")
    assert out.returncode == 2 and "--slice: 16 is not between 32" in out.stderr


def test_bad_slice_settings_are_one_line_errors(model, scene):
    with pytest.raises(InputError, match="slice overlap 1.5"):
        model.predict(scene[0], slice=256, slice_overlap=1.5)
    with pytest.raises(InputError, match="slice 8"):
        model.predict(scene[0], slice=8)
