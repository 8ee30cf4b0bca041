"""Deployment at any input size: rect letterbox, dynamic height/width exports, the in-graph `nms_pre` top-k and
OpenVINO (baked and dynamic vocabulary), each equal to PyTorch as sets. Model: fixtures/official/v2_n.pth at 320
px (small inputs keep the exports fast); images: the fixture photo (427x640) and a 16:9 crop of it."""

import numpy as np
import pytest
import torch
from helpers import assert_same_result_lists

from yoloworld.api import YOLOWorld
from yoloworld.export.onnx_export import compare_with_pytorch, export_onnx, plan_export
from yoloworld.export.onnx_runtime import OnnxYOLOWorld
from yoloworld.export.openvino_export import convert_onnx_export, export_openvino
from yoloworld.export.openvino_runtime import OpenVinoYOLOWorld
from yoloworld.transforms import boxes_to_original, letterbox_batch

CLASSES = "person,a red car|automobile,dog"
CONF = 0.9  # random weights: scores crowd near 1; a high threshold keeps the comparison away from the max_det cut
IMGSZ = 320
NMS_PRE = 50  # about 120 candidates pass CONF on the fixture photo: a cut of 50 changes what NMS keeps


@pytest.fixture(scope="module")
def v2(fixtures):
    api = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip", imgsz=IMGSZ)
    return api.set_classes(CLASSES)


@pytest.fixture(scope="module")
def images(fixtures):
    """The fixture photo (BGR, 427x640) and a 16:9 crop of it (360x640)."""
    image = np.load(fixtures / "inputs.npz")["image_raw"][:, :, ::-1].copy()
    return [image, np.ascontiguousarray(image[30:390])]


@pytest.fixture(scope="module")
def onnx_dynamic_shape(v2, tmp_path_factory):
    """Baked vocabulary, any height, width and batch."""
    path = tmp_path_factory.mktemp("onnx") / "v2_n.onnx"
    export_onnx(plan_export(v2, CLASSES), path, IMGSZ, dynamic_shape=True, dynamic_batch=True)
    return path


@pytest.fixture(scope="module")
def openvino_baked(onnx_dynamic_shape):
    out = onnx_dynamic_shape.parent / "v2_n_openvino_model"
    convert_onnx_export(onnx_dynamic_shape, out)
    return out


def test_rect_letterbox_is_the_smallest_multiple_of_32_holding_the_image(images):
    batch, infos = letterbox_batch([images[1]], 640, rect=True)
    assert batch.shape == (1, 3, 384, 640)  # 360x640 needs 360 -> 384 rows, not 640
    square, _ = letterbox_batch([images[1]], 640)
    top = infos[0].pad_tblr[0]
    np.testing.assert_array_equal(batch[0, :, top:top + 360], square[0, :, 140:500])  # same pixels, less padding
    corners = torch.tensor([[0.0, float(top), 640.0, float(top + 360)]])
    np.testing.assert_allclose(boxes_to_original(corners, infos[0]).numpy(), [[0, 0, 640, 360]], atol=1e-4)


def test_rect_batch_shares_one_canvas(images):
    batch, infos = letterbox_batch(images, IMGSZ, rect=True)
    assert batch.shape == (2, 3, 224, 320)  # 214x320 and 180x320 both fit 224x320
    assert [info.pad_tblr[0] for info in infos] == [5, 22]


def test_dynamic_shape_onnx_predicts_like_pytorch_in_rect_mode(v2, images, onnx_dynamic_shape):
    runner = OnnxYOLOWorld(onnx_dynamic_shape)
    for rect in (True, False):  # any multiple of 32, and the square default
        assert_same_result_lists(runner.predict(images, conf=CONF, rect=rect), v2.predict(images, conf=CONF, rect=rect),
                                 conf=CONF)
    wider = OnnxYOLOWorld(onnx_dynamic_shape, imgsz=416)  # another long side, no re-export
    v2.imgsz = 416
    try:
        assert_same_result_lists(wider.predict(images, conf=CONF, rect=True), v2.predict(images, conf=CONF, rect=True),
                                 conf=CONF)
    finally:
        v2.imgsz = IMGSZ


def test_in_graph_nms_keeps_the_nms_pre_best_like_pytorch_in_onnx_runtime_and_openvino(v2, images, tmp_path):
    path = tmp_path / "nms.onnx"
    export_onnx(plan_export(v2, CLASSES), path, IMGSZ, nms=True, conf=CONF, nms_pre=NMS_PRE, dynamic_shape=True)
    reference = v2.predict(images, conf=CONF, nms_pre=NMS_PRE, rect=True)
    assert len(reference[0]) < len(v2.predict(images[0], conf=CONF, rect=True)[0])  # the cut matters here
    convert_onnx_export(path, tmp_path / "nms_openvino_model")
    for runner in (OnnxYOLOWorld(path), OpenVinoYOLOWorld(tmp_path / "nms_openvino_model")):
        assert runner.meta["nms"] and runner.meta["nms_pre"] == NMS_PRE
        assert_same_result_lists(runner.predict(images, conf=CONF, nms_pre=NMS_PRE, rect=True), reference, conf=CONF)


def test_openvino_baked_graph_equals_pytorch(v2, openvino_baked, images):
    network_input = torch.from_numpy(letterbox_batch(images, IMGSZ, rect=True)[0])
    diffs = compare_with_pytorch(plan_export(v2, CLASSES), openvino_baked, images=network_input)
    assert diffs["scores"] <= 1e-4 and diffs["boxes"] <= 1e-4 * IMGSZ
    runner = OpenVinoYOLOWorld(openvino_baked / "v2_n.xml")  # the .xml works as well as its folder
    assert runner.class_names == ["person", "a red car", "dog"] and not runner.meta["int8"]
    for rect in (True, False):
        assert_same_result_lists(runner.predict(images, conf=CONF, rect=rect), v2.predict(images, conf=CONF, rect=rect),
                                 conf=CONF)


def test_openvino_dynamic_vocabulary_changes_classes_like_pytorch(v2, images, tmp_path):
    out = tmp_path / "v2_n_openvino_model"
    export_openvino(plan_export(v2, None, vocabulary="dynamic"), out, IMGSZ)
    assert sorted(p.name for p in out.iterdir()) == [".yoloworld-outputs.json", "v2_n.bin", "v2_n.text.bin", "v2_n.text.xml",
                                                     "v2_n.tokenizer", "v2_n.xml"]
    runner = OpenVinoYOLOWorld(out)
    texts = ["dog", "traffic light", " "]
    np.testing.assert_allclose(runner.encode_text(texts), v2.encode_text(texts).numpy(), atol=1e-5)
    other = "dog,traffic light|signal"  # a vocabulary the export never saw
    try:
        reference = v2.set_classes(other).predict(images, conf=CONF)
        assert_same_result_lists(runner.set_classes(other).predict(images, conf=CONF), reference, conf=CONF)
    finally:
        v2.set_classes(CLASSES)
