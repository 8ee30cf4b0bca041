"""Ultralytics YOLO-World files load without running pickled code and predict what Ultralytics predicts.

Random S models are built by Ultralytics itself from its yaml (v1 `yolov8s-world`, v2 `yolov8s-worldv2`), with
randomised BatchNorm statistics and biases so that a wrong key mapping cannot hide behind identity layers, a
vocabulary (names + random unit text embeddings) set as `set_classes` sets it, and written in the four layouts
Ultralytics writes. Each file is compared with Ultralytics' own loader and forward on the same input.
"""

import json
import os
import subprocess
import sys
from copy import deepcopy

import cv2
import numpy as np
import pytest
import torch
from helpers import assert_same_detections, match_detections
from torch import nn

from yoloworld.api import YOLOWorld
from yoloworld.errors import CheckpointError
from yoloworld.models.boxes import decode_boxes, dfl_integral
from yoloworld.models.checkpoint import TEXT_PREFIX, load_detector, read_checkpoint
from yoloworld.models.safe_pickle import Record, load_inert
from yoloworld.models.weights import resolve_weights
from yoloworld.postprocess import select
from yoloworld.results import Results
from yoloworld.transforms import letterbox_batch

os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics: no update checks or downloads
NAMES = ["person", "bus", "traffic light", "dog", "backpack"]
LAYOUTS = ("model_save", "trainer", "stripped", "fused")
IMGSZ = 256


@pytest.fixture(scope="module")
def ultralytics():
    """The package, or a failure under CI=true (it is in the test extra), a skip elsewhere."""
    try:
        import ultralytics
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("ultralytics is not installed (pip install -e '.[test]')")
        pytest.skip("ultralytics is not installed")
    return ultralytics


@torch.no_grad()
def randomise(model: nn.Module, seed: int) -> None:
    """Random BatchNorm statistics and affine terms, biases and attention/contrastive scalars."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            module.weight.uniform_(0.5, 1.5, generator=g)
            module.bias.normal_(0, 0.2, generator=g)
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2, generator=g)
            module.running_var.uniform_(0.5, 2.0, generator=g)
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.normal_(0, 0.2, generator=g)
        name = type(module).__name__
        if name == "MaxSigmoidAttnBlock":
            module.bias.normal_(0, 1.0, generator=g)
        if name in ("ContrastiveHead", "BNContrastiveHead"):
            # at their init the logits of a random model spread by ~0.15 (v2) / ~0.7 (v1): widen the spread so
            # that a score threshold separates detections
            module.bias.fill_(-4.0).add_(torch.randn(1, generator=g))
            module.logit_scale.add_(torch.randn((), generator=g) * 0.1 + (3.0 if name == "BNContrastiveHead" else 1.0))


def set_vocabulary(world_model, names, seed: int) -> None:
    """What `set_classes` leaves behind, without CLIP: unit text embeddings (1, N, 512), head nc, names."""
    g = torch.Generator().manual_seed(seed)
    world_model.txt_feats = nn.functional.normalize(torch.randn(1, len(names), 512, generator=g), dim=-1)
    world_model.model[-1].nc = len(names)
    world_model.names = list(names)


def write_layouts(ultralytics, yaml: str, folder, seed: int) -> dict:
    """The four layouts: Model.save (fp16 under `model`), a trainer checkpoint (fp16 under `ema`, optimizer, args),
    strip_optimizer's output, and Model.save after fuse() (conv biases, no BatchNorm)."""
    from ultralytics.utils.torch_utils import strip_optimizer

    with torch.random.fork_rng():  # the convolutions' own init draws from the global generator: seed it here
        torch.manual_seed(seed)
        wrapper = ultralytics.YOLOWorld(yaml)
    randomise(wrapper.model, seed)
    set_vocabulary(wrapper.model, NAMES, seed)
    paths = {name: folder / f"{yaml[:-5]}_{name}.pt" for name in LAYOUTS}
    wrapper.save(paths["model_save"])
    ema = deepcopy(wrapper.model).half()
    ema.names = dict(enumerate(NAMES))  # trainers store the dataset's {index: name}
    optimizer = torch.optim.SGD(wrapper.model.parameters(), lr=0.01, momentum=0.9)
    torch.save({"epoch": 3, "best_fitness": 0.5, "model": None, "ema": ema, "updates": 40,
                "optimizer": optimizer.state_dict(), "train_args": {"imgsz": IMGSZ, "epochs": 10},
                "train_metrics": {"fitness": 0.5}, "date": "2025-01-01", "version": ultralytics.__version__},
               paths["trainer"])
    strip_optimizer(paths["trainer"], str(paths["stripped"]))
    wrapper.model.fuse(verbose=False)
    wrapper.save(paths["fused"])
    return paths


