"""Prediction with masks: Results.masks in the API, batches, per-image vocabularies, JSON RLE, supervision, CLI."""

import json

import cv2
import numpy as np
import pytest
from helpers import assert_same_detections, run_cli
from seg_helpers import fixture_image, official_seg_checkpoint

from yoloworld.api import YOLOWorld

IMGSZ = 320  # small inputs keep these tests fast; parity at 640 is in test_seg_parity.py
CLASSES = ["person", "car", "dog"]
CONF = 0.9  # random weights: scores crowd near 1; this keeps tens of masks (fast), away from the max_det cut


@pytest.fixture(scope="module")
def seg_path(fixtures, tmp_path_factory):
    return official_seg_checkpoint(fixtures, "v2", tmp_path_factory.mktemp("seg"))[0]


@pytest.fixture(scope="module")
def api(fixtures, seg_path):
    return YOLOWorld.from_pretrained(seg_path, text_model=fixtures / "tiny-clip", imgsz=IMGSZ).set_classes(CLASSES)


@pytest.fixture(scope="module")
def image(fixtures):
    return fixture_image(fixtures)


@pytest.mark.parametrize("rect", [False, True], ids=["square", "rect"])
def test_masks_are_boolean_at_the_original_size_one_per_detection(api, image, rect):
    small = cv2.resize(image, (200, 133))
    for picture in (image, small):
        result = api.predict(picture, conf=CONF, rect=rect)[0]
        assert len(result) > 0
        assert result.masks.dtype == bool and result.masks.shape == (len(result), *picture.shape[:2])
        assert result.masks.any(axis=(1, 2)).mean() > 0.5
        # a mask lies within its box: cropped on whole input pixels, then resized (one input pixel of blending)
        margin = 2 * picture.shape[1] / IMGSZ
        for box, mask in zip(result.xyxy, result.masks):
            rows, cols = np.nonzero(mask)
            if len(rows):
                assert cols.min() >= box[0] - margin and cols.max() <= box[2] + margin
                assert rows.min() >= box[1] - margin and rows.max() <= box[3] + margin


def test_detection_models_have_no_masks(fixtures, image):
    detector = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip", imgsz=IMGSZ)
    assert detector.set_classes(CLASSES).predict(image, conf=CONF)[0].masks is None


def test_no_detection_gives_an_empty_mask_stack(api, image):
    result = api.predict(image, conf=1.0)[0]
    assert len(result) == 0 and result.masks.shape == (0, *image.shape[:2])


def test_batch_and_per_image_vocabularies_give_the_masks_of_single_runs(api, image):
    flipped = cv2.flip(image, 1)
    vocabularies = [CLASSES, ["cat", "tree"]]
    batch = api.predict([image, flipped], conf=CONF, per_image_classes=vocabularies)
    for picture, classes, together in zip([image, flipped], vocabularies, batch):
        alone = api.predict(picture, conf=CONF, per_image_classes=[classes])[0]
        assert_same_detections(together, alone, conf=CONF)
        if len(alone) == len(together) and (alone.class_ids == together.class_ids).all():
            differ = (alone.masks != together.masks).sum(axis=(1, 2))
            assert (differ <= 0.001 * alone.masks[0].size).all()  # batch vs single: pixels at 0.5 may flip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode under numpy 2
def test_json_carries_coco_rle_that_decodes_to_the_masks(api, image):
    from pycocotools import mask as mask_utils

    result = api.predict(image, conf=CONF)[0]
    record = json.loads(json.dumps(result.to_dict()))
    for detection, mask in zip(record["detections"], result.masks):
        rle = detection["segmentation"]
        assert rle["size"] == list(image.shape[:2]) and isinstance(rle["counts"], str)
        assert (mask_utils.decode({**rle, "counts": rle["counts"].encode()}) == mask).all()


def test_supervision_detections_hold_the_masks(api, image):
    result = api.predict(image, conf=CONF)[0]
    detections = result.to_supervision()
    assert detections.mask is not None and (detections.mask == result.masks).all()


def test_plot_tints_mask_pixels(api, image):
    result = api.predict(image, conf=CONF)[0]
    drawn = result.plot(image)
    covered = result.masks.any(axis=0)
    changed = (drawn != image).any(axis=2)
    assert changed[covered].mean() > 0.9


def test_cli_predict_writes_mask_overlays_and_rle(fixtures, api, image, tmp_path):
    weights = tmp_path / "seg_with_vocabulary.pth"
    api.save(weights)  # vocabulary baked in: the CLI needs no text model
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    out = run_cli("predict", tmp_path / "photo.png", "--weights", weights, "--conf", CONF, "--imgsz", IMGSZ,
                  "--save-dir", tmp_path / "vis", "--json", tmp_path / "dets.json")
    assert out.returncode == 0, out.stderr
    detections = json.loads((tmp_path / "dets.json").read_text())[0]["detections"]
    assert detections and all(d["segmentation"]["size"] == [427, 640] for d in detections)
    drawn = cv2.imread(str(tmp_path / "vis" / "photo.png"))
    assert drawn.shape == image.shape
