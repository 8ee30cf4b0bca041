"""Python API behaviour: synonyms, padding prompt, per-image vocabularies, text cache, saving a vocabulary."""

import cv2
import numpy as np
import pytest
import torch
from helpers import assert_same_detections

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
        assert len(want) > 0
        assert_same_detections(got, want, box_tol=1e-2, score_tol=1e-5, conf=0.01)


def test_batch_equals_single_images(api, image):
    api.set_classes(["person", "dog"])
    flipped = cv2.flip(image, 1)
    batch = api.predict([image, flipped], conf=0.01)
    single = [api.predict(im, conf=0.01)[0] for im in (image, flipped)]
    for b, s in zip(batch, single):
        assert len(s) > 0
        assert_same_detections(b, s, box_tol=1e-2, score_tol=1e-5, conf=0.01)


def test_boxes_are_in_original_pixels(api, image):
    big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    result = api.set_classes(["person"]).predict(big, conf=0.001)[0]
    assert result.orig_shape == big.shape[:2]
    assert result.xyxy[:, 2].max() <= big.shape[1] and result.xyxy[:, 3].max() <= big.shape[0]
    assert result.xyxy[:, 2].max() > 640  # beyond the network input: really mapped back


def count_text_encoder_calls(api) -> list[int]:
    """A counter of the text tower's forward passes (each call encodes one batch of texts)."""
    calls = [0]
    api.model.text_model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_text_cache_encodes_each_text_once_in_memory_and_on_disk(fixtures, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOWORLD_CACHE", str(tmp_path))
    api = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip")
    calls = count_text_encoder_calls(api)
    names = [f"category number {i}" for i in range(1203)]
    api.set_classes(names)
    first = calls[0]
    assert first > 0
    api.set_classes(names)
    assert calls[0] == first  # the second vocabulary came from memory
    api.set_classes(names[:5] + ["a new text"])
    assert calls[0] == first + 1  # only the new text is encoded
    assert list(tmp_path.glob("text_embeds/*.pt"))  # also on disk, for the next process
    fresh = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip")
    fresh_calls = count_text_encoder_calls(fresh)
    fresh.set_classes(names)
    assert fresh_calls[0] == 0  # a new process reads the disk cache
    assert torch.allclose(fresh.text_embeds, api.set_classes(names).text_embeds)


def test_saved_vocabulary_predicts_without_text_model(api, image, tmp_path):
    api.set_classes(["person", ["dog", "a red car"]])
    want = api.predict(image, conf=0.01)[0]
    api.save(tmp_path / "baked.pt")
    baked = YOLOWorld.from_pretrained(tmp_path / "baked.pt")
    assert baked.model.text_model is None and baked.class_names == ["person", "dog"]
    got = baked.predict(image, conf=0.01)[0]
    assert len(want) > 0
    assert_same_detections(got, want, box_tol=1e-2, score_tol=1e-5, conf=0.01)


def test_results_export_json_and_supervision(api, image):
    result = api.set_classes(["person", "dog"]).predict(image, conf=0.01)[0]
    record = result.to_dict()
    assert record["width"] == image.shape[1] and record["height"] == image.shape[0]
    assert {"xyxy", "score", "class_id", "class_name"} <= set(record["detections"][0])
    detections = result.to_supervision()
    assert len(detections) == len(result) and np.allclose(detections.xyxy, result.xyxy)


def test_class_parsing_and_bad_vocabularies():
    assert parse_class_string("person, car|automobile ,dog") == [["person"], ["car", "automobile"], ["dog"]]
    assert Vocabulary.build(["a", " "]).names == ["a"]  # a trailing blank is the padding prompt, never reported
    for blank in ([" ", "a"], [""], ["a", ["b", "  "]]):  # a blank class would be reported as a class
        with pytest.raises(InputError, match="blank"):
            Vocabulary.build(blank)
    with pytest.raises(InputError):
        Vocabulary.build([])
    with pytest.raises(InputError):
        parse_class_string(" , |")
