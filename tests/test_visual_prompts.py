"""Image (visual) prompts: the encoder (official keys, projector math by hand), vocabularies mixing texts and
reference images (API and CLI), `embed --images` into reparam and the dynamic ONNX graph, bad references.
Models: fixtures/official/v2_n.pth with tiny-clip, and a tiny random CLIP vision tower built here."""

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_same_detections

from yoloworld.api import YOLOWorld
from yoloworld.cli import main
from yoloworld.errors import InputError
from yoloworld.models.checkpoint import load_detector, save_checkpoint
from yoloworld.models.image_prompt import ImagePromptEncoder, crop_resized, sample_class_boxes
from yoloworld.prompts import Embedding, VisualPrompt, parse_visual_prompts
from yoloworld.vocabulary import Vocabulary, load_class_file

CONF = 0.9  # random weights: scores crowd near 1; a high threshold keeps comparisons away from the max_det cut


def tiny_vision_config(projection_dim: int = 512, hidden: int = 32, heads: int = 2):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                            num_attention_heads=heads, image_size=32, patch_size=8, projection_dim=projection_dim)


def save_tower(folder, projection_dim: int = 512, seed: int = 0):
    from transformers import CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    CLIPVisionModelWithProjection(tiny_vision_config(projection_dim)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tower(tmp_path_factory):
    return save_tower(tmp_path_factory.mktemp("tower") / "clip-vision")


@pytest.fixture(scope="module")
def api(fixtures, tower):
    return YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip", vision_model=tower)


@pytest.fixture(scope="module")
def image(fixtures):
    return np.load(fixtures / "inputs.npz")["image_raw"][:, :, ::-1].copy()


@pytest.fixture(scope="module")
def refs(image, tmp_path_factory):
    """ref.jpg (the fixture image) and refs/{cup,bowl}/ folders of crops."""
    folder = tmp_path_factory.mktemp("refs")
    cv2.imwrite(str(folder / "ref.png"), image)
    for name, crops in {"cup": [image[:100, :120], image[100:220, 300:400]], "bowl": [image[200:, 400:]]}.items():
        (folder / "classes" / name).mkdir(parents=True)
        for i, crop in enumerate(crops):
            cv2.imwrite(str(folder / "classes" / name / f"{i}.png"), crop)
    return folder


def assert_identical(ours, reference):
    assert len(reference) and ours.names == reference.names
    for field in ("xyxy", "scores", "class_ids"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(reference, field))


# ---------------------------------------------------------------- the encoder

def test_encoder_keys_are_the_official_names(fixtures):
    from yoloworld.config import ModelConfig
    from yoloworld.models.detector import YOLOWorldDetector

    encoder = ImagePromptEncoder.from_config(tiny_vision_config())
    state = YOLOWorldDetector(ModelConfig.preset("n"), None, encoder).state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items() if k.startswith("image_prompt_encoder.")}
    assert shapes["image_prompt_encoder.projector.0.weight"] == (1024, 512)
    assert shapes["image_prompt_encoder.projector.2.weight"] == (512, 1024)
    assert shapes["image_prompt_encoder.img_mean"] == shapes["image_prompt_encoder.img_std"] == (1, 3, 1, 1)
    assert "image_prompt_encoder.image_encoder.visual_projection.weight" in shapes
    assert "image_prompt_encoder.image_encoder.vision_model.embeddings.patch_embedding.weight" in shapes
    assert set(k.split(".")[1] for k in shapes) == {"image_encoder", "projector", "img_mean", "img_std"}
    assert not any(p.requires_grad for p in encoder.image_encoder.parameters())  # frozen, as official


def test_projector_is_the_residual_training_form_computed_by_hand():
    torch.manual_seed(0)
    encoder = ImagePromptEncoder.from_config(tiny_vision_config()).eval()
    crops = torch.rand(3, 3, 32, 32)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    raw = encoder.image_encoder(pixel_values=(crops - mean) / std).image_embeds
    e = raw / raw.norm(dim=-1, keepdim=True)
    w1, b1 = encoder.projector[0].weight, encoder.projector[0].bias
    w2, b2 = encoder.projector[2].weight, encoder.projector[2].bias
    hidden = e @ w1.T + b1
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / 2 ** 0.5))  # exact GELU, nn.GELU's default
    out = e @ torch.eye(512) + hidden @ w2.T + b2
    expected = out / out.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(encoder(crops), expected, atol=1e-5, rtol=0)
    # several references: raw embeddings averaged and renormalised, then the projector
    average = e.mean(0) / e.mean(0).norm()
    hidden = average @ w1.T + b1
    out = average + 0.5 * hidden * (1 + torch.erf(hidden / 2 ** 0.5)) @ w2.T + b2
    torch.testing.assert_close(encoder.class_embedding(crops), out / out.norm(), atol=1e-5, rtol=0)
    encoder.projector = None  # none released: the raw CLIP embedding is the class
    torch.testing.assert_close(encoder(crops), e, atol=1e-6, rtol=0)


