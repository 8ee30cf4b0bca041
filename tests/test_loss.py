"""YOLO-World loss: parity with the official loss fixture, and behaviour (no gts, gradients, perfect boxes)."""

import math

import numpy as np
import pytest
import torch

from yoloworld.engine.iou import bbox_iou
from yoloworld.engine.loss import YOLOWorldLoss, batch_ground_truth
from yoloworld.models.boxes import (
    bbox_to_distance,
    decode_boxes,
    dfl_integral,
    make_priors,
)


@pytest.fixture(scope="module")
def loss_case(fixtures):
    data = np.load(fixtures / "loss_case" / "v2_n_loss_case.npz")
    return {key: torch.from_numpy(data[key]) for key in data.files if key != "texts"}


def raw_reg_logits(case):
    """Rebuild the head's raw (B, 64, H, W) box output from the stored (B, H*W, 4, 16) bin logits."""
    maps = []
    for level in range(3):
        dist = case[f"bbox_dist_preds_{level}"]
        height, width = case[f"cls_scores_{level}"].shape[-2:]
        maps.append(dist.permute(0, 2, 3, 1).reshape(dist.shape[0], 64, height, width))
    return maps


def cls_logits(case):
    return [case[f"cls_scores_{level}"] for level in range(3)]


def test_raw_reg_logits_decode_like_the_official_head(loss_case):
    raw = raw_reg_logits(loss_case)
    for level in range(3):
        torch.testing.assert_close(dfl_integral(raw[level]), loss_case[f"bbox_preds_{level}"], rtol=0, atol=1e-5)
    decoded = decode_boxes([dfl_integral(m) for m in raw])
    torch.testing.assert_close(decoded, loss_case["assigner_in_decoded_pred_bboxes"], rtol=1e-5, atol=2e-4)


def test_losses_match_official_fixture(loss_case):
    losses = YOLOWorldLoss()(cls_logits(loss_case), raw_reg_logits(loss_case), loss_case["bboxes_labels"])
    for name in ("loss_cls", "loss_bbox", "loss_dfl"):
        expected = loss_case[name].item()
        assert losses[name].item() == pytest.approx(expected, rel=1e-4), name


def test_world_size_scales_every_loss(loss_case):
    loss = YOLOWorldLoss()
    one = loss(cls_logits(loss_case), raw_reg_logits(loss_case), loss_case["bboxes_labels"])
    four = loss(cls_logits(loss_case), raw_reg_logits(loss_case), loss_case["bboxes_labels"], world_size=4)
    for name in one:
        assert four[name].item() == pytest.approx(4 * one[name].item(), rel=1e-6)


def test_losses_are_differentiable(loss_case):
    cls = [m.clone().requires_grad_(True) for m in cls_logits(loss_case)]
    reg = [m.clone().requires_grad_(True) for m in raw_reg_logits(loss_case)]
    losses = YOLOWorldLoss()(cls, reg, loss_case["bboxes_labels"])
    sum(losses.values()).backward()
    for tensor in cls + reg:
        assert torch.isfinite(tensor.grad).all()
    assert all(m.grad.abs().sum() > 0 for m in cls)
    assert sum(m.grad.abs().sum() for m in reg) > 0


