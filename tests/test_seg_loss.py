"""Segmentation loss: parity with fixtures/official/seg/loss_case/v2_seg_n_loss_case.npz (README 13.6), both
behaviours of the official skip-image bug, and the official polygon rasterisation."""

import json

import numpy as np
import pytest
import torch

from yoloworld.data.masks import polygon_mask
from yoloworld.engine.loss import YOLOWorldLoss


@pytest.fixture(scope="module")
def case(fixtures):
    data = np.load(fixtures / "seg" / "loss_case" / "v2_seg_n_loss_case.npz")
    return {key: torch.from_numpy(data[key]) for key in data.files if key != "texts"}


@pytest.fixture(scope="module")
def skip_demo(fixtures):
    return json.loads((fixtures / "seg" / "facts_seg.json").read_text())["v2_seg_n"]["skip_bug_demo"]


def head_outputs(case):
    """cls logits, raw (B, 64, H, W) box logits rebuilt from the stored bin logits, coefficients, prototypes."""
    reg = []
    for level in range(3):
        dist = case[f"bbox_dist_preds_{level}"]
        height, width = case[f"cls_scores_{level}"].shape[-2:]
        reg.append(dist.permute(0, 2, 3, 1).reshape(dist.shape[0], 64, height, width))
    return ([case[f"cls_scores_{i}"] for i in range(3)], reg, [case[f"coeff_preds_{i}"] for i in range(3)],
            case["proto_preds"])


def seg_losses(case, bboxes_labels=None, gt_masks=None, **options):
    cls, reg, coeffs, protos = head_outputs(case)
    bboxes_labels = case["bboxes_labels"] if bboxes_labels is None else bboxes_labels
    gt_masks = case["gt_masks"] if gt_masks is None else gt_masks
    return YOLOWorldLoss(**options)(cls, reg, bboxes_labels, coeffs=coeffs, protos=protos, gt_masks=gt_masks)


def test_polygons_rasterise_like_official_polygon2mask(case):
    for k in range(len(case["bboxes_labels"])):
        mask = polygon_mask([case[f"gt_polygon_{k}"].numpy()], 640, 640)
        assert (mask == case["gt_masks"][k].numpy()).all(), k


@pytest.mark.parametrize("official_skip", [False, True])
def test_losses_match_official_loss_case(case, official_skip):
    # this batch has no image whose positives all go to global gt 0: both behaviours give the official numbers
    losses = seg_losses(case, official_mask_skip=official_skip)
    for name in ("loss_cls", "loss_bbox", "loss_dfl", "loss_mask"):
        assert losses[name].item() == pytest.approx(case[name].item(), rel=1e-4), name
    print({name: f"{value.item():.6f} (official {case[name].item():.6f})" for name, value in losses.items()})


def test_assigned_gt_indexes_match_official_seg_assigner(case):
    from yoloworld.engine.assigner import TaskAlignedAssigner
    from yoloworld.models.boxes import flatten_levels

    scores = flatten_levels(head_outputs(case)[0]).sigmoid()
    target = TaskAlignedAssigner()(case["assigner_in_decoded_pred_bboxes"], scores, case["assigner_in_priors"],
                                   case["assigner_in_gt_labels"], case["assigner_in_gt_bboxes"],
                                   case["assigner_in_pad_bbox_flag"])
    fg = case["assigner_out_fg_mask_pre_prior"]
    assert torch.equal(target.fg_mask, fg)
    assert torch.equal(target.gt_index[fg], case["assigner_out_assigned_gt_idxs"][fg])


def test_official_skip_bug_drops_an_image_with_a_single_gt_and_the_fix_keeps_it(case, skip_demo):
    rows = torch.tensor(skip_demo["bboxes_labels"])
    keep = [0, 3, 4]  # image 0 keeps its first gt; image 1 keeps both of its gts
    assert torch.equal(rows, case["bboxes_labels"][keep])
    masks = case["gt_masks"][keep]
    image_terms = skip_demo["recomputed_per_image_without_skip"]
    official = seg_losses(case, rows, masks, official_mask_skip=True)["loss_mask"].item()
    fixed = seg_losses(case, rows, masks)["loss_mask"].item()
    assert official == pytest.approx(skip_demo["official_loss_mask"], rel=1e-4)  # image 1's term alone
    assert fixed == pytest.approx(sum(image_terms), rel=1e-4)


def test_mask_loss_is_differentiable_and_zero_without_gts(case):
    cls, reg, coeffs, protos = head_outputs(case)
    coeffs = [c.clone().requires_grad_(True) for c in coeffs]
    protos = protos.clone().requires_grad_(True)
    losses = YOLOWorldLoss()(cls, reg, case["bboxes_labels"], coeffs=coeffs, protos=protos, gt_masks=case["gt_masks"])
    losses["loss_mask"].backward()
    assert protos.grad.abs().sum() > 0 and all(torch.isfinite(c.grad).all() for c in coeffs)
    empty = YOLOWorldLoss()(cls, reg, torch.zeros(0, 6), coeffs=coeffs, protos=protos,
                            gt_masks=torch.zeros(0, 160, 160))
    assert empty["loss_mask"].item() == 0 and empty["loss_mask"].requires_grad
