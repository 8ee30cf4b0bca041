"""Bad inputs of issue 23 (findings 6-8): each is handled at its root: a one-line error naming the flag or file
(exit 2), a warning naming the line that is skipped, or it simply works. An `internal error` (exit 1), a
traceback or a silent accept fails these tests. Inputs are generated small; CLI cases run in a fresh process."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch
from helpers import run_cli

from yoloworld.errors import ConfigError, InputError

TINY_IMAGE = np.full((64, 64, 3), 120, np.uint8)
BAD_LABEL_LINES = {"NaN coordinate": "0 nan 0.5 0.2 0.2", "infinite coordinate": "0 0.5 inf 0.2 0.2",
                   "coordinate 1e400": "0 1e400 0.5 0.2 0.2", "NaN class": "nan 0.5 0.5 0.2 0.2"}


def assert_one_line_error(result, *words) -> str:
    """Exit 2, one `error:` line (after any warnings) naming every word, no traceback or internal error."""
    err = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, err[-2000:])
    assert "Traceback" not in err and "internal error" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and all(word in last for word in words), (words, last)
    return last


def assert_works_with_warning(result, *words) -> str:
    """Exit 0; every word appears in a `warning:` line."""
    out = result.stdout + result.stderr
    assert result.returncode == 0, (result.returncode, out[-2000:])
    assert "Traceback" not in out and "internal error" not in out, out
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert any(all(word in line for word in words) for line in warnings), (words, out[-2000:])
    return out


# ---------------------------------------------------------------- generated inputs, one set per module

def yolo_set(root, label_text: str, yaml_text: str = "path: .\ntrain: images/train\nnames: [cat, dog]\n"):
    (root / "images/train").mkdir(parents=True)
    (root / "labels/train").mkdir(parents=True)
    cv2.imwrite(str(root / "images/train/a.jpg"), TINY_IMAGE)
    (root / "labels/train/a.txt").write_text(label_text)
    (root / "data.yaml").write_text(yaml_text)
    return root


def coco_file(root, name: str, image: dict | None = None, annotation: dict | None = None,
              category: dict | None = None, text: str | None = None):
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64, **(image or {})}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100,
                             "iscrowd": 0, **(annotation or {})}],
            "categories": [{"id": 1, "name": "cat", **(category or {})}]}
    path = root / f"{name}.json"
    path.write_text(text if text is not None else json.dumps(data))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, fixtures):
    root = tmp_path_factory.mktemp("bad")
    coco = root / "coco"
    coco.mkdir()
    cv2.imwrite(str(coco / "a.jpg"), TINY_IMAGE)
    made = {"root": root, "coco": coco, "ok": coco_file(coco, "ok"),
            "model": ["--weights", fixtures / "v2_n.pth", "--text-model", fixtures / "tiny-clip"]}
    big = 10 ** 30
    made["coco_cases"] = {
        "image id beyond 64 bits": coco_file(coco, "big_id", {"id": big}, {"image_id": big}),
        "category id a list": coco_file(coco, "cat_list", category={"id": [1]}, annotation={"category_id": [1]}),
        "LVIS synonyms a string": coco_file(coco, "syn_str", category={"synonyms": "cat", "frequency": "f"}),
        "LVIS synonyms numbers": coco_file(coco, "syn_num", category={"synonyms": [1, 2], "frequency": "f"}),
    }
    images = [{"id": i, "file_name": "a.jpg", "width": width, "height": 64}
              for i, width in enumerate([big, "WIDE", 64, 64], start=1)]
    annotations = [{"id": 9, "image_id": 3, "category_id": [1], "bbox": [1, 1, 10, 10]},
                   {"id": 8, "image_id": 4, "category_id": 1, "bbox": [1, 1, "HUGE", 10]}]
    text = json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cat"}]})
    made["coco_warnings"] = coco_file(coco, "warnings", text=text.replace('"WIDE"', "1e400")
                                      .replace('"HUGE"', "1" + "0" * 400))
    made["bad_lines"] = yolo_set(root / "lines", "".join(f"{line}\n" for line in BAD_LABEL_LINES.values())
                                 + "0 0.5 0.5 0.2 0.2\n")
    made["mixed_names"] = yolo_set(root / "mixed", "0 .5 .5 .2 .2\n",
                                   "path: .\ntrain: images/train\nnames: {0: cat, '1': dog}\n")
    made["path_list"] = yolo_set(root / "pathlist", "0 .5 .5 .2 .2\n", "path: [1, 2]\ntrain: images/train\nnames: [a]\n")
    made["binary_list"] = yolo_set(root / "binlist", "0 .5 .5 .2 .2\n", "path: .\ntrain: train.txt\nnames: [a]\n")
    (made["binary_list"] / "train.txt").write_bytes(b"images/train/a.jpg\n\xff\xfe\x00bad\n")
    made["good_yolo"] = yolo_set(root / "good", "0 0.5 0.5 0.2 0.2\n")
    (root / "afile").write_text("not a folder")
    return made


# ---------------------------------------------------------------- finding 6: images, reg_max, classes, EXIF

@pytest.mark.parametrize("shape", [(4000, 3), (3, 4000), (20, 20000), (20000, 20), (1, 100000)])
@pytest.mark.parametrize("size", [320, 640])
def test_thin_images_letterbox_with_a_one_pixel_side(shape, size):
    from yoloworld.transforms import boxes_to_original, letterbox

    image = np.full((*shape, 3), 90, np.uint8)
    boxed, info = letterbox(image, size)
    assert boxed.shape == (size, size, 3)
    top, bottom, left, right = info.pad_tblr
    content = torch.tensor([[left, top, size - right, size - bottom]], dtype=torch.float32)
    back = boxes_to_original(content, info, clip=False)[0].tolist()  # the content maps back onto the whole image
    assert np.allclose(back, [0, 0, shape[1], shape[0]], rtol=1e-3, atol=1e-3), back


def test_predict_and_data_check_take_thin_and_wide_images(inputs, tmp_path):
    folder = tmp_path / "strips"
    folder.mkdir()
    for name, shape in {"thin": (4000, 3), "wide": (20, 20000), "tall": (20000, 20)}.items():
        cv2.imwrite(str(folder / f"{name}.png"), np.full((*shape, 3), 100, np.uint8))
    result = run_cli("predict", folder, *inputs["model"], "--classes", "a", "--imgsz", "320", "--json",
                     tmp_path / "d.json", "--no-save")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(json.loads((tmp_path / "d.json").read_text())) == 3
    coco = {"images": [{"id": 1, "file_name": "thin.png", "width": 3, "height": 4000}], "annotations": [],
            "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "thin.json").write_text(json.dumps(coco))
    result = run_cli("data", "check", "--ann", tmp_path / "thin.json", "--images", folder, "--grid",
                     tmp_path / "grid.png", "--samples", "2", "--no-mosaic", "--image-size", "320")
    assert result.returncode == 0 and (tmp_path / "grid.png").is_file(), result.stderr[-2000:]


def test_reg_max_of_the_config_reaches_prediction_the_loss_and_the_export_graph():
    from yoloworld.api import YOLOWorld
    from yoloworld.config import ModelConfig
    from yoloworld.engine.loss import YOLOWorldLoss
    from yoloworld.engine.modes import random_text_encoder
    from yoloworld.engine.train_config import RandomTextConfig
    from yoloworld.export.graphs import DetectorGraph
    from yoloworld.models.boxes import dfl_integral
    from yoloworld.models.detector import YOLOWorldDetector

    logits = torch.zeros(1, 4 * 8, 2, 2)
    logits[:, 7::8] = 100.0  # 8 bins per side, all mass on the last: 7 strides (16 bins would mean 15)
    assert torch.allclose(dfl_integral(logits), torch.full((1, 4, 2, 2), 7.0))
    torch.manual_seed(0)
    encoder = random_text_encoder(RandomTextConfig(hidden=32, layers=1, heads=2))
    model = YOLOWorldDetector(ModelConfig(deepen=0.33, widen=0.125, min_cls_channels=16, text_hidden=32,
                                          reg_max=8), encoder)
    api = YOLOWorld(model, imgsz=64).set_classes(["a", "b"])
    result = api.predict(np.full((64, 64, 3), 100, np.uint8), conf=0.0)[0]
    assert len(result) > 0 and np.isfinite(result.xyxy).all()
    images, text = torch.rand(1, 3, 64, 64), torch.as_tensor(api.text_embeds).float()
    with torch.no_grad():
        scores, boxes = DetectorGraph(model.float().eval())(images, text)
    assert scores.shape == (1, 84, 3) and torch.isfinite(boxes).all()
    model.train()
    cls_logits, reg_logits = model(images, text[None])
    assert reg_logits[0].shape[1] == 4 * 8
    losses = YOLOWorldLoss()(cls_logits, reg_logits, torch.tensor([[0, 1, 8.0, 8.0, 40.0, 48.0]]))
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_dfl"] > 0


def test_a_trailing_blank_class_is_the_padding_prompt_never_a_reported_class():
    from yoloworld.vocabulary import Vocabulary

    padded = Vocabulary.build(["person", " "])
    assert padded.names == ["person"] and padded.padded and padded.texts == ["person", " "]
    as_given = Vocabulary.build(["person", " "], padding=False)  # the official evaluation's texts, kept as given
    assert as_given.names == ["person", " "] and not as_given.padded


@pytest.mark.parametrize("classes", [[" ", "person"], [""], [" "], ["person", ["car", "  "]], "person, ,car"])
def test_a_blank_class_is_refused(classes):
    from yoloworld.vocabulary import Vocabulary

    if isinstance(classes, str):  # blanks between separators in the string syntax are skipped, as on the CLI
        assert Vocabulary.build(classes).names == ["person", "car"]
        return
    with pytest.raises(InputError, match="blank") as error:
        Vocabulary.build(classes)
    assert "\n" not in str(error.value)


def test_pil_images_are_rotated_by_their_exif_orientation_like_files(tmp_path):
    from PIL import Image

    from yoloworld.images import as_bgr

    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :20] = 255
    photo = Image.fromarray(pixels)
    exif = photo.getexif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90 degrees clockwise
    photo.save(tmp_path / "rotated.png", exif=exif)
    from_path = as_bgr(tmp_path / "rotated.png")
    from_pil = as_bgr(Image.open(tmp_path / "rotated.png"))
    assert from_path.shape == (80, 40, 3)
    assert np.array_equal(from_pil, from_path)


# ---------------------------------------------------------------- finding 7: recipes and image-prompt settings

RECIPE_CASES = {
    "keep.l2sp negative": (["keep.l2sp=-1"], "keep.l2sp"),
    "keep.distill negative": (["keep.distill=-0.5"], "keep.distill"),
    "keep.mix_ratio without keep.mix": (["keep.mix_ratio=0.3"], "keep.mix_ratio"),
    "freeze_detector on a random detector": (["model.mode=normal", "model.weights=null", "model.segment=true",
                                              "model.freeze_detector=true"], "model.freeze_detector"),
    "crop patch 0": (["model.random_vision.patch=0"], "model.random_vision.patch"),
    "patch larger than the crop": (["model.random_vision.patch=100"], "model.random_vision.patch"),
    "vision image size 0": (["model.random_vision.image_size=0"], "model.random_vision.image_size"),
    "vision width not a multiple of the heads": (["model.random_vision.heads=3"], "model.random_vision.heads"),
}


@pytest.mark.parametrize("case", RECIPE_CASES)
def test_recipe_values_that_would_crash_or_do_nothing_are_errors_naming_the_recipe(case):
    from yoloworld.engine.train_config import build_train_config

    overrides, key = RECIPE_CASES[case]
    with pytest.raises(ConfigError) as error:
        build_train_config("image_prompt_synth", overrides)
    message = str(error.value)
    assert "image_prompt_synth.yaml" in message and key in message and "\n" not in message, message


def test_a_saved_run_config_still_builds(tmp_path):
    """`train --resume` and `wise-ft` rebuild a run's full config.yaml (every key present, defaults included)."""
    from yoloworld.engine.train_config import build_train_config, config_to_dict

    saved = config_to_dict(build_train_config("image_prompt_synth"))
    assert build_train_config(None, ["keep.wise_min_target=0.9"], saved).keep.wise_min_target == 0.9