@pytest.fixture(scope="module")
def files(ultralytics, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ultralytics")
    return {"v2": write_layouts(ultralytics, "yolov8s-worldv2.yaml", folder, 0),
            "v1": write_layouts(ultralytics, "yolov8s-world.yaml", folder, 1)}


@pytest.fixture(scope="module")
def image():
    """A 256 x 256 BGR image: the network input is the image itself (no resize, no padding). Smoothed noise, so that
    no two priors see the same pixels (flat regions give exactly tied scores, and NMS breaks ties by order)."""
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (IMGSZ, IMGSZ, 3), dtype=np.uint8), (0, 0), 1.0)


def ultralytics_reference(path, batch: torch.Tensor):
    """Ultralytics' loader and forward: class logits (B, N, A), xyxy boxes (B, A, 4), decoded output, names."""
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(str(path))
    with torch.no_grad():
        decoded, raw = model.eval()(batch)
    xywh = decoded[:, :4].transpose(1, 2)
    boxes = torch.cat([xywh[..., :2] - xywh[..., 2:] / 2, xywh[..., :2] + xywh[..., 2:] / 2], dim=-1)
    names = [model.names[i] for i in range(len(model.names))] if isinstance(model.names, dict) else model.names
    return raw["scores"], boxes, decoded, list(names)


def ultralytics_detections(decoded: torch.Tensor, names: list[str], conf: float) -> Results:
    """Ultralytics' NMS with the official multi-label semantics, boxes clipped to the image as ours are."""
    from ultralytics.utils.nms import non_max_suppression

    det = non_max_suppression(decoded, conf, 0.7, multi_label=True, max_det=300)[0]
    det[:, :4] = det[:, :4].clamp(0, IMGSZ)
    return Results(det[:, :4].numpy(), det[:, 4].numpy(), det[:, 5].long().numpy(), names, (IMGSZ, IMGSZ))


