"""Parity with the official implementation: fixtures/official/{inputs,v2_n_outputs,v1_n_outputs}.npz."""

import numpy as np
import pytest
import torch

from yoloworld.api import YOLOWorld
from yoloworld.data.letterbox import letterbox
from yoloworld.models.boxes import decode_boxes, flatten_levels


def close(ours: torch.Tensor, ref: np.ndarray, tol: float = 1e-4) -> float:
    """Max abs difference, measured relative to the tensor's scale when that exceeds 1.

    The official model's own noise floor (fixture README §11: the same model with another conv kernel) reaches
    1.9e-4 on neck features of magnitude ~20 and 1.2e-4 on box distances in [0, 15]; 1e-4 x max(1, max|ref|)
    keeps the check at the official noise floor instead of below it.
    """
    diff = float(np.abs(ours.detach().cpu().numpy() - ref).max())
    assert diff <= tol * max(1.0, float(np.abs(ref).max())), diff
    return diff


@pytest.fixture(scope="module", params=["v2_n", "v1_n"])
def case(request, fixtures):
    name = request.param
    api = YOLOWorld.from_pretrained(fixtures / f"{name}.pth", text_model=fixtures / "tiny-clip")
    return api, np.load(fixtures / "inputs.npz"), np.load(fixtures / f"{name}_outputs.npz")


def network_input(inputs) -> torch.Tensor:
    # the API runs channels_last (see YOLOWorld.__init__); feed the submodules the same layout
    return torch.from_numpy(inputs["image_input"]).contiguous(memory_format=torch.channels_last)


def test_text_embeddings_match_official(case):
    api, inputs, _ = case
    close(api.encode_text(list(inputs["texts"])), inputs["text_embeds"])


def test_tokenizer_matches_official_ids(case):
    api, inputs, _ = case
    tokens = api.model.text_model.tokenize(list(inputs["texts"]))
    assert (tokens["input_ids"].numpy() == inputs["input_ids"]).all()


def test_letterbox_reproduces_official_pipeline(fixtures):
    inputs = np.load(fixtures / "inputs.npz")
    boxed, info = letterbox(inputs["image_raw"][:, :, ::-1].copy())  # the pipeline reads BGR
    assert info.pad_tblr == tuple(int(v) for v in inputs["pad_param"][0])
    assert np.allclose(info.scale_xy, inputs["scale_factor"][0])
    assert (boxed.transpose(2, 0, 1)[None] == inputs["image_letterboxed_bgr_uint8"]).all()
    rgb = torch.from_numpy(boxed[:, :, ::-1].transpose(2, 0, 1).copy()).float() / 255
    assert torch.equal(rgb[None], torch.from_numpy(inputs["image_input"]))


def test_backbone_neck_head_match_official(case):
    api, inputs, outputs = case
    model = api.model
    x, text = network_input(inputs), torch.from_numpy(inputs["text_embeds"])[None]
    captured = {}
    if model.neck.text_enhancer is not None:  # v1: the enhanced text feeds only the bottom-up layers
        model.neck.text_enhancer.register_forward_hook(lambda m, args, out: captured.setdefault("text", out))
    with torch.no_grad():
        feats = model.backbone.image_model(x)
        for i, f in enumerate(feats):
            close(f, outputs[f"backbone_{i}"])
        for i, f in enumerate(model.neck(feats, text)):
            close(f, outputs[f"neck_{i}"])
    if "text_enhancer_out" in outputs:
        close(captured["text"], outputs["text_enhancer_out"])
    cls_logits, bbox_preds = api.forward_raw(x, text)
    for i in range(3):
        close(cls_logits[i], outputs[f"cls_logits_{i}"])
        close(bbox_preds[i], outputs[f"bbox_preds_{i}"])
    close(flatten_levels(cls_logits).sigmoid(), outputs["flat_scores"])
    close(decode_boxes(bbox_preds), outputs["predict_decoded_bboxes"], tol=2e-4 / 15)


def test_predictions_match_official(case):
    api, inputs, outputs = case
    api.set_classes(list(inputs["texts"]), padding=False)  # the fixture's texts already end with ' '
    result = api.predict(inputs["image_raw"][:, :, ::-1].copy(), conf=0.001, iou=0.7, max_det=300)[0]
    ref_boxes, ref_scores, ref_labels = outputs["pred_bboxes_0"], outputs["pred_scores_0"], outputs["pred_labels_0"]
    assert len(result) == len(ref_scores) == 300
    # compare as sets: consecutive kept scores can be closer than float noise (fixture README §11)
    same = ((np.abs(result.xyxy[:, None] - ref_boxes[None]).max(-1) < 0.05)
            & (result.class_ids[:, None] == ref_labels[None])
            & (np.abs(result.scores[:, None] - ref_scores[None]) < 1e-4))
    assert same.any(1).mean() >= 0.98 and same.any(0).mean() >= 0.98
    assert (result.scores[:-1] >= result.scores[1:]).all()