def test_recipe_errors_on_the_command_line_name_the_recipe_file(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("base: synth_demo\nkeep: {l2sp: -1}\n")
    assert_one_line_error(run_cli("train", recipe), str(recipe), "keep.l2sp")
    assert_one_line_error(run_cli("train", "image_prompt_synth", "model.random_vision.patch=0"),
                          "image_prompt_synth.yaml", "model.random_vision.patch")


def test_image_prompt_training_without_a_box_large_enough_is_an_error(tmp_path):
    from yoloworld.data.synth import SynthConfig, synthesize

    synthesize(tmp_path / "synth", SynthConfig(images=4, min_side=96, max_side=128, max_objects=2))
    coco = tmp_path / "synth" / "coco"
    result = run_cli("train", "image_prompt_synth", f"data.train.0.ann={coco / 'annotations.json'}",
                     f"data.train.0.images={coco / 'images'}", f"data.train.0.classes_file={coco / 'class_texts.json'}",
                     "data.val=[]", "data.workers=0", "model.image_prompt_min_side=2000", "schedule.epochs=1",
                     f"out={tmp_path / 'run'}")
    assert_one_line_error(result, "model.image_prompt_min_side")
    assert not (tmp_path / "run" / "last.pth").exists()


@pytest.fixture(scope="module")
def baked_onnx(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "fixed.onnx"
    result = run_cli("export", *inputs["model"], "--classes", "a,b", "--imgsz", "256", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_imgsz_for_a_fixed_size_export_warns_that_the_exports_size_is_used(inputs, baked_onnx, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), TINY_IMAGE)
    result = run_cli("predict", tmp_path / "a.png", "--weights", baked_onnx, "--imgsz", "640", "--no-save")
    assert_works_with_warning(result, "fixed.onnx", "--imgsz", "640", "256")


def test_messages_name_the_flag_and_file(inputs, baked_onnx, tmp_path, fixtures):
    reference = tmp_path / "ref.png"
    cv2.imwrite(str(reference), TINY_IMAGE)
    result = run_cli("predict", reference, "--weights", baked_onnx, "--visual-prompt", f"mug={reference}", "--no-save")
    assert_one_line_error(result, "fixed.onnx", "--visual-prompt")
    videos = tmp_path / "videos"
    videos.mkdir()
    writer = cv2.VideoWriter(str(videos / "a.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for value in (0, 80, 160):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()
    result = run_cli("label", videos, "--out", tmp_path / "labelled", *inputs["model"], "--classes", "a")
    assert_one_line_error(result, str(videos), "video")
    result = run_cli("embed", "--images", f"mug={reference}", "--weights", fixtures / "v2_n.pth", "--out",
                     tmp_path / "e.npy")
    assert_one_line_error(result, "v2_n.pth", "--text-model")


# ---------------------------------------------------------------- finding 8: datasets, predictions, outputs, notes

COCO_ERRORS = {"image id beyond 64 bits": "64 bits", "category id a list": "categories[0]",
               "LVIS synonyms a string": "synonyms", "LVIS synonyms numbers": "synonyms"}


@pytest.mark.parametrize("case", COCO_ERRORS)
def test_bad_values_in_coco_files_are_one_line(inputs, case):
    path = inputs["coco_cases"][case]
    result = run_cli("data", "check", "--ann", path, "--images", inputs["coco"], "--no-grid")
    assert_one_line_error(result, path.name, COCO_ERRORS[case])


def test_bad_sizes_boxes_and_category_ids_in_coco_files_are_warnings(inputs):
    result = run_cli("data", "check", "--ann", inputs["coco_warnings"], "--images", inputs["coco"], "--no-grid")
    for words in (("images[0]", "has width 1000000"), ("images[1]", "width inf"),
                  ("annotation 9", "category id [1]"), ("annotation 8", "bbox")):
        assert_works_with_warning(result, "warnings.json", *words)


@pytest.mark.parametrize("case", ["id", "box", "annotation id"])
def test_huge_numbers_in_val_inputs_are_one_line(inputs, tmp_path, case):
    big = 10 ** 30
    prediction = {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}
    prediction.update({"id": {"image_id": big}, "box": {"bbox": [1, 1, 10 ** 400, 5]}, "annotation id": {}}[case])
    predictions = tmp_path / "p.json"
    predictions.write_text(json.dumps([prediction]))
    ann = inputs["coco_cases"]["image id beyond 64 bits"] if case == "annotation id" else inputs["ok"]
    result = run_cli("val", "--predictions", predictions, "--ann", ann)
    assert_one_line_error(result, ann.name if case == "annotation id" else "p.json",
                          "bbox" if case == "box" else "64 bits")


def test_non_finite_yolo_labels_are_skipped_with_a_warning(inputs, tmp_path):
    root = inputs["bad_lines"]
    check = run_cli("data", "check", root, "--no-grid")
    convert = run_cli("convert", "yolo2coco", root, "--out", tmp_path / "c.json")
    for result in (check, convert):
        for number in range(1, len(BAD_LABEL_LINES) + 1):
            assert_works_with_warning(result, f"a.txt:{number}:", "not a finite number")
    text = (tmp_path / "c.json").read_text()
    assert "NaN" not in text and "Infinity" not in text and len(json.loads(text)["annotations"]) == 1


@pytest.mark.parametrize("case,words", [("mixed_names", ("data.yaml", "'names' keys")),
                                        ("path_list", ("data.yaml", "'path'")),
                                        ("binary_list", ("train.txt", "UTF-8"))])
def test_bad_yolo_data_yaml(inputs, case, words):
    assert_one_line_error(run_cli("data", "check", inputs[case], "--no-grid"), *words)


def test_convert_refuses_an_output_it_cannot_write_before_any_work(inputs, tmp_path):
    afile = inputs["root"] / "afile"
    result = run_cli("convert", "yolo2coco", inputs["good_yolo"], "--out", afile / "sub" / "x.json")
    assert_one_line_error(result, "--out", "afile")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        assert_one_line_error(run_cli("convert", "yolo2coco", inputs["good_yolo"], "--out", locked / "x.json"),
                              "--out", "permission")


NOTES = [[1, 2], {"classes": [[], []]}, {"classes": [1, 2]}, {"classes": "ab"},
         {"classes": [["a"], ["b"]], "padded": "yes"}]


@pytest.mark.parametrize("note", NOTES)
def test_malformed_embedding_notes_are_one_line(tmp_path, note):
    from yoloworld.models.prompt import read_embeddings

    np.save(tmp_path / "e.npy", np.random.default_rng(0).normal(size=(2, 512)).astype(np.float32))
    (tmp_path / "e.json").write_text(json.dumps(note))
    with pytest.raises(InputError, match="e.json: ") as error:
        read_embeddings(tmp_path / "e.npy")
    assert "\n" not in str(error.value)


def test_reparam_with_a_malformed_embedding_note_is_one_line(fixtures, tmp_path):
    np.save(tmp_path / "e.npy", np.random.default_rng(0).normal(size=(2, 512)).astype(np.float32))
    (tmp_path / "e.json").write_text(json.dumps({"classes": [1, 2]}))
    result = run_cli("reparam", "--weights", fixtures / "v2_n.pth", "--embeddings", tmp_path / "e.npy", "--out",
                     tmp_path / "r.pth")
    assert_one_line_error(result, "e.json", "'classes'")
    assert not (tmp_path / "r.pth").exists()


def test_class_text_files_in_the_cli_syntax(tmp_path):
    from yoloworld.vocabulary import load_class_file

    one_line = tmp_path / "one.txt"
    one_line.write_text("person,car|automobile\n")
    assert load_class_file(one_line) == [["person"], ["car", "automobile"]]  # read as --classes reads it
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("person\ncar,automobile\n")
    with pytest.raises(InputError, match="mixed.txt: line 2"):
        load_class_file(mixed)


def test_messages_of_empty_classes_and_data_synth_name_the_flag(inputs, tmp_path):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), TINY_IMAGE)
    assert_one_line_error(run_cli("predict", image, *inputs["model"], "--classes", " , | ", "--no-save"),
                          "--classes")
    for flag, value in (("--val-fraction", "1.5"), ("--max-objects", "0")):
        result = run_cli("data", "synth", "--out", tmp_path / "synth", "--images", "2", flag, value)
        assert_one_line_error(result, flag, value)