def test_training_replaces_only_the_sampled_classes_and_renormalises():
    torch.manual_seed(0)
    encoder = ImagePromptEncoder.from_config(tiny_vision_config())
    images = torch.rand(2, 3, 128, 128)
    # image 0: class 1 twice (one box too small), class 3 once; image 1: only a box under 64 x 64
    rows = torch.tensor([[0, 1, 0, 0, 70, 70], [0, 1, 0, 0, 20, 20], [0, 3, 10, 10, 110, 90], [1, 0, 0, 0, 30, 30.]])
    picks = sample_class_boxes(rows, 2)
    assert picks[0][0].tolist() in ([1, 3], [3, 1]) and picks[1][0].numel() == 0
    assert picks[0][1][picks[0][0] == 1].tolist() == [[0, 0, 70, 70]]
    text = F.normalize(torch.randn(2, 5, 512), dim=-1)
    out = encoder.replace_classes(images, text, picks)
    kept = [(0, 0), (0, 2), (0, 4), *[(1, c) for c in range(5)]]
    for i, c in kept:
        torch.testing.assert_close(out[i, c], text[i, c])
    for c in (1, 3):
        assert not torch.allclose(out[0, c], text[0, c])
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 5))
    out.sum().backward()  # the projector trains, the tower does not
    assert encoder.projector[0].weight.grad is not None
    assert all(p.grad is None for p in encoder.image_encoder.parameters())


def test_crop_is_clipped_to_the_image_and_resized_bilinearly():
    image = torch.arange(2 * 4 * 4, dtype=torch.float32).view(2, 4, 4)[:1].expand(3, 4, 4)
    crop = crop_resized(image, (-5.0, 1.2, 2.0, 9.0), 6)
    expected = F.interpolate(image[None, :, 1:4, 0:2], size=(6, 6), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(crop, expected)


def test_checkpoint_round_trip_keeps_tower_and_projector(fixtures, tmp_path):
    model, _ = load_detector(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip")
    torch.manual_seed(1)
    model.image_prompt_encoder = ImagePromptEncoder.from_config(tiny_vision_config(hidden=64, heads=1))
    path = tmp_path / "with_prompts.pth"
    save_checkpoint(path, model)
    loaded, _ = load_detector(path)
    crops = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded.image_prompt_encoder(crops), model.image_prompt_encoder(crops))
    # an official-style file (no metadata): the tower's config is read off its tensor shapes
    data = torch.load(path, weights_only=True)
    data["meta"] = {}
    torch.save(data, tmp_path / "official_style.pth")
    official, _ = load_detector(tmp_path / "official_style.pth", text_model=fixtures / "tiny-clip")
    torch.testing.assert_close(official.image_prompt_encoder(crops), model.image_prompt_encoder(crops))
    # folding a vocabulary in leaves nothing to prompt: the encoder is dropped with the text tower
    from yoloworld.models.reparam import reparameterize_checkpoint

    folded = reparameterize_checkpoint(path, tmp_path / "rep.pth", F.normalize(torch.randn(3, 512), dim=-1))
    assert folded.image_prompt_encoder is None


# ---------------------------------------------------------------- vocabularies

def test_text_only_vocabulary_gives_the_same_detections_as_before(fixtures, api, image):
    plain = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip")
    classes = ["person", ["a red car", "automobile"], "dog"]
    ours = api.set_classes(classes)
    assert torch.equal(ours.text_embeds, plain.encode_text(Vocabulary.build(classes).texts))
    assert_identical(ours.predict(image, conf=CONF)[0], plain.set_classes(classes).predict(image, conf=CONF)[0])


def test_mixed_vocabulary_encodes_each_prompt_by_its_kind(api, image):
    prompt = VisualPrompt(image, box=(10, 20, 200, 220), name="my mug")
    api.set_classes(["person", prompt, ["dog", VisualPrompt(image)]])
    assert api.vocabulary.names == ["person", "my mug", "dog"]
    encoder = api.image_prompt_encoder()
    rgb = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
    crop = crop_resized(rgb, (10, 20, 200, 220), 32)[None]
    expected = torch.cat([api.encode_text(["person"]), encoder(crop), api.encode_text(["dog"]),
                          encoder(crop_resized(rgb, (0, 0, 640, 427), 32)[None]), api.encode_text([" "])])
    torch.testing.assert_close(api.text_embeds, expected, atol=1e-6, rtol=0)
    result = api.predict(image, conf=CONF)[0]
    assert len(result) and set(result.class_ids.tolist()) <= {0, 1, 2}


def test_several_references_are_averaged_and_an_embedding_row_gives_the_same_detections(api, image):
    references = [(image, (0, 0, 120, 100)), (image, (300, 100, 400, 220))]
    averaged = api.set_classes(["person", VisualPrompt(references, name="cup")])
    vector = averaged.text_embeds[1].numpy().copy()
    crops = torch.stack([crop_resized(torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1) / 255., b, 32)
                         for _, b in references])
    torch.testing.assert_close(averaged.text_embeds[1], api.image_prompt_encoder().class_embedding(crops))
    first = averaged.predict(image, conf=CONF)[0]
    second = api.set_classes(["person", Embedding(vector, "cup")]).predict(image, conf=CONF)[0]
    assert_identical(second, first)


