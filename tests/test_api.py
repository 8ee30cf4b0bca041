"""Python API behaviour: synonyms, padding prompt, per-image vocabularies, text cache, saving a vocabulary."""

import time

import cv2
import numpy as np
import pytest
import torch

from yoloworld.api import YOLOWorld
from yoloworld.errors import InputError
from yoloworld.vocabulary import PADDING_PROMPT, Vocabulary, parse_class_string


@pytest.fixture(scope="module")
def api(fixtures):
    return YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip")


@pytest.fixture(scope="module")
def image(fixtures):
    return np.load(fixtures / "inputs.npz")["image_raw"][:, :, ::-1].copy()


def test_padding_prompt_is_added_and_never_reported(api, image):
    api.set_classes(["person", "a red car", "dog"])
    assert api.vocabulary.texts[-1] == PADDING_PROMPT
    result = api.predict(image, conf=0.001)[0]
    assert len(result) > 0 and set(result.class_ids.tolist()) <= {0, 1, 2}
    assert result.names == ["person", "a red car", "dog"]


def test_padding_prompt_changes_scores_like_official(api, image):
    with_pad = api.set_classes(["person", "dog"]).predict(image, conf=0.001)[0]
    without = api.set_classes(["person", "dog"], padding=False).predict(image, conf=0.001)[0]
    assert not np.allclose(with_pad.scores[:20], without.scores[:20])


def test_synonyms_merge_into_one_class_best_score_wins(api, image):
    separate = api.set_classes(["person", "dog", "a red car"]).predict(image, conf=0.001, max_det=1000)[0]
    merged = api.set_classes(["person", ["dog", "a red car"]]).predict(image, conf=0.001, max_det=1000)[0]
    assert merged.names == ["person", "dog"]
    assert set(merged.class_ids.tolist()) <= {0, 1}
    # the merged class's best score equals the best of its two synonyms' scores
    best_separate = separate.scores[np.isin(separate.class_ids, [1, 2])].max()
    assert np.isclose(merged.scores[merged.class_ids == 1].max(), best_separate, atol=1e-6)


def test_per_image_vocabularies_match_single_runs(api, image):
    small = image[:200, :300].copy()
    vocab_a, vocab_b = ["person", "dog"], ["traffic light", "a red car", "dog"]
    both = api.predict([image, small], conf=0.01, per_image_classes=[vocab_a, vocab_b])
    alone_a = api.set_classes(vocab_a).predict(image, conf=0.01)[0]
    alone_b = api.set_classes(vocab_b).predict(small, conf=0.01)[0]
    for got, want in ((both[0], alone_a), (both[1], alone_b)):
        assert got.names == want.names
        assert len(got) == len(want)
        assert same_detections(got, want)


def same_detections(got, want, box_tol=1e-2, score_tol=1e-5) -> bool:
    """Equal as sets: batching may swap the order of scores equal up to float noise."""
    match = ((np.abs(got.xyxy[:, None] - want.xyxy[None]).max(-1) < box_tol)
             & (got.class_ids[:, None] == want.class_ids[None])
             & (np.abs(got.scores[:, None] - want.scores[None]) < score_tol))
    return bool(match.any(1).all() and match.any(0).all())


def test_batch_equals_single_images(api, image):
    api.set_classes(["person", "dog"])
    flipped = cv2.flip(image, 1)
    batch = api.predict([image, flipped], conf=0.01)
    single = [api.predict(im, conf=0.01)[0] for im in (image, flipped)]
    for b, s in zip(batch, single):
        assert len(b) == len(s) and same_detections(b, s)


def test_boxes_are_in_original_pixels(api, image):
    big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    result = api.set_classes(["person"]).predict(big, conf=0.001)[0]
    assert result.orig_shape == big.shape[:2]
    assert result.xyxy[:, 2].max() <= big.shape[1] and result.xyxy[:, 3].max() <= big.shape[0]
    assert result.xyxy[:, 2].max() > 640  # beyond the network input: really mapped back


def test_text_cache_makes_second_set_classes_fast(fixtures, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOWORLD_CACHE", str(tmp_path))
    api = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip")
    names = [f"category number {i}" for i in range(1203)]
    api.set_classes(names)
    start = time.perf_counter()
    api.set_classes(names)
    assert time.perf_counter() - start < 1.0
    assert list(tmp_path.glob("text_embeds/*.pt"))  # also on disk, for the next process
    fresh = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip")
    start = time.perf_counter()
    fresh.set_classes(names)
    assert time.perf_counter() - start < 1.0
    assert torch.allclose(fresh._text_embeds, api._text_embeds)


def test_saved_vocabulary_predicts_without_text_model(api, image, tmp_path):
    api.set_classes(["person", ["dog", "a red car"]])
    want = api.predict(image, conf=0.01)[0]
    api.save(tmp_path / "baked.pt")
    baked = YOLOWorld.from_pretrained(tmp_path / "baked.pt")
    assert baked.model.text_model is None and baked.class_names == ["person", "dog"]
    got = baked.predict(image, conf=0.01)[0]
    assert len(got) == len(want) and same_detections(got, want)


def test_results_export_json_and_supervision(api, image):
    result = api.set_classes(["person", "dog"]).predict(image, conf=0.01)[0]
    record = result.to_dict()
    assert record["width"] == image.shape[1] and record["height"] == image.shape[0]
    assert {"xyxy", "score", "class_id", "class_name"} <= set(record["detections"][0])
    detections = result.to_supervision()
    assert len(detections) == len(result) and np.allclose(detections.xyxy, result.xyxy)


def test_class_parsing_and_bad_vocabularies():
    assert parse_class_string("person, car|automobile ,dog") == [["person"], ["car", "automobile"], ["dog"]]
    assert Vocabulary.build(["a", " "]).padded is False  # the user's own padding is kept as given
    with pytest.raises(InputError):
        Vocabulary.build([])
    with pytest.raises(InputError):
        parse_class_string(" , |")
