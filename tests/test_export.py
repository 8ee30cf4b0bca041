"""ONNX export and the ONNX Runtime runner: parity with PyTorch for baked and dynamic vocabularies, batch > 1,
in-graph NMS, v1 at 640, and `yoloworld predict model.onnx`. Models: fixtures/official/v2_n.pth, v1_n.pth."""

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_same_result_lists

from yoloworld.api import YOLOWorld
from yoloworld.cli import main
from yoloworld.errors import InputError
from yoloworld.export.onnx_export import compare_with_pytorch, export_onnx, plan_export
from yoloworld.export.onnx_runtime import OnnxYOLOWorld
from yoloworld.models.neck import adaptive_max_pool

CLASSES = "person,a red car|automobile,dog"
CONF = 0.9  # random weights: scores crowd near 1; a high threshold keeps the comparison away from the max_det cut


@pytest.fixture(scope="module")
def v2(fixtures):
    api = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip")
    return api.set_classes(CLASSES)


@pytest.fixture(scope="module")
def images(fixtures):
    """The fixture image (BGR, as read from disk) and a second, differently shaped one."""
    image = np.load(fixtures / "inputs.npz")["image_raw"][:, :, ::-1].copy()
    return [image, np.ascontiguousarray(image[::-1, ::2])]


@pytest.fixture(scope="module")
def network_input(fixtures):
    return torch.from_numpy(np.load(fixtures / "inputs.npz")["image_input"])


@pytest.fixture(scope="module")
def baked(v2, tmp_path_factory):
    path = tmp_path_factory.mktemp("baked") / "v2_n.onnx"
    plan = plan_export(v2, CLASSES)
    export_onnx(plan, path, dynamic_batch=True)
    return plan, path


@pytest.fixture(scope="module")
def dynamic(v2, tmp_path_factory):
    path = tmp_path_factory.mktemp("dynamic") / "v2_n.onnx"
    plan = plan_export(v2, None, vocabulary="dynamic")
    export_onnx(plan, path, dynamic_batch=True)
    return plan, path


def test_baked_graph_equals_pytorch_for_a_batch_of_two(baked, network_input):
    plan, path = baked
    batch = torch.cat([network_input, network_input.flip(-1)])
    diffs = compare_with_pytorch(plan, path, images=batch)
    assert diffs["scores"] <= 1e-4
    assert diffs["boxes"] <= 1e-4 * 640  # 1e-4 of the input size, in pixels
    assert plan.graph.detector.config.contrastive == "rep"  # v2: the vocabulary is folded into the weights


def test_baked_scores_equal_text_conditioned_model_with_padding_prompt(v2, baked, network_input):
    _, path = baked
    session = OnnxYOLOWorld(path).session
    scores, _ = session.run(None, {"images": network_input.numpy()})
    texts = v2.vocabulary.texts
    assert texts[-1] == " " and scores.shape[-1] == len(texts) == 5  # 4 texts + the padding prompt
    cls_logits, _ = v2.forward_raw(network_input, v2.encode_text(texts)[None])
    reference = torch.cat([c.flatten(2).transpose(1, 2) for c in cls_logits], dim=1).sigmoid()
    assert np.abs(scores - reference.numpy()).max() <= 1e-4


def test_onnx_runner_predicts_like_pytorch(v2, baked, images):
    runner = OnnxYOLOWorld(baked[1])
    assert runner.class_names == ["person", "a red car", "dog"]
    assert_same_result_lists(runner.predict(images, conf=CONF), v2.predict(images, conf=CONF), conf=CONF)


def test_dynamic_vocabulary_changes_classes_and_agrees_with_baked_path(v2, baked, dynamic, images, network_input):
    plan, path = dynamic
    assert path.with_suffix(".text.onnx").is_file() and (path.parent / "v2_n.tokenizer" / "vocab.json").is_file()
    diffs = compare_with_pytorch(plan, path, images=torch.cat([network_input, network_input.flip(-1)]))
    assert diffs["scores"] <= 1e-4 and diffs["boxes"] <= 1e-4 * 640
    runner = OnnxYOLOWorld(path)
    texts = ["dog", "traffic light", "a photo of a red car", " "]
    embeds = runner.encode_text(texts)
    np.testing.assert_allclose(embeds, v2.encode_text(texts).numpy(), atol=1e-5)
    runner.set_classes(CLASSES)
    assert_same_result_lists(runner.predict(images, conf=CONF), OnnxYOLOWorld(baked[1]).predict(images, conf=CONF),
                             conf=CONF)
    other = "dog,traffic light"  # a new vocabulary, no re-export
    runner.set_classes(other)
    try:
        reference = v2.set_classes(other).predict(images, conf=CONF)
        assert_same_result_lists(runner.predict(images, conf=CONF), reference, conf=CONF)
    finally:
        v2.set_classes(CLASSES)


def test_in_graph_nms_gives_the_same_detections(v2, tmp_path, images):
    path = tmp_path / "nms.onnx"
    export_onnx(plan_export(v2, CLASSES), path, nms=True, conf=CONF, iou=0.7, max_det=300)
    runner = OnnxYOLOWorld(path)
    assert [o.name for o in runner.session.get_outputs()] == ["detections"]
    assert_same_result_lists(runner.predict(images, conf=CONF), v2.predict(images, conf=CONF), conf=CONF)


def test_v1_exports_at_640_with_image_pooling(fixtures, tmp_path, network_input):
    api = YOLOWorld.from_pretrained(fixtures / "v1_n.pth", text_model=fixtures / "tiny-clip")
    plan = plan_export(api, CLASSES)
    assert plan.graph.baked_text is not None  # v1 cannot be reparameterized: texts are a constant
    path = tmp_path / "v1.onnx"
    export_onnx(plan, path)
    diffs = compare_with_pytorch(plan, path, images=network_input)
    assert diffs["scores"] <= 1e-4 and diffs["boxes"] <= 1e-4 * 640


def test_exportable_adaptive_max_pool_equals_pytorch():
    x = torch.randn(2, 3, 80, 47)
    for size in (1, 3, 5):
        assert torch.equal(adaptive_max_pool(x, size), F.adaptive_max_pool2d(x, size))


def test_predict_cli_accepts_onnx_and_baked_vocabulary_is_fixed(v2, baked, images, tmp_path, capsys):
    image_path = tmp_path / "street.png"
    cv2.imwrite(str(image_path), images[0])
    out = tmp_path / "dets.json"
    assert main(["predict", str(image_path), "--weights", str(baked[1]), "--conf", str(CONF), "--json", str(out),
                 "--no-save"]) == 0
    detections = json.loads(out.read_text())[0]["detections"]
    reference = v2.predict([images[0]], conf=CONF)[0]
    assert [d["class_name"] for d in detections] == reference.class_names
    with pytest.raises(InputError, match="baked in"):
        OnnxYOLOWorld(baked[1]).set_classes("cat,bird")
    code = main(["predict", str(image_path), "--weights", str(baked[1]), "--classes", "cat", "--no-save"])
    assert code == 2 and "baked in" in capsys.readouterr().err