def test_per_image_vocabularies_mix_texts_and_references(api, image):
    small = image[:200, :300].copy()
    vocab_a, vocab_b = ["person", VisualPrompt(image, box=(0, 0, 100, 100), name="x")], ["dog"]
    both = api.predict([image, small], conf=CONF, per_image_classes=[vocab_a, vocab_b])
    assert_same_detections(both[0], api.set_classes(vocab_a).predict(image, conf=CONF)[0])
    assert both[0].names == ["person", "x"] and both[1].names == ["dog"]


def test_saved_model_keeps_a_visual_vocabulary(api, image, tmp_path):
    api.set_classes(["person", VisualPrompt(image, box=(0, 0, 100, 100), name="thing")])
    api.save(tmp_path / "visual.pth")
    loaded = YOLOWorld.from_pretrained(tmp_path / "visual.pth")
    assert loaded.class_names == ["person", "thing"]
    assert_same_detections(loaded.predict(image, conf=CONF)[0], api.predict(image, conf=CONF)[0])


def test_cli_specs_name_boxes_folders_and_class_folders(refs):
    prompts = parse_visual_prompts([f"mug={refs / 'ref.png'}:1,2,30.5,40", str(refs / "classes"),
                                    f"cup={refs / 'ref.png'}"])
    assert [p.name for p in prompts] == ["mug", "bowl", "cup"]
    assert prompts[0].references == ((str(refs / "ref.png"), (1.0, 2.0, 30.5, 40.0)),)
    assert [r[0] for r in prompts[2].references] == [str(refs / "classes" / "cup"), str(refs / "ref.png")]