def random_outputs(batch=2, size=64, texts=4, seed=0, requires_grad=False):
    generator = torch.Generator().manual_seed(seed)
    sizes = [size // s for s in (8, 16, 32)]
    cls = [torch.randn(batch, texts, n, n, generator=generator).requires_grad_(requires_grad) for n in sizes]
    reg = [torch.randn(batch, 64, n, n, generator=generator).requires_grad_(requires_grad) for n in sizes]
    return cls, reg


def test_batch_without_gt_gives_finite_losses_and_gradients():
    cls, reg = random_outputs(requires_grad=True)
    losses = YOLOWorldLoss()(cls, reg, torch.zeros(0, 6))
    assert losses["loss_bbox"].item() == 0 and losses["loss_dfl"].item() == 0
    assert math.isfinite(losses["loss_cls"].item()) and losses["loss_cls"].item() > 0
    sum(losses.values()).backward()
    assert all(torch.isfinite(m.grad).all() for m in cls + reg)
    assert all(m.grad.abs().sum() > 0 for m in cls)  # every prior is a negative for every text


def test_image_without_gt_adds_nothing_to_box_losses():
    cls, reg = random_outputs(batch=2)
    gts = torch.tensor([[0, 1, 8.0, 10.0, 40.0, 50.0], [0, 3, 30.0, 20.0, 60.0, 44.0]])
    pair = YOLOWorldLoss()(cls, reg, gts)
    alone = YOLOWorldLoss()([m[:1] for m in cls], [m[:1] for m in reg], gts)
    # Each loss is scaled by the number of images: 2 for the pair, 1 alone.
    assert pair["loss_bbox"].item() == pytest.approx(2 * alone["loss_bbox"].item(), rel=1e-5)
    assert pair["loss_dfl"].item() == pytest.approx(2 * alone["loss_dfl"].item(), rel=1e-5)
    assert pair["loss_bbox"].item() > 0
    assert pair["loss_cls"].item() > 2 * alone["loss_cls"].item()  # the empty image still has negatives


def logits_for_distances(distances, reg_max=16):
    """(B, 4, H, W) distances in stride units -> raw logits whose DFL integral equals them (two-hot bins)."""
    distances = distances.clamp(0, reg_max - 1 - 0.01)
    left = distances.floor()
    bins = torch.arange(reg_max, dtype=torch.float32)[None, None, :, None, None]
    left_, dist_ = left[:, :, None], distances[:, :, None]
    probs = (bins == left_) * (left_ + 1 - dist_) + (bins == left_ + 1) * (dist_ - left_)
    b, _, h, w = distances.shape
    return probs.clamp(min=1e-9).log().reshape(b, 4 * reg_max, h, w)


def reg_logits_for_box(box, size=64):
    """Raw logits so that every prior predicts `box` (xyxy pixels)."""
    maps = []
    for stride in (8, 16, 32):
        n = size // stride
        points, _ = make_priors([(n, n)], (stride,))
        distances = bbox_to_distance(points, box[None]) / stride  # (n*n, 4)
        maps.append(logits_for_distances(distances.T.reshape(1, 4, n, n)))
    return maps


def test_perfect_boxes_lower_box_losses_than_shifted_ones():
    gt = torch.tensor([10.0, 12.0, 50.0, 44.0])
    gts = torch.cat([torch.tensor([0.0, 2.0]), gt])[None]
    cls, _ = random_outputs(batch=1, seed=3)
    perfect_reg = reg_logits_for_box(gt)
    # Prior (3, 3) of stride 8 sits at (28, 28): distances 18, 16, 22, 16 px to the gt sides.
    expected = torch.tensor([18.0, 16.0, 22.0, 16.0]) / 8
    assert torch.allclose(dfl_integral(perfect_reg[0])[0, :, 3, 3], expected, atol=1e-5)
    perfect = YOLOWorldLoss()(cls, perfect_reg, gts)
    shifted = YOLOWorldLoss()(cls, reg_logits_for_box(gt + torch.tensor([6.0, 4.0, 6.0, 4.0])), gts)
    assert perfect["loss_bbox"].item() < 1e-4
    assert shifted["loss_bbox"].item() > 0.05
    assert perfect["loss_dfl"].item() < shifted["loss_dfl"].item()


def test_half_precision_outputs_give_float32_losses():
    cls, reg = random_outputs(batch=1)
    gts = torch.tensor([[0, 1, 8.0, 10.0, 40.0, 50.0]])
    full = YOLOWorldLoss()(cls, reg, gts)
    half = YOLOWorldLoss()([m.bfloat16() for m in cls], [m.bfloat16() for m in reg], gts)
    for name in full:
        assert half[name].dtype == torch.float32
        assert half[name].item() == pytest.approx(full[name].item(), rel=0.05)


def test_batch_ground_truth_pads_per_image_in_order():
    rows = torch.tensor([[1, 4, 1.0, 1.0, 5.0, 5.0],
                         [0, 2, 0.0, 0.0, 3.0, 3.0],
                         [1, 0, 2.0, 2.0, 9.0, 9.0]])
    labels, boxes, valid = batch_ground_truth(rows, batch_size=3)
    assert labels.tolist() == [[2, 0], [4, 0], [0, 0]]
    assert boxes[1].tolist() == [[1, 1, 5, 5], [2, 2, 9, 9]]
    assert valid.tolist() == [[True, False], [True, True], [False, False]]
    labels, boxes, valid = batch_ground_truth(torch.zeros(0, 6), batch_size=2)
    assert boxes.shape == (2, 0, 4) and valid.shape == (2, 0)
    with pytest.raises(ValueError):
        batch_ground_truth(rows, batch_size=1)


def test_bbox_iou_and_ciou_values():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([1.0, 1.0, 3.0, 3.0])
    assert bbox_iou(a, b, ciou=False).item() == pytest.approx(1 / 7, abs=1e-6)
    # Same aspect ratio (v = 0): CIoU = IoU - centre distance^2 / enclosing diagonal^2 = 1/7 - 2/18.
    assert bbox_iou(a, b).item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)
    assert bbox_iou(a, a).item() == pytest.approx(1.0, abs=1e-6)
    far = torch.tensor([10.0, 10.0, 11.0, 14.0])
    assert bbox_iou(a, far).item() < 0
    # Broadcasting: (2, 1, 4) x (1, 3, 4) -> (2, 3)
    assert bbox_iou(torch.stack([a, b])[:, None], torch.stack([a, b, far])[None]).shape == (2, 3)