@pytest.mark.parametrize("version", ["v2", "v1"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_ultralytics_file_predicts_what_ultralytics_predicts(files, image, version, layout):
    path = files[version][layout]
    batch = torch.from_numpy(image[:, :, ::-1].transpose(2, 0, 1).copy()).float()[None] / 255
    their_logits, their_boxes, decoded, names = ultralytics_reference(path, batch)

    model, checkpoint = load_detector(path)  # NCHW, the layout Ultralytics runs in
    assert checkpoint["meta"]["yoloworld"]["classes"] == [[n] for n in NAMES] and names == NAMES
    assert model.config.version == version and model.backbone.text_model is None
    with torch.no_grad():
        cls_logits, reg_logits = model(batch, checkpoint["class_embeddings"][None])
    our_logits = torch.cat([c.flatten(2) for c in cls_logits], dim=2)
    our_boxes = decode_boxes([dfl_integral(r) for r in reg_logits])
    logit_diff = (our_logits - their_logits).abs().max().item()
    box_diff = (our_boxes - their_boxes).abs().max().item()
    assert logit_diff <= 1e-5, logit_diff
    assert box_diff <= 1e-3, box_diff

    # the same selection: our `select` and Ultralytics' NMS on the same decoded outputs (theirs), with exact ties
    # broken. The random model's scores all lie within 0.01 of each other and many are equal in float32; NMS keeps
    # whichever of two tied, overlapping boxes comes first, and the two implementations order candidates
    # differently (prior-major vs best-first), so tied sets may differ by a valid choice (seen on an AMD EPYC)
    decoded = decoded.clone()
    decoded[:, 4:] += torch.arange(decoded.shape[-1]) * 1e-6  # a distinct score per prior (float32 step <= 6e-8)
    conf = round(their_logits.flatten().topk(1000).values[-1].sigmoid().item(), 4)  # 1000 candidates before NMS
    theirs = ultralytics_detections(decoded, names, conf)
    _, infos = letterbox_batch([image], IMGSZ)
    found = select(decoded[0, 4:].T, their_boxes[0], infos[0], conf, iou=0.7, max_det=300, nms_pre=30000)
    ours = Results(found.boxes.numpy(), found.scores.numpy(), found.labels.numpy(), NAMES, image.shape[:2])
    assert 10 <= len(theirs) < 300, "the comparison needs detections, and no max_det cut"
    assert_same_detections(ours, theirs, box_tol=1e-3, score_tol=1e-5, conf=conf)
    pairs, _, _ = match_detections(ours, theirs, 1e-3, 1e-5)

    print(f"{version} {layout}: max |logit diff| {logit_diff:.2e}, max |box diff| {box_diff:.2e} px, "
          f"{len(pairs)} of {len(ours)} / {len(theirs)} detections matched")


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_front_api_predicts_the_stored_vocabulary(files, image, version):
    """`YOLOWorld.from_pretrained` runs channels_last: float noise ~1e-5 reorders this random model's near-tied
    candidates in NMS, so only its best detection, which no NMS order can remove, is compared with Ultralytics."""
    path = files[version]["model_save"]
    batch = torch.from_numpy(image[:, :, ::-1].transpose(2, 0, 1).copy()).float()[None] / 255
    their_logits, _, decoded, names = ultralytics_reference(path, batch)
    conf = round(their_logits.flatten().topk(1000).values[-1].sigmoid().item(), 4)
    theirs = ultralytics_detections(decoded, names, conf)
    api = YOLOWorld.from_pretrained(path, imgsz=IMGSZ)
    best = api.predict(image, conf=conf)[0]
    assert api.class_names == NAMES and best.class_ids[0] == theirs.class_ids[0]
    assert np.abs(best.xyxy[0] - theirs.xyxy[0]).max() <= 1e-2 and abs(best.scores[0] - theirs.scores[0]) <= 1e-4


def test_trainer_checkpoint_keeps_recorded_input_size_and_dict_names(files):
    stored = read_checkpoint(files["v2"]["trainer"])["meta"]["yoloworld"]
    assert stored["imgsz"] == IMGSZ and stored["padded"] is False  # Ultralytics never appends a padding prompt
    assert YOLOWorld.from_pretrained(files["v2"]["trainer"]).imgsz == IMGSZ


class WritesMarker:
    """A pickled payload: unpickling with torch.load(weights_only=False) would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_never_runs(files, tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "yolov8s-worldv2.pt"
    checkpoint = torch.load(files["v2"]["model_save"], weights_only=False)  # our own test file
    checkpoint["model"].payload = WritesMarker(marker)
    checkpoint["train_args"] = WritesMarker(marker)
    torch.save(checkpoint, evil)
    model, loaded = load_detector(evil)  # the weights are read, the payload stays an inert record
    assert loaded["meta"]["yoloworld"]["classes"][0] == ["person"]
    raw = load_inert(evil)
    assert isinstance(raw["train_args"], Record) and raw["train_args"].name == "open"
    assert not marker.exists()
    torch.save({"model": WritesMarker(marker)}, tmp_path / "plain.pt")  # not a model at all: refused
    with pytest.raises(CheckpointError, match="plain.pt: not a YOLO-World checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
    assert not marker.exists()


def test_other_ultralytics_models_are_named_in_one_line(ultralytics, tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    torch.save({"model": DetectionModel("yolov8n.yaml", verbose=False).half(), "ema": None}, tmp_path / "yolov8n.pt")
    with pytest.raises(CheckpointError, match="an Ultralytics DetectionModel, not a YOLO-World model"):
        read_checkpoint(tmp_path / "yolov8n.pt")


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "yoloworld", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_predict_cli_runs_an_ultralytics_file_with_its_class_names(files, image, tmp_path):
    weights = tmp_path / "yolov8s-worldv2.pt"
    weights.write_bytes(files["v2"]["model_save"].read_bytes())
    cv2.imwrite(str(tmp_path / "img.jpg"), image)
    out = run_cli("predict", "img.jpg", "--weights", weights.name, "--imgsz", IMGSZ, "--conf", "0.25", "--no-save",
                  "--json", "dets.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    detections = json.loads((tmp_path / "dets.json").read_text())[0]["detections"]
    assert detections and {d["class_name"] for d in detections} <= set(NAMES)
    assert "detection(s)" in out.stdout


def test_convert_writes_an_official_checkpoint(files, fixtures, image, tmp_path):
    """Every official key (text tower included when a CLIP folder is given), the vocabulary, the same outputs."""
    official = [key for key, _ in json.loads((fixtures / "keys" / "s_v1.json").read_text())]
    batch = torch.from_numpy(image[:, :, ::-1].transpose(2, 0, 1).copy()).float()[None] / 255
    out = tmp_path / "yolov8s-world.pth"
    # the fused file: its folded BatchNorms come back as identity ones, as the official layout has them
    done = run_cli("convert", "ultralytics", files["v1"]["fused"], "--out", out, "--text-model", fixtures / "tiny-clip")
    assert done.returncode == 0, done.stderr
    checkpoint = torch.load(out, weights_only=True)
    assert list(checkpoint) == ["meta", "state_dict", "class_embeddings"]
    keys = set(checkpoint["state_dict"])  # the tiny CLIP has 2 of the 12 text layers
    assert {k for k in keys if not k.startswith(TEXT_PREFIX)} == {k for k in official if not k.startswith(TEXT_PREFIX)}
    assert any(k.startswith(TEXT_PREFIX) for k in keys) and keys <= set(official)
    assert checkpoint["meta"]["yoloworld"]["classes"] == [[n] for n in NAMES]

    converted, _ = load_detector(out, text_model=fixtures / "tiny-clip")
    original, stored = load_detector(files["v1"]["fused"])
    assert torch.equal(checkpoint["class_embeddings"], stored["class_embeddings"])
    text = stored["class_embeddings"][None]
    with torch.no_grad():
        ours, theirs = converted(batch, text), original(batch, text)
    for a, b in zip(ours[0] + ours[1], theirs[0] + theirs[1]):
        assert (a - b).abs().max() <= 1e-5


def test_fused_checkpoint_of_ours_loads_into_a_fused_model(files, image, tmp_path):
    model = YOLOWorld.from_pretrained(files["v2"]["model_save"], imgsz=IMGSZ, fuse=True)
    model.save(tmp_path / "fused.pth")
    state = read_checkpoint(tmp_path / "fused.pth")["state_dict"]
    assert "backbone.image_model.stem.conv.bias" in state and not any(".bn." in k for k in state)
    reloaded = YOLOWorld.from_pretrained(tmp_path / "fused.pth", imgsz=IMGSZ)
    assert reloaded.class_names == NAMES
    assert_same_detections(reloaded.predict(image, conf=0.25)[0], model.predict(image, conf=0.25)[0],
                           box_tol=1e-3, score_tol=1e-5, conf=0.25)


def test_ultralytics_short_names_offline_say_where_the_file_goes(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("YOLOWORLD_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"yolov8s-worldv2\.pt.*put https://github\.com/ultralytics/assets/"
                                              r"releases/download/.*/yolov8s-worldv2\.pt in .*weights"):
        resolve_weights("yolov8s-worldv2")
    cached = tmp_path / "weights" / "yolov8m-world.pt"
    cached.parent.mkdir()
    cached.write_bytes(b"")
    assert resolve_weights("yolov8m-world.pt") == cached  # found in the cache without the network
