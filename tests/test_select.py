"""`postprocess.select` on dense outputs (thousands of candidates, 80+ classes): the same detections as the plain
algorithm it replaces (multi-label candidates above conf, the nms_pre best, NMS class by class, max_det best)."""

import pytest
import torch
from torchvision.ops import nms

from yoloworld.postprocess import class_aware_nms, merge_synonyms, select
from yoloworld.transforms import LetterboxInfo, boxes_to_original, clip_boxes

INFO = LetterboxInfo(orig_hw=(810, 1080), scale_xy=(640 / 1080, 640 / 1080), pad_tblr=(80, 80, 0, 0))


def reference_select(scores, boxes, info, conf, iou, max_det, nms_pre, groups=None):
    """The straightforward selection: every candidate, one NMS per class, merged by score."""
    scores = merge_synonyms(scores, groups)
    keep = scores > conf
    candidate_scores = scores[keep]
    prior_index, labels = keep.nonzero(as_tuple=True)
    if len(candidate_scores) > nms_pre:
        candidate_scores, order = candidate_scores.topk(nms_pre)
        prior_index, labels = prior_index[order], labels[order]
    candidate_boxes = boxes_to_original(boxes[prior_index], info, clip=False)
    kept = []
    for label in labels.unique():
        members = (labels == label).nonzero()[:, 0]
        kept.append(members[nms(candidate_boxes[members], candidate_scores[members], iou)])
    kept = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)
    kept = kept[candidate_scores[kept].argsort(descending=True)][:max_det]
    return clip_boxes(candidate_boxes[kept], info.orig_hw), candidate_scores[kept], labels[kept], prior_index[kept]


def dense_outputs(seed: int, priors: int = 8400, texts: int = 81, spread: float = 1.5):
    """Random scores (thousands above 0.25 for spread 1.5) and boxes crowded on a 640 input."""
    generator = torch.Generator().manual_seed(seed)
    scores = (torch.randn(priors, texts, generator=generator) * spread - 2.0).sigmoid()
    centres = torch.rand(priors, 2, generator=generator) * 640
    sizes = torch.rand(priors, 2, generator=generator) * 150 + 4
    return scores, torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)


def synonym_groups(texts: int, generator: torch.Generator) -> torch.Tensor:
    """Classes of one to three texts (-1 = unused slot); the last text (the padding prompt) is in none."""
    order, rows, start = torch.randperm(texts - 1, generator=generator), [], 0
    while start < texts - 1:
        size = min(int(torch.randint(1, 4, (1,), generator=generator)), texts - 1 - start)
        rows.append(order[start:start + size].tolist() + [-1] * (3 - size))
        start += size
    return torch.tensor(rows)


def assert_same(ours, reference) -> None:
    """Same detections as sets: the same (prior, class) pairs with the same scores and boxes."""
    reference_boxes, reference_scores, reference_labels, reference_priors = reference
    assert len(ours.scores) == len(reference_scores) > 0
    key = dict(zip(zip(reference_priors.tolist(), reference_labels.tolist()), range(len(reference_scores))))
    matched = [key[pair] for pair in zip(ours.priors.tolist(), ours.labels.tolist())]
    assert sorted(matched) == list(range(len(reference_scores)))
    torch.testing.assert_close(ours.scores, reference_scores[matched])
    torch.testing.assert_close(ours.boxes, reference_boxes[matched])


@pytest.mark.parametrize("seed, conf, iou, max_det, nms_pre", [
    (0, 0.25, 0.7, 300, 30000),  # 186k candidates: the first NMS (the best 2400) already keeps max_det
    (1, 0.05, 0.5, 300, 30000),  # 500k candidates, nms_pre cuts them to 30k
    (2, 0.25, 0.7, 5000, 30000),  # a large max_det: one NMS on all 30k (nms_pre) at once
    (3, 0.05, 0.6, 100, 2000),  # a small nms_pre
    (4, 0.9, 0.7, 3000, 30000),  # 1.7k candidates, fewer than max_det survive: NMS widens to all of them
    (5, 0.97, 0.7, 300, 30000),  # a few dozen candidates
])
def test_dense_selection_equals_per_class_nms(seed, conf, iou, max_det, nms_pre):
    scores, boxes = dense_outputs(seed)
    ours = select(scores, boxes, INFO, conf, iou, max_det, nms_pre)
    assert_same(ours, reference_select(scores, boxes, INFO, conf, iou, max_det, nms_pre))


def test_dense_selection_with_synonyms_equals_per_class_nms():
    scores, boxes = dense_outputs(7, texts=121)
    groups = synonym_groups(121, torch.Generator().manual_seed(7))
    assert (groups[:, 1] >= 0).any() and len(groups) < 120
    ours = select(scores, boxes, INFO, 0.2, 0.7, 300, 30000, groups)
    assert_same(ours, reference_select(scores, boxes, INFO, 0.2, 0.7, 300, 30000, groups))


def test_no_candidate_gives_empty_detections():
    scores, boxes = dense_outputs(8)
    ours = select(scores * 0, boxes, INFO, 0.25, 0.7, 300, 30000)
    assert ours.boxes.shape == (0, 4) and len(ours.scores) == len(ours.labels) == len(ours.priors) == 0


def test_class_aware_nms_keeps_overlapping_boxes_of_other_classes_apart():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.5, 0, 10.5, 10], [0.5, 0, 10.5, 10], [1000, 1000, 1010, 1010]])
    kept = class_aware_nms(boxes, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 0, 1, 0]), 0.5)
    assert kept.tolist() == [0, 2, 3]  # box 1 is suppressed by box 0 of its class, box 2 is another class
