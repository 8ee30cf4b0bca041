"""Task-aligned assigner: parity with the official assigner outputs and behaviour on padding / empty images."""

import numpy as np
import pytest
import torch

from yoloworld.engine.assigner import TaskAlignedAssigner
from yoloworld.models.boxes import flatten_levels


@pytest.fixture(scope="module")
def loss_case(fixtures):
    data = np.load(fixtures / "loss_case" / "v2_n_loss_case.npz")
    return {key: torch.from_numpy(data[key]) for key in data.files if key not in ("texts",)}


def assigner_inputs(case):
    """The captured official assigner inputs; scores = sigmoid of the flattened class logits."""
    scores = flatten_levels([case[f"cls_scores_{i}"] for i in range(3)]).sigmoid()
    return (case["assigner_in_decoded_pred_bboxes"], scores, case["assigner_in_priors"],
            case["assigner_in_gt_labels"], case["assigner_in_gt_bboxes"], case["assigner_in_pad_bbox_flag"])


def test_matches_official_assigner(loss_case):
    result = TaskAlignedAssigner()(*assigner_inputs(loss_case))
    fg = loss_case["assigner_out_fg_mask_pre_prior"]
    assert torch.equal(result.fg_mask, fg)
    assert result.fg_mask.sum(1).tolist() == [30, 17]
    assert torch.equal(result.labels[fg], loss_case["assigner_out_assigned_labels"][fg])
    assert torch.equal(result.labels, loss_case["assigner_out_assigned_labels"])  # background too: gt 0's label
    torch.testing.assert_close(result.bboxes, loss_case["assigner_out_assigned_bboxes"], rtol=0, atol=1e-5)
    torch.testing.assert_close(result.scores, loss_case["assigner_out_assigned_scores"], rtol=0, atol=1e-5)
    assert result.scores.max() > 0.1  # the comparison is not between two all-zero tensors


def test_extra_padding_gt_changes_nothing(loss_case):
    pred, scores, priors, labels, boxes, valid = assigner_inputs(loss_case)
    pad = lambda t: torch.cat([t, torch.zeros_like(t[:, :1])], dim=1)  # noqa: E731
    reference = TaskAlignedAssigner()(pred, scores, priors, labels, boxes, valid)
    padded = TaskAlignedAssigner()(pred, scores, priors, pad(labels), pad(boxes), pad(valid))
    for name in ("labels", "bboxes", "scores", "fg_mask"):
        assert torch.equal(getattr(padded, name), getattr(reference, name)), name


def test_image_whose_gts_are_all_padding_is_background(loss_case):
    pred, scores, priors, labels, boxes, valid = assigner_inputs(loss_case)
    valid = valid.clone()
    valid[1] = 0
    result = TaskAlignedAssigner()(pred, scores, priors, labels, boxes, valid)
    assert not result.fg_mask[1].any()
    assert result.scores[1].abs().sum() == 0
    assert torch.equal(result.fg_mask[0], loss_case["assigner_out_fg_mask_pre_prior"][0])


def test_no_gt_in_batch_gives_background_with_label_num_classes():
    pred = torch.rand(2, 7, 4) * 10
    scores = torch.rand(2, 7, 3)
    priors = torch.rand(7, 2) * 10
    no_gt = torch.zeros(2, 0, 1), torch.zeros(2, 0, 4), torch.zeros(2, 0, 1)
    result = TaskAlignedAssigner()(pred, scores, priors, *no_gt)
    assert not result.fg_mask.any()
    assert (result.labels == 3).all() and result.scores.sum() == 0 and result.bboxes.sum() == 0


def grid_points(size=10, step=1.0):
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) * step
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def test_topk_per_gt_and_candidates_inside_the_box():
    points = grid_points()  # 100 points at half-integers in [0, 10]
    gt = torch.tensor([[[1.0, 1.0, 6.0, 6.0]]])  # 25 centres inside
    pred = torch.cat([points - 1.5, points + 1.5], dim=-1)[None]  # 3x3 boxes centred on each point
    scores = torch.full((1, 100, 2), 0.5)
    result = TaskAlignedAssigner(topk=5)(pred, scores, points, torch.tensor([[[1.0]]]), gt, torch.ones(1, 1, 1))
    chosen = points[result.fg_mask[0]]
    assert len(chosen) == 5
    assert ((chosen > 1) & (chosen < 6)).all()
    # The best-aligned predictions: the one on the gt centre (3.5, 3.5) and its 4 neighbours.
    assert torch.allclose(chosen.mean(0), torch.tensor([3.5, 3.5]))
    assert (result.labels[0][result.fg_mask[0]] == 1).all()
    assert (result.scores[0, :, 0] == 0).all() and result.scores[0, :, 1].max() > 0
    # The best positive's target equals the gt's best overlap (metric / max metric = 1).
    assert result.scores[0, :, 1].max() <= 1.0


def test_prior_claimed_by_two_gts_goes_to_the_higher_overlap():
    points = torch.tensor([[5.0, 5.0]])
    gts = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [4.0, 4.0, 8.0, 8.0]]])
    pred = torch.tensor([[[4.2, 4.2, 8.0, 8.0]]])  # close to the second gt
    result = TaskAlignedAssigner(topk=1)(pred, torch.full((1, 1, 3), 0.9), points,
                                         torch.tensor([[[0.0], [2.0]]]), gts, torch.ones(1, 2, 1))
    assert result.fg_mask.all()
    assert result.labels.item() == 2
    assert torch.equal(result.bboxes[0, 0], gts[0, 1])