@pytest.mark.parametrize("spec, message", [
    ("mug={ref}:10,10,1000,100", "lies outside the 640x427 image"),
    ("mug={ref}:10,10,10.5,100", "empty crop"),
    ("mug={dir}/missing.jpg", "no such file or folder"),
    ("mug={dir}/broken.jpg", "not a readable image"),
    ("mug={dir}/empty", "holds no images"),
    ("{ref}", "not a folder of class folders"),
])
def test_bad_references_are_one_line_errors(fixtures, tower, refs, capsys, spec, message):
    (refs / "broken.jpg").write_bytes(b"not an image")
    (refs / "empty").mkdir(exist_ok=True)
    spec = spec.format(ref=refs / "ref.png", dir=refs)
    code = main(["predict", str(refs / "ref.png"), "--weights", str(fixtures / "v2_n.pth"), "--text-model",
                 str(fixtures / "tiny-clip"), "--vision-model", str(tower), "--visual-prompt", spec, "--no-save"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err, err


def test_a_tower_of_another_embedding_size_is_a_one_line_error(fixtures, refs, tmp_path, capsys):
    other = save_tower(tmp_path / "clip-256", projection_dim=256)
    capsys.readouterr()  # transformers' save progress bar
    code = main(["predict", str(refs / "ref.png"), "--weights", str(fixtures / "v2_n.pth"), "--text-model",
                 str(fixtures / "tiny-clip"), "--vision-model", str(other), "--visual-prompt",
                 f"mug={refs / 'ref.png'}", "--no-save"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "embeds into 256 dimensions" in err and "512" in err and "\n" not in err, err
    with pytest.raises(InputError, match="not four numbers"):
        VisualPrompt(refs / "ref.png", box=(1, 2, 3))
    api = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip")
    with pytest.raises(InputError, match="'x': its embedding has 256 dimensions, the model's classes 512"):
        api.set_classes(["person", Embedding(np.ones(256), "x")])


def test_cli_predict_mixes_classes_and_visual_prompts(fixtures, tower, refs, tmp_path):
    out = tmp_path / "dets.json"
    code = main(["predict", str(refs / "ref.png"), "--weights", str(fixtures / "v2_n.pth"), "--text-model",
                 str(fixtures / "tiny-clip"), "--vision-model", str(tower), "--classes", "person,dog",
                 "--visual-prompt", f"mug={refs / 'ref.png'}:10,20,200,220", "--visual-prompt", str(refs / "classes"),
                 "--conf", str(CONF), "--json", str(out), "--no-save"])
    assert code == 0
    names = {d["class_name"] for d in json.loads(out.read_text())[0]["detections"]}
    assert names and names <= {"person", "dog", "mug", "bowl", "cup"}


# ---------------------------------------------------------------- embeddings files: reparam and ONNX

@pytest.fixture(scope="module")
def image_embeddings(fixtures, tower, refs, tmp_path_factory):
    out = tmp_path_factory.mktemp("embed") / "refs.npy"
    code = main(["embed", "--images", f"mug={refs / 'ref.png'}:10,20,200,220", "--images", str(refs / "classes"),
                 "--weights",
                 str(fixtures / "v2_n.pth"), "--text-model", str(fixtures / "tiny-clip"), "--vision-model",
                 str(tower), "--padding", "--out", str(out)])
    assert code == 0
    return out


def test_embed_images_writes_the_rows_predict_uses(api, refs, image_embeddings):
    array = np.load(image_embeddings)
    note = json.loads(image_embeddings.with_suffix(".json").read_text())
    assert array.shape == (4, 512) and note["classes"] == [["mug"], ["bowl"], ["cup"]] and note["padded"]
    assert "raw CLIP" in note["vision_model"]
    api.set_classes(parse_visual_prompts([f"mug={refs / 'ref.png'}:10,20,200,220", str(refs / "classes")]))
    np.testing.assert_allclose(array, api.text_embeds.numpy(), atol=1e-6)


def test_embeddings_file_as_classes_then_reparam_predicts_like_the_references(fixtures, api, refs, image,
                                                                             image_embeddings, tmp_path):
    reference = api.set_classes(parse_visual_prompts([f"mug={refs / 'ref.png'}:10,20,200,220",
                                                      str(refs / "classes")])).predict(image, conf=CONF)[0]
    from_file = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip").set_classes(
        load_class_file(image_embeddings))
    assert from_file.vocabulary.padded and from_file.class_names == ["mug", "bowl", "cup"]
    assert_same_detections(from_file.predict(image, conf=CONF)[0], reference)
    rep = tmp_path / "rep.pth"
    assert main(["reparam", "--weights", str(fixtures / "v2_n.pth"), "--embeddings", str(image_embeddings),
                 "--out", str(rep)]) == 0
    assert_same_detections(YOLOWorld.from_pretrained(rep).predict(image, conf=CONF)[0], reference)


def test_prompt_detector_starts_from_image_prompt_embeddings(fixtures, api, refs, image_embeddings):
    from helpers import close

    from yoloworld.models.prompt import build_prompt_detector, read_embeddings

    embeds, _ = read_embeddings(image_embeddings, dims=512)
    prompt_model, _ = build_prompt_detector(fixtures / "v2_n.pth", embeddings=embeds)
    api.set_classes(parse_visual_prompts([f"mug={refs / 'ref.png'}:10,20,200,220", str(refs / "classes")]))
    images = torch.from_numpy(np.load(fixtures / "inputs.npz")["image_input"])
    with torch.no_grad():
        ours = prompt_model(images.contiguous(memory_format=torch.channels_last))[0]
    reference = api.forward_raw(images, api.text_embeds[None])[0]
    for level in range(3):
        close(ours[level], reference[level])


def test_dynamic_onnx_graph_takes_image_prompt_embeddings(fixtures, api, refs, image, image_embeddings, tmp_path):
    pytest.importorskip("onnxruntime")
    from yoloworld.export.onnx_export import export_onnx, plan_export
    from yoloworld.export.onnx_runtime import OnnxYOLOWorld

    path = tmp_path / "dynamic.onnx"
    export_onnx(plan_export(api, None, vocabulary="dynamic"), path)
    reference = api.set_classes(parse_visual_prompts([f"mug={refs / 'ref.png'}:10,20,200,220",
                                                      str(refs / "classes")])).predict(image, conf=CONF)[0]
    out = tmp_path / "dets.json"
    # no PyTorch model and no vision tower at detection time: the graph takes the rows of the .npy
    assert main(["predict", str(refs / "ref.png"), "--weights", str(path), "--classes-file", str(image_embeddings),
                 "--conf", str(CONF), "--json", str(out), "--no-save"]) == 0
    onnx = OnnxYOLOWorld(path)
    ours = onnx.set_classes(load_class_file(image_embeddings))
    # ONNX Runtime vs PyTorch kernels: 5e-3 px apart on boxes of 400 px here, scores within 1e-5
    assert_same_detections(ours.predict(image, conf=CONF)[0], reference, box_tol=1e-2, score_tol=1e-4, conf=CONF)
    assert len(json.loads(out.read_text())[0]["detections"]) == len(reference)
    with pytest.raises(InputError, match="yoloworld embed"):
        onnx.set_classes([VisualPrompt(image, name="mug")])
