"""The augmentation pipeline keeps boxes and texts consistent; text sampling, test-time loading and collate
follow the official semantics."""

import logging
from collections import Counter

import cv2
import numpy as np
import pytest
import torch

from yoloworld.data import (
    AugmentConfig,
    DatasetSource,
    EvalDataset,
    ImageRecord,
    TrainDataset,
    collate,
)
from yoloworld.data.mixing import copy_paste, mixup, mosaic
from yoloworld.data.sample import ID_STRIDE, Sample
from yoloworld.data.text_sampling import sample_texts
from yoloworld.errors import DatasetError
from yoloworld.transforms import letterbox

DROP_REASONS = ("affine_filter", "text_cut")


def random_boxes(rng, width, height, count):
    """Boxes of every kind: tiny, huge, touching the borders."""
    x1 = rng.uniform(-0.1, 0.95, count) * width
    y1 = rng.uniform(-0.1, 0.95, count) * height
    w = rng.choice([0.02, 0.1, 0.3, 0.8], count) * width * rng.uniform(0.5, 1.5, count)
    h = rng.choice([0.02, 0.1, 0.3, 0.8], count) * height * rng.uniform(0.5, 1.5, count)
    boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1)
    boxes = np.clip(boxes, 0, [width, height, width, height])
    keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    return boxes[keep].astype(np.float32)


def box_polygon(box):
    x1, y1, x2, y2 = box
    return [np.array([[x1, y1], [x2, y1], [(x1 + x2) / 2, y2]], np.float32)]


def make_sources(root, rng):
    """A detection source (40 classes with synonyms, masks) and a grounding-like source (per-image phrases)."""
    vocabulary = [[f"class{c}"] + [f"class{c} alias{k}" for k in range(c % 3)] for c in range(40)]
    detection, grounding = [], []
    for i in range(14):
        width, height = (int(v) for v in rng.integers(64, 161, 2))
        path = root / f"img{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        boxes = random_boxes(rng, width, height, int(rng.integers(0, 26)))
        labels = rng.integers(0, 40, len(boxes))
        detection.append(ImageRecord(str(path), width, height, boxes, labels, vocabulary, image_id=i,
                                     polygons=[box_polygon(b) for b in boxes]))
        phrases = [[f"phrase {i}-{k}"] for k in range(int(rng.integers(1, 6)))]
        g_boxes = random_boxes(rng, width, height, int(rng.integers(0, 8)))
        grounding.append(ImageRecord(str(path), width, height, g_boxes, rng.integers(0, len(phrases), len(g_boxes)),
                                     phrases, image_id=i))
    (root / "broken.jpg").write_bytes(b"not an image at all")
    detection.append(ImageRecord(str(root / "broken.jpg"), 100, 100, np.zeros((0, 4)), np.zeros(0), vocabulary))
    return [DatasetSource("det", "coco", detection, vocabulary), DatasetSource("grd", "grounding", grounding, [])]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return make_sources(tmp_path_factory.mktemp("pipeline"), np.random.default_rng(0))


def random_config(rng):
    return AugmentConfig(
        image_size=int(rng.choice([64, 96])), mosaic_prob=float(rng.choice([0.0, 0.5, 1.0])),
        affine_scale=float(rng.uniform(0, 0.9)), translate=float(rng.uniform(0, 0.3)),
        rotate_degrees=float(rng.choice([0.0, 0.0, 30.0])), shear_degrees=float(rng.choice([0.0, 0.0, 5.0])),
        min_area_ratio=float(rng.choice([0.0, 0.1, 0.5])), mixup_prob=float(rng.choice([0.0, 0.5, 1.0])),
        copy_paste_prob=float(rng.choice([0.0, 0.5, 1.0])), flip_prob=float(rng.uniform()),
        rare_pixel_prob=float(rng.choice([0.0, 0.5])))


