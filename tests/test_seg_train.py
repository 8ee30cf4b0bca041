"""Segmentation training: masks through the augmentation pipeline, mask-head-only fine-tuning that leaves the
detector's outputs unchanged, mask AP in validation, the recipes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train_support import finetune_config, make_base_checkpoint, make_synth

from yoloworld.api import YOLOWorld
from yoloworld.data.augment import AugmentConfig
from yoloworld.data.build import build_train_dataset
from yoloworld.data.sources import DatasetConfig
from yoloworld.engine.train_config import build_train_config
from yoloworld.engine.trainer import Trainer
from yoloworld.errors import ConfigError
from yoloworld.models.checkpoint import load_detector

ONE_EPOCH = {"epochs": 1, "warmup_min_iters": 1, "warmup_epochs": 0.0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("segtrain")
    return make_synth(root / "synth", images=8), make_base_checkpoint(root / "base.pt")


@pytest.fixture(autouse=True)
def private_text_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOWORLD_CACHE", str(tmp_path / "cache"))


def test_masks_follow_boxes_through_mosaic_affine_flip_and_copy_paste(setup):
    coco, _ = setup
    source = DatasetConfig(kind="coco", ann=str(coco / "annotations.json"), images=str(coco / "images"),
                           classes_file=str(coco / "class_texts.json"))
    augment = AugmentConfig(image_size=128, copy_paste_prob=0.5, mixup_prob=0.5, close_mosaic_epochs=0)
    dataset = build_train_dataset(source, augment, num_texts=10, with_masks=True)
    checked = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        masks, boxes = sample["masks"], sample["bboxes"]
        assert masks.dtype == torch.uint8 and masks.shape == (len(boxes), 32, 32)
        for mask, box in zip(masks.numpy(), boxes.numpy()):
            rows, cols = np.nonzero(mask)
            if not len(rows):
                continue
            # at 1/4 scale (rasterisation rounds by up to a cell) the mask lies in its box, and fills it when the
            # box was not cut by the image border (a polygon's extent is its box)
            extent = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]) * 4
            assert (extent[:2] >= box[:2] - 8).all() and (extent[2:] <= box[2:] + 8).all(), (extent, box)
            if box.min() > 0 and box.max() < 128:
                assert np.abs(extent - box).max() <= 8, (extent, box)
                checked += 1
    assert checked >= 10


def seg_config(coco, out, base, freeze: bool, **sections) -> dict:
    data = finetune_config(coco, out, "normal", base, schedule=ONE_EPOCH, **sections)
    data["model"].update(segment=True, freeze_detector=freeze)
    return data


def detector_outputs(model, seed: int = 0) -> list[torch.Tensor]:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    text = torch.nn.functional.normalize(torch.randn(2, 4, 512, generator=torch.Generator().manual_seed(seed)), dim=-1)
    with torch.no_grad():
        cls_logits, reg_logits, *_ = model.eval()(images, text)
    return cls_logits + reg_logits


def test_mask_head_only_fine_tuning_keeps_detection_outputs_unchanged(setup, tmp_path):
    coco, base = setup
    before = detector_outputs(load_detector(base)[0])
    trainer = Trainer(build_train_config(data=seg_config(coco, tmp_path / "run", base, freeze=True)))
    assert trainer.model.config.mask_channels == 32
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(".seg_preds." in name or ".proto_pred." in name for name in trainable)
    initial_head = {k: v.clone() for k, v in trainer.model.state_dict().items() if ".proto_pred." in k}
    trainer.fit()
    trained, _ = load_detector(tmp_path / "run" / "last.pth")
    after = detector_outputs(trained)
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # bit for bit: weights and BN statistics frozen
    state = trained.state_dict()
    assert any(not torch.equal(state[k], v) for k, v in initial_head.items())  # the mask head did train
    scalars = [json.loads(line) for line in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()]
    assert any("loss_mask" in r for r in scalars) and any("coco/segm_mAP" in r for r in scalars)


def test_all_modules_fine_tuning_trains_the_detector_and_the_mask_head(setup, tmp_path):
    coco, base = setup
    trainer = Trainer(build_train_config(data=seg_config(coco, tmp_path / "run", base, freeze=False)))
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert any(name.startswith("neck.") for name in trainable) and any(".proto_pred." in n for n in trainable)
    trainer.fit()
    result = YOLOWorld.from_pretrained(tmp_path / "run" / "last.pth", imgsz=64).set_classes(["class0", "class1"]) \
        .predict(np.zeros((50, 70, 3), np.uint8), conf=0.0, max_det=5)[0]
    assert result.masks.shape == (len(result), 50, 70)


def test_recipes_and_their_checks():
    for recipe in ("seg_finetune_seghead", "seg_finetune_allmodules"):
        config = build_train_config(recipe)
        assert config.model.segment and config.model_config().mask_channels == 32
    assert build_train_config("seg_finetune_seghead").model.freeze_detector
    assert not build_train_config("seg_finetune_allmodules").model.freeze_detector
    with pytest.raises(ConfigError, match="segment"):
        build_train_config("finetune_coco", ["model.freeze_detector=true"])
    with pytest.raises(ConfigError, match="segment=true"):
        build_train_config("finetune_coco", ["model.arch.mask_channels=32"])
    with pytest.raises(ConfigError, match="mask metric"):
        build_train_config("finetune_coco", ["eval.metric=segm_AP"])


def test_rle_annotations_become_polygons_that_redraw_the_same_mask():
    import cv2
    from faster_coco_eval.core import mask as mask_utils

    from yoloworld.data.annotations import polygons_of

    mask = np.zeros((40, 60), np.uint8)
    cv2.circle(mask, (30, 20), 10, 1, -1)
    cv2.rectangle(mask, (2, 2), (8, 30), 1, -1)
    compressed = mask_utils.encode(np.asfortranarray(mask))
    compressed["counts"] = compressed["counts"].decode()  # as stored in a JSON file
    flat = mask.ravel(order="F")  # uncompressed RLE: column-major run lengths, starting with zeros
    runs = np.diff(np.r_[0, np.flatnonzero(np.diff(flat)) + 1, flat.size]).tolist()
    uncompressed = {"size": [40, 60], "counts": ([0] if flat[0] else []) + runs}
    for rle in (compressed, uncompressed):
        polygons = polygons_of({"segmentation": rle})
        redrawn = np.zeros_like(mask)
        cv2.fillPoly(redrawn, [p.astype(np.int32) for p in polygons], 1)
        assert len(polygons) == 2 and (redrawn == mask).all()
