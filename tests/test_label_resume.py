"""`yoloworld label` resume files: a damaged ledger line is skipped with one warning naming the file and line (its
image is labelled again), a damaged settings file is one clear error; image prompts and embeddings resume too."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from yoloworld.api import YOLOWorld
from yoloworld.autolabel import LabelSettings, label_images
from yoloworld.autolabel.labeler import describe_classes
from yoloworld.autolabel.ledger import LEDGER_NAME, SETTINGS_NAME
from yoloworld.data.synth import SynthConfig, synthesize
from yoloworld.errors import InputError
from yoloworld.models.prompt import write_embeddings
from yoloworld.prompts import Embedding, VisualPrompt

DEMO = Path(__file__).resolve().parents[1] / "yoloworld" / "assets" / "demo.pt"
CLASSES = "red circle,green square,blue triangle"
SETTINGS = LabelSettings(conf=0.01, val_fraction=0.0)


@pytest.fixture(scope="module")
def demo():
    return YOLOWorld.from_pretrained(DEMO, imgsz=128, fuse=True).set_classes(CLASSES)


@pytest.fixture(scope="module")
def labelled(demo, tmp_path_factory) -> tuple[list[Path], Path]:
    """Three photos and a finished labelling of them (its ledger has three lines)."""
    root = tmp_path_factory.mktemp("labelled")
    synthesize(root / "synth", SynthConfig(images=3, seed=1, min_side=128, max_side=128))
    images = sorted((root / "synth" / "coco" / "images").glob("*.jpg"))
    label_images(demo, images, root / "ds", SETTINGS, review=0, weights=str(DEMO))
    return images, root / "ds"


def copy_of(labelled, tmp_path) -> Path:
    return Path(shutil.copytree(labelled[1], tmp_path / "ds", symlinks=True))


def replace_line(ledger: Path, number: int, damage) -> None:
    lines = ledger.read_bytes().splitlines()
    entry = json.loads(lines[number - 1])
    new = damage(entry)
    lines[number - 1] = new if isinstance(new, bytes) else json.dumps(new).encode()
    ledger.write_bytes(b"\n".join(lines) + b"\n")


def with_(**changes):
    return lambda entry: {**entry, **changes}


DAMAGE = {
    "garbage": lambda e: b"this is not JSON",
    "not an object": lambda e: b"[1, 2, 3]",
    "missing fields": lambda e: {"source": e["source"]},
    "binary bytes": lambda e: b"\xff\xfe\x00\x81garbage",
    "box of the wrong shape": with_(boxes=[[1, 2, 3]]),
    "class index out of range": with_(boxes=[[1, 1, 9, 9, 99, 0.9]]),
    "class index -1": with_(boxes=[[1, 1, 9, 9, -1, 0.9]]),
    "NaN coordinate": with_(boxes=[[float("nan"), 1, 9, 9, 0, 0.9]]),
    "width as a string": with_(width="128"),
    "source not text": with_(source=5),
    "unknown split": with_(split="test"),
    "name that climbs out": with_(name="../../escape.jpg"),
    "boxes not a list": with_(boxes="none"),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_ledger_line_is_skipped_with_one_warning_and_its_image_labelled_again(
        damage, demo, labelled, tmp_path, caplog):
    images, _ = labelled
    out = copy_of(labelled, tmp_path)
    replace_line(out / LEDGER_NAME, 2, damage)
    with caplog.at_level(logging.WARNING):
        report = label_images(demo, images, out, SETTINGS, review=0, weights=str(DEMO))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert f"{out / LEDGER_NAME} line 2" in warnings[0].getMessage()
    assert (report.resumed, report.labelled) == (2, 1)
    written = json.loads((out / "annotations.json").read_text())
    assert sorted(image["file_name"] for image in written["images"]) == [p.name.lower() for p in images]
    assert all(isinstance(image["width"], int) for image in written["images"])
    assert all(1 <= a["category_id"] <= 3 for a in written["annotations"])
    assert not (out.parent / "escape.jpg").exists()


@pytest.mark.parametrize("text", [b"{", b"[]", b"", b"\xff\xfe", b"{}"], ids=["malformed", "a list", "empty",
                                                                           "binary", "no settings"])
def test_a_damaged_settings_file_is_one_clear_error(text, demo, labelled, tmp_path):
    images, _ = labelled
    out = copy_of(labelled, tmp_path)
    (out / SETTINGS_NAME).write_bytes(text)
    with pytest.raises(InputError, match=f"{SETTINGS_NAME}: damaged labelling settings"):
        label_images(demo, images, out, SETTINGS, review=0, weights=str(DEMO))


def test_a_ledger_that_is_a_folder_is_one_clear_error(demo, labelled, tmp_path):
    images, _ = labelled
    out = copy_of(labelled, tmp_path)
    (out / LEDGER_NAME).unlink()
    (out / LEDGER_NAME).mkdir()
    with pytest.raises(InputError, match=f"{LEDGER_NAME}: is not a file"):
        label_images(demo, images, out, SETTINGS, review=0, weights=str(DEMO))


def label_cli(images: Path, out: Path, *extra):
    return run_cli("label", images, "--weights", DEMO, "--imgsz", 128, "--conf", 0.01, "--val-fraction", 0,
                   "--review", 0, "--out", out, *extra)


def test_from_the_command_line_a_damaged_line_is_one_warning_and_damaged_files_one_line(labelled, tmp_path):
    images, _ = labelled
    out = copy_of(labelled, tmp_path)
    replace_line(out / LEDGER_NAME, 3, lambda e: b"\x00garbage")
    result = label_cli(images[0].parent, out, "--classes", CLASSES)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "line 3" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and LEDGER_NAME in warnings[0], result.stderr
    assert "labelled 1 image(s), 2 done by an earlier run" in result.stdout
    for broken in ("settings", "ledger"):
        if broken == "settings":
            (out / SETTINGS_NAME).write_text("[]")
        else:
            (out / LEDGER_NAME).unlink()
            (out / LEDGER_NAME).mkdir()
        result = label_cli(images[0].parent, out, "--classes", CLASSES)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert (SETTINGS_NAME if broken == "settings" else LEDGER_NAME) in result.stderr


def test_an_embeddings_class_file_labels_and_resumes(demo, labelled, tmp_path):
    """Finding 6: `--classes-file X.npy` (and --visual-prompt) crashed on writing label_settings.json."""
    images, _ = labelled
    write_embeddings(tmp_path / "shapes.npy", demo.text_embeds, {"classes": [[c] for c in CLASSES.split(",")],
                                                                  "padded": True})
    for resumed in (False, True):
        result = label_cli(images[0].parent, tmp_path / "ds", "--classes-file", tmp_path / "shapes.npy")
        assert result.returncode == 0, result.stderr
        assert ("3 done by an earlier run" in result.stdout) == resumed, result.stdout
    settings = json.loads((tmp_path / "ds" / SETTINGS_NAME).read_text())
    assert [group[0]["embedding"] for group in settings["classes"]] == CLASSES.split(",")
    assert json.loads((tmp_path / "ds" / "class_texts.json").read_text()) == [[c] for c in CLASSES.split(",")]


def test_every_kind_of_class_is_described_as_json_that_tells_runs_apart(tmp_path):
    ref = tmp_path / "mug.png"
    ref.write_bytes(b"")
    vector = np.ones(4, dtype=np.float32)
    classes = [["cup", VisualPrompt(str(ref), box=(1, 2, 3, 4), name="mug")], [Embedding(vector, "thing")],
               [VisualPrompt(np.zeros((4, 4, 3), np.uint8), name="black")]]
    described = describe_classes(classes)
    assert json.loads(json.dumps(described)) == described
    assert described[0][1] == {"image_prompt": "mug", "references": [[str(ref.resolve()), [1.0, 2.0, 3.0, 4.0]]]}
    assert described == describe_classes(classes)  # the same on every run: a resume compares them
    assert described != describe_classes([classes[0], [Embedding(vector * 2, "thing")], classes[2]])


def test_a_visual_prompt_labels_and_resumes(fixtures, tmp_path):
    """Finding 6: `label --visual-prompt` crashed with "VisualPrompt is not JSON serializable"."""
    import cv2
    from test_visual_prompts import save_tower

    tower = save_tower(tmp_path / "clip-vision")
    image = np.load(fixtures / "inputs.npz")["image_raw"][:, :, ::-1].copy()
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "a.png"), image)
    cv2.imwrite(str(tmp_path / "ref.png"), image[:100, :120])
    command = ["label", tmp_path / "photos", "--weights", fixtures / "v2_n.pth", "--text-model",
               fixtures / "tiny-clip", "--vision-model", tower, "--classes", "dog", "--visual-prompt",
               f"cup={tmp_path / 'ref.png'}", "--conf", 0.9, "--out", tmp_path / "ds"]
    for resumed in (False, True):
        result = run_cli(*command)
        assert result.returncode == 0, result.stderr
        assert ("1 done by an earlier run" in result.stdout) == resumed, result.stdout
    settings = json.loads((tmp_path / "ds" / SETTINGS_NAME).read_text())
    assert settings["classes"] == [["dog"], [{"image_prompt": "cup",
                                              "references": [[str((tmp_path / "ref.png").resolve()), None]]}]]
    assert json.loads((tmp_path / "ds" / "class_texts.json").read_text()) == [["dog"], ["cup"]]