def check_invariants(dataset, sample, num_texts):
    size = dataset.augment.image_size
    assert sample.image.shape == (size, size, 3) and sample.image.dtype == np.uint8
    boxes, labels, texts = sample.boxes, sample.labels, sample.texts
    # boxes inside the image, with positive size
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4) and np.isfinite(boxes).all()
    assert (boxes >= 0).all() and (boxes[:, [2, 3]] <= size).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    # texts: padded to num_texts with '' at the end only; labels index real texts
    assert len(texts) == num_texts
    real = [t for t in texts if t]
    assert texts[: len(real)] == real and len(set(real)) == len(real)
    assert labels.dtype == np.int64 and ((labels >= 0) & (labels < len(real))).all()
    # every box still carries a synonym of the class it was annotated with
    for box_id, label in zip(sample.ids.tolist(), labels.tolist()):
        source, local = dataset._locate(box_id // ID_STRIDE)
        record = dataset.sources[source].records[local]
        assert texts[label] in record.class_texts[record.labels[box_id % ID_STRIDE]]
    # no box lost except the documented drops
    counts = sample.counts
    assert counts["loaded"] + counts["copy_paste"] == len(boxes) + sum(counts[r] for r in DROP_REASONS)
    assert set(counts) <= {"loaded", "copy_paste", *DROP_REASONS}
    if sample.polygons is not None:
        assert len(sample.polygons) == len(boxes)


def test_random_pipelines_keep_boxes_and_texts_consistent(sources):
    rng = np.random.default_rng(1234)
    draws, dropped, pasted = 3000, Counter(), 0
    for draw in range(draws):
        num_texts = int(rng.choice([3, 8, 80]))
        dataset = TrainDataset(sources, random_config(rng), num_texts=num_texts, seed=draw)
        dataset.use_mosaic = bool(rng.random() < 0.7)
        sample = dataset.augmented(int(rng.integers(len(dataset))))
        check_invariants(dataset, sample, num_texts)
        dropped.update({r: sample.counts[r] for r in DROP_REASONS})
        pasted += sample.counts["copy_paste"]
    # the draws really exercised every documented drop and copy-paste
    assert dropped["affine_filter"] > 0 and dropped["text_cut"] > 0 and pasted > 0


def rectangle_sources(root, rng, count=12):
    """Images with one white rectangle on black, its box exact: boxes can be checked against pixels."""
    records = []
    for i in range(count):
        width, height = (int(v) for v in rng.integers(64, 161, 2))
        w, h = int(rng.integers(12, width // 2)), int(rng.integers(12, height // 2))
        x, y = int(rng.integers(12, width - w - 11)), int(rng.integers(12, height - h - 11))
        image = np.zeros((height, width, 3), np.uint8)
        image[y:y + h, x:x + w] = 255
        cv2.imwrite(str(root / f"rect{i}.png"), image)
        records.append(ImageRecord(str(root / f"rect{i}.png"), width, height, [[x, y, x + w, y + h]], [0], [["box"]]))
    return DatasetSource("rects", "coco", records, [["box"]])


def test_random_geometry_moves_boxes_with_their_pixels(tmp_path):
    """Mosaic, affine, letterbox and flip move each box exactly onto its white rectangle."""
    rng = np.random.default_rng(7)
    source = rectangle_sources(tmp_path, rng)
    checked = 0
    for draw in range(600):
        config = AugmentConfig(image_size=int(rng.choice([64, 96])), mosaic_prob=float(rng.choice([0.0, 1.0])),
                               affine_scale=float(rng.uniform(0, 0.5)), translate=float(rng.uniform(0, 0.3)),
                               flip_prob=0.5, hsv_gains=(0, 0, 0), rare_pixel_prob=0.0)
        sample = TrainDataset(source, config, num_texts=2, seed=draw).augmented(int(rng.integers(len(source.records))))
        size = config.image_size
        for x1, y1, x2, y2 in sample.boxes.tolist():
            # two resamplings (mosaic resize, affine warp) blur edges by up to ~2 px
            inner = sample.image[int(np.ceil(y1 + 2)):int(np.floor(y2 - 2)), int(np.ceil(x1 + 2)):int(np.floor(x2 - 2))]
            if inner.size:
                assert inner.min() > 128, (draw, x1, y1, x2, y2)
                checked += 1
            bands = [(x1 - 2, y1, x1, y2), (x2, y1, x2 + 2, y2), (x1, y1 - 2, x2, y1), (x1, y2, x2, y2 + 2)]
            for bx1, by1, bx2, by2 in bands:  # just outside the box: not the rectangle (box is tight)
                if bx1 >= 0 and by1 >= 0 and bx2 <= size and by2 <= size and bx2 - bx1 >= 1 and by2 - by1 >= 1:
                    band = sample.image[int(by1):int(np.ceil(by2)), int(bx1):int(np.ceil(bx2))]
                    assert band.size == 0 or band.mean() < 160, (draw, x1, y1, x2, y2)
    assert checked > 500


def test_identity_geometry_keeps_every_box_exactly(sources):
    """No mosaic, no scale/translate, no flip: output boxes are exactly the letterboxed input boxes."""
    config = AugmentConfig(image_size=96, affine_scale=0.0, translate=0.0, flip_prob=0.0, min_area_ratio=0.0,
                           min_box_size=0.0, hsv_gains=(0, 0, 0), rare_pixel_prob=0.0)
    dataset = TrainDataset(sources[0], config, num_texts=80)
    dataset.use_mosaic = False
    for index in range(len(sources[0].records) - 1):
        record = sources[0].records[index]
        sample = dataset.augmented(index)
        _, info = letterbox(np.zeros((record.height, record.width, 3), np.uint8), 96, allow_scale_up=True)
        sx, sy = info.scale_xy
        top, _, left, _ = info.pad_tblr
        expected = record.boxes * [sx, sy, sx, sy] + [left, top, left, top]
        order = np.argsort(sample.ids % ID_STRIDE)
        np.testing.assert_allclose(sample.boxes[order], expected, atol=1e-3)
        assert sample.counts["affine_filter"] == 0 and sample.counts["text_cut"] == 0


def test_flip_mirrors_boxes_and_pixels(sources):
    base = dict(image_size=64, flip_prob=0.0, rare_pixel_prob=0.0)
    plain = TrainDataset(sources[0], AugmentConfig(**base), seed=5).augmented(3)
    flipped = TrainDataset(sources[0], AugmentConfig(**{**base, "flip_prob": 1.0}), seed=5).augmented(3)
    assert np.array_equal(flipped.image, plain.image[:, ::-1])
    by_id = dict(zip(plain.ids.tolist(), plain.boxes.tolist()))
    for box_id, box in zip(flipped.ids.tolist(), flipped.boxes.tolist()):
        x1, y1, x2, y2 = by_id[box_id]
        np.testing.assert_allclose(box, [64 - x2, y1, 64 - x1, y2], atol=1e-4)


def test_output_is_rgb_tensors_and_deterministic_per_seed_epoch_index(sources):
    dataset = TrainDataset(sources, AugmentConfig(image_size=64), seed=3)
    sample, output = dataset.augmented(2), dataset[2]
    assert output["image"].dtype == torch.uint8 and output["image"].shape == (3, 64, 64)
    assert torch.equal(output["image"], torch.from_numpy(sample.image[:, :, ::-1].transpose(2, 0, 1).copy()))
    assert output["bboxes"].dtype == torch.float32 and output["labels"].dtype == torch.int64
    assert torch.equal(dataset[2]["bboxes"], output["bboxes"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2]["image"], output["image"])


def test_close_mosaic_switch_for_the_last_epochs(sources):
    config = AugmentConfig(image_size=64, close_mosaic_epochs=2, mixup_prob=0.0)
    dataset = TrainDataset(sources[0], config, max_epochs=10)
    used = []
    for epoch in range(10):
        dataset.set_epoch(epoch)
        used.append(dataset.use_mosaic)
        images_per_sample = [len({i // ID_STRIDE for i in dataset.augmented(index).ids.tolist()}) for index in range(8)]
        assert max(images_per_sample) > 1 if dataset.use_mosaic else max(images_per_sample) <= 1
    assert used == [True] * 8 + [False] * 2


def test_corrupt_image_is_skipped_counted_and_replaced(sources, caplog):
    dataset = TrainDataset(sources[0], AugmentConfig(image_size=64))
    dataset.use_mosaic = False
    broken = len(sources[0].records) - 1
    with caplog.at_level(logging.WARNING):
        sample = dataset.augmented(broken)
    assert dataset.skipped_images == 1
    assert {i // ID_STRIDE for i in sample.ids.tolist()} <= set(range(broken))
    assert "broken.jpg: missing or corrupt image" in caplog.text
    only_broken = DatasetSource("x", "coco", sources[0].records[-1:], sources[0].class_texts)
    with pytest.raises(DatasetError, match="no readable image"):
        TrainDataset(only_broken, AugmentConfig(image_size=64)).augmented(0)


# ------------------------------------------------------------------------------------------------ text sampling

def sample_with(labels, class_texts):
    labels = np.asarray(labels, np.int64)
    return Sample(np.zeros((8, 8, 3), np.uint8), np.tile(np.float32([1, 1, 4, 4]), (len(labels), 1)), labels,
                  class_texts, ids=np.arange(len(labels)))


def test_text_sampling_keeps_positives_adds_negatives_and_pads():
    vocabulary = [[f"c{i}"] for i in range(100)]
    sample = sample_texts(sample_with([5, 5, 17, 99], vocabulary), 80, np.random.default_rng(0))
    assert len(sample.texts) == 80 and "" not in sample.texts  # filled with negatives up to 80
    assert {sample.texts[label] for label in sample.labels} == {"c5", "c17", "c99"}
    small = sample_texts(sample_with([1], vocabulary[:10]), 80, np.random.default_rng(0))
    assert sorted(small.texts[:10]) == sorted(f"c{i}" for i in range(10)) and small.texts[10:] == [""] * 70
    only_positive = sample_texts(sample_with([3, 4], vocabulary), 80, np.random.default_rng(0), num_negatives=(0, 0))
    assert sorted(only_positive.texts[:2]) == ["c3", "c4"] and only_positive.texts[2:] == [""] * 78


def test_text_sampling_cuts_positives_over_the_limit_and_drops_their_boxes():
    vocabulary = [[f"c{i}"] for i in range(100)]
    sample = sample_texts(sample_with(np.arange(90), vocabulary), 80, np.random.default_rng(0))
    assert len(sample.labels) == 80 and sample.counts["text_cut"] == 10
    assert [sample.texts[label] for label in sample.labels] == [f"c{i}" for i in sample.ids]


def test_text_sampling_draws_every_synonym():
    vocabulary = [["car", "automobile", "motorcar"]]
    seen = {sample_texts(sample_with([0], vocabulary), 4, np.random.default_rng(s)).texts[0] for s in range(60)}
    assert seen == {"car", "automobile", "motorcar"}


# ------------------------------------------------------------------------------------------------ mixing

def test_mosaic_merges_texts_and_remaps_labels():
    rng = np.random.default_rng(0)
    parts = []
    for i in range(4):
        parts.append(Sample(np.full((40, 60, 3), 50 * i, np.uint8), np.float32([[5, 5, 30, 30], [35, 10, 55, 35]]),
                            np.array([0, 1]), [[f"own {i}"], ["shared"]], ids=np.array([10 * i, 10 * i + 1])))
    merged = mosaic(parts, AugmentConfig(image_size=64), rng)
    assert merged.image.shape == (128, 128, 3)
    assert sorted(t[0] for t in merged.class_texts) == ["own 0", "own 1", "own 2", "own 3", "shared"]
    for box_id, label in zip(merged.ids.tolist(), merged.labels.tolist()):
        assert merged.class_texts[label] == ([f"own {box_id // 10}"] if box_id % 10 == 0 else ["shared"])
    assert (merged.boxes >= 0).all() and (merged.boxes <= 128).all()


def test_mixup_blends_images_and_merges_texts():
    a = Sample(np.full((32, 32, 3), 200, np.uint8), np.float32([[1, 1, 9, 9]]), np.array([0]), [["cat"]],
               ids=np.array([1]))
    b = Sample(np.full((32, 32, 3), 100, np.uint8), np.float32([[5, 5, 20, 20]]), np.array([0]), [["dog"]],
               ids=np.array([2]))
    mixed = mixup(a, b, AugmentConfig(), np.random.default_rng(0))
    assert 120 < mixed.image.mean() < 180  # Beta(32, 32) ratio stays near 0.5
    assert [mixed.class_texts[label][0] for label in mixed.labels] == ["cat", "dog"]


def test_copy_paste_adds_mirrored_instances():
    image = np.zeros((40, 80, 3), np.uint8)
    image[10:20, 5:15] = 255
    sample = Sample(image, np.float32([[5, 10, 15, 20]]), np.array([0]), [["square"]],
                    polygons=[[np.float32([[5, 10], [15, 10], [15, 20], [5, 20]])]], ids=np.array([7]))
    pasted = copy_paste(sample, AugmentConfig(copy_paste_prob=1.0), np.random.default_rng(0))
    np.testing.assert_allclose(pasted.boxes, [[5, 10, 15, 20], [65, 10, 75, 20]])
    assert pasted.ids.tolist() == [7, 7] and pasted.counts["copy_paste"] == 1
    assert pasted.image[12:18, 67:73].min() == 255 and len(pasted.polygons) == 2


# ------------------------------------------------------------------------------------------------ test time

def test_eval_loading_letterboxes_with_first_synonyms_and_collates(sources):
    dataset = EvalDataset(sources[0], image_size=64)
    first = dataset[0]
    record = sources[0].records[0]
    assert first["texts"] == [t[0] for t in sources[0].class_texts]  # first synonym, no padding
    assert first["image"].shape == (3, 64, 64) and first["image_id"] == record.image_id
    expected = record.boxes * np.float32(first["letterbox"].scale_xy * 2) + np.float32(
        [first["letterbox"].pad_tblr[2], first["letterbox"].pad_tblr[0]] * 2)
    np.testing.assert_allclose(first["bboxes"].numpy(), expected, atol=1e-4)
    grounding = EvalDataset(sources[1], image_size=64)[1]
    assert grounding["texts"] == [t[0] for t in sources[1].records[1].class_texts]
    batch = collate([dataset[0], dataset[1]])
    assert batch["images"].shape == (2, 3, 64, 64)
    n0, n1 = len(record.boxes), len(sources[0].records[1].boxes)
    assert batch["bboxes_labels"].shape == (n0 + n1, 6)
    assert batch["bboxes_labels"][:, 0].tolist() == [0.0] * n0 + [1.0] * n1
    assert batch["image_ids"] == [0, 1] and len(batch["letterbox"]) == 2


def test_training_collate_rows(sources):
    dataset = TrainDataset(sources, AugmentConfig(image_size=64), num_texts=8)
    samples = [dataset[i] for i in (0, 20)]
    batch = collate(samples)
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (2, 3, 64, 64)
    assert batch["texts"] == [s["texts"] for s in samples] and all(len(t) == 8 for t in batch["texts"])
    rows = batch["bboxes_labels"]
    assert rows.dtype == torch.float32 and rows.shape[1] == 6
    for i, s in enumerate(samples):
        mine = rows[rows[:, 0] == i]
        assert torch.equal(mine[:, 1].long(), s["labels"]) and torch.equal(mine[:, 2:], s["bboxes"])


def test_hsv_gains_follow_the_official_lookup_tables():
    """Hue x gain mod 180, saturation and value x gain clipped to 255, gains 1 + U(-1, 1) * (0.015, 0.7, 0.4)."""
    from yoloworld.data.photometric import random_hsv

    image = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    out = random_hsv(image, (0.015, 0.7, 0.4), np.random.default_rng(5))
    gains = np.random.default_rng(5).uniform(-1, 1, 3) * [0.015, 0.7, 0.4] + 1
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float64)
    expected = np.stack([(hsv[..., 0] * gains[0]) % 180, np.clip(hsv[..., 1] * gains[1], 0, 255),
                         np.clip(hsv[..., 2] * gains[2], 0, 255)], axis=-1).astype(np.uint8)
    assert np.array_equal(out, cv2.cvtColor(expected, cv2.COLOR_HSV2BGR))
