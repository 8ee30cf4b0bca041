"""The folded vocabulary (`YOLOWorld(fold=True)`, the default): prediction runs a copy of the network with the
current embeddings folded into its weights, and finds the same detections as the text-conditioned model.

Models: the official fixtures (v1_n, v2_n with tiny-clip, their segmentation heads), a tiny random CLIP vision
tower for reference images, and the demo model on the command line."""

import json

import cv2
import numpy as np
import pytest
from helpers import assert_same_detections, assert_same_result_lists, match_detections, run_cli
from seg_helpers import fixture_image, official_seg_checkpoint
from test_visual_prompts import save_tower

from yoloworld.api import YOLOWorld
from yoloworld.models.neck import MaxSigmoidAttnBlock, RepMaxSigmoidAttnBlock
from yoloworld.prompts import VisualPrompt

IMGSZ = 320
CLASSES = ["person", ["car", "a red car"], "dog", "bicycle", "traffic light"]
CONF = 0.02  # low: many detections to compare


def loaded(weights, fixtures, **kwargs) -> YOLOWorld:
    return YOLOWorld.from_pretrained(weights, text_model=fixtures / "tiny-clip", imgsz=IMGSZ, **kwargs)


def same_predictions(api: YOLOWorld, images: list, **kwargs) -> None:
    """Folded (the default) and text-conditioned predictions of `api` hold the same detections (and masks)."""
    assert api.fold
    ours = api.predict(images, conf=CONF, **kwargs)
    api.fold = False
    reference = api.predict(images, conf=CONF, **kwargs)
    api.fold = True
    assert_same_result_lists(ours, reference, conf=CONF)
    for a, b in zip(ours, reference):
        if b.masks is not None:  # the matched detections carry the same masks (up to pixels on the edge)
            pairs, _, _ = match_detections(a, b, 5e-3, 1e-4)
            for i, j in pairs:
                assert (a.masks[i] != b.masks[j]).mean() <= 1e-3


@pytest.fixture(scope="module")
def image(fixtures):
    return fixture_image(fixtures)


@pytest.mark.parametrize("name", ["v2", "v1"])
def test_folded_model_finds_the_detections_of_the_text_model(fixtures, image, name):
    api = loaded(fixtures / f"{name}_n.pth", fixtures, fuse=True).set_classes(CLASSES)
    same_predictions(api, [image, image[::2, ::3].copy()])
    network = api.folded_model()
    assert network is not None and network is not api.model
    top_down, bottom_up = network.neck.top_down_layers[0].attn_block, network.neck.bottom_up_layers[0].attn_block
    assert isinstance(top_down, RepMaxSigmoidAttnBlock)
    if name == "v2":  # fully folded: no text input, no text tower
        assert not network.needs_text and network.text_model is None and isinstance(bottom_up, RepMaxSigmoidAttnBlock)
    else:  # v1: the texts after the image-pooling attention depend on the image: only the top-down guides fold
        assert network.needs_text and isinstance(bottom_up, MaxSigmoidAttnBlock)


def test_fold_is_rebuilt_for_each_vocabulary_and_shares_the_image_weights(fixtures, image):
    api = loaded(fixtures / "v2_n.pth", fixtures).set_classes(CLASSES)
    first = api.folded_model()
    assert api.folded_model() is first  # built once per vocabulary
    shared = {t.data_ptr() for t in api.model.state_dict().values()}
    own = [t for t in first.state_dict().values() if t.data_ptr() not in shared]
    # only the folded guides and head weights are new: a few hundred KB, not a second network
    assert 0 < sum(t.numel() * t.element_size() for t in own) < 200_000
    api.set_classes(["dog", "person", "cat"])
    assert api.folded_model() is not first
    same_predictions(api, [image])
    api.fold = False
    assert api.folded_model() is None


@pytest.mark.parametrize("name", ["v2", "v1"])
def test_folded_segmentation_model_gives_the_same_boxes_and_masks(fixtures, image, name, tmp_path):
    weights, _ = official_seg_checkpoint(fixtures, name, tmp_path)
    api = loaded(weights, fixtures).set_classes(CLASSES)
    same_predictions(api, [image])
    assert api.folded_model() is not None


def test_reference_images_fold_like_texts(fixtures, image, tmp_path):
    api = loaded(fixtures / "v2_n.pth", fixtures, vision_model=save_tower(tmp_path / "clip-vision"))
    reference = tmp_path / "ref.jpg"
    cv2.imwrite(str(reference), image)
    api.set_classes(["person", VisualPrompt(str(reference), box=(100, 50, 400, 400), name="thing"), "car"])
    same_predictions(api, [image])
    assert api.folded_model() is not None


def test_per_image_vocabularies_run_the_text_model(fixtures, image):
    api = loaded(fixtures / "v2_n.pth", fixtures).set_classes(CLASSES)
    api.predict([image, image], conf=CONF, per_image_classes=[["person", "car"], ["dog", "person"]])
    assert api._folded is None  # nothing folded: each image has its own vocabulary


def test_cli_no_fold_gives_the_same_detections(image, tmp_path):
    path = tmp_path / "image.png"
    cv2.imwrite(str(path), image)
    records = {}
    for flag in ([], ["--no-fold"]):
        out = tmp_path / f"dets{len(flag)}.json"
        result = run_cli("predict", path, "--weights", "demo", "--classes", "red circle,blue square", "--conf",
                         "0.001", "--imgsz", "256", "--no-save", "--json", out, *flag)
        assert result.returncode == 0, result.stderr
        records[bool(flag)] = as_results(json.loads(out.read_text())[0], ["red circle", "blue square"])
    assert len(records[True]) > 0
    assert_same_detections(records[False], records[True], box_tol=0.02, score_tol=2e-5, conf=0.001)


def as_results(record: dict, names: list[str]):
    from yoloworld.results import Results

    detections = record["detections"]
    return Results(np.array([d["xyxy"] for d in detections], np.float32).reshape(-1, 4),
                   np.array([d["score"] for d in detections], np.float32),
                   np.array([d["class_id"] for d in detections], np.int64), names,
                   (record["height"], record["width"]))

