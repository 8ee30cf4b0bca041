"""`yoloworld data check` and `data synth`: malformed input ends in one line and exit 2, problems are
reported and counted, the PNG grid is written, synthetic data is deterministic and consistent."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from yoloworld.cli import main
from yoloworld.data import DatasetConfig, read_source
from yoloworld.data.synth import SynthConfig, synthesize


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, SynthConfig(images=24, seed=3, val_fraction=0.25))
    return out


def run_cli(arguments, capsys):
    code = main([str(a) for a in arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def coco_args(root, ann="annotations.json", texts="class_texts.json"):
    return ["data", "check", "--ann", root / "coco" / ann, "--images", root / "coco" / "images",
            "--classes-file", root / "coco" / texts, "--no-grid"]


# ------------------------------------------------------------------------------------------------ fatal input

def broken_inputs(root: Path, synth: Path) -> dict:
    """name -> (arguments, expected message) for each fatal case."""
    (root / "truncated.json").write_text('{"images": [{"id": 1,\n "file_name": "a.jpg"')
    (root / "list.json").write_text("[1, 2]")
    (root / "short_texts.json").write_text('[["red circle"]]')
    (root / "flat_texts.json").write_text(json.dumps(["red circle"] * 9))
    (root / "bad_texts.json").write_text("[[\"red circle\"],")
    (root / "bad.yaml").write_text("train: [unclosed\n")
    (root / "badkey.yaml").write_text("train:\n  - {kind: coco, annotations: a.json}\n")
    (root / "empty_yolo" / "images").mkdir(parents=True)
    images = synth / "coco" / "images"
    return {
        "missing file": (["--ann", root / "nope.json", "--images", images], "nope.json: annotation file not found"),
        "truncated JSON": (["--ann", root / "truncated.json", "--images", images], "not valid JSON (line 2, column"),
        "not an object": (["--ann", root / "list.json", "--images", images], "expected a JSON object"),
        "text count": (["--ann", synth / "coco" / "annotations.json", "--images", images, "--classes-file",
                        root / "short_texts.json"], "has 1 synonym lists but"),
        "flat texts": (["--ann", synth / "coco" / "annotations.json", "--images", images, "--classes-file",
                        root / "flat_texts.json"], "expected a list of synonyms"),
        "bad texts JSON": (["--ann", synth / "coco" / "annotations.json", "--images", images, "--classes-file",
                            root / "bad_texts.json"], "bad_texts.json: not valid JSON"),
        "no captions": (["--ann", synth / "coco" / "annotations.json", "--images", images, "--kind", "grounding"],
                        "not an MDETR-style grounding file"),
        "no images arg": (["--ann", synth / "coco" / "annotations.json"], "pass the image folder too"),
        "yolo no names": ([root / "empty_yolo"], "no classes.txt or data.yaml"),
        "no such folder": ([root / "nowhere"], "no such YOLO dataset folder"),
        "bad yaml": ([root / "bad.yaml"], "malformed YAML at line"),
        "bad yaml key": ([root / "badkey.yaml"], "unknown key"),
        "all images missing": (["--ann", synth / "coco" / "annotations.json", "--images", root], "no readable image"),
    }


def test_every_fatal_problem_is_one_line_and_exit_2(tmp_path, synth, capsys):
    for name, (arguments, message) in broken_inputs(tmp_path, synth).items():
        grid = ["--grid", tmp_path / "grid.png", "--samples", "1"]
        code, _, err = run_cli(["data", "check", *arguments, *grid], capsys)
        assert code == 2, name
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (name, err)


def test_real_entry_point_prints_no_traceback(tmp_path, synth):
    (tmp_path / "short.json").write_text('[["red circle"]]')
    result = subprocess.run([sys.executable, "-m", "yoloworld", "data", "check", "--ann",
                             str(synth / "coco" / "annotations.json"), "--images", str(synth / "coco" / "images"),
                             "--classes-file", str(tmp_path / "short.json")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "short.json: has 1 synonym lists but" in result.stderr and "9 categories" in result.stderr


# ------------------------------------------------------------------------------------------------ problems

def damaged_copy(synth: Path, root: Path) -> Path:
    """The synthetic COCO set with one of every non-fatal problem."""
    data = json.loads((synth / "coco" / "annotations.json").read_text())
    images = root / "images"
    images.mkdir()
    for image in data["images"]:
        (images / image["file_name"]).write_bytes((synth / "coco" / "images" / image["file_name"]).read_bytes())
    (images / data["images"][0]["file_name"]).unlink()  # missing
    (images / data["images"][1]["file_name"]).write_bytes(b"\xff\xd8 truncated jpeg")  # corrupt
    anns = data["annotations"]
    anns[0]["category_id"] = 77  # unknown category
    anns[1]["bbox"] = [anns[1]["bbox"][0], anns[1]["bbox"][1], 0.3, 10]  # degenerate
    anns[2]["bbox"] = [-30, -30, 60, 60]  # out of bounds: clipped
    anns[3]["bbox"] = "10 10 5 5"  # malformed
    (root / "ann.json").write_text(json.dumps(data))
    return root / "ann.json"


def test_check_reports_each_problem_on_one_line_and_counts_them(tmp_path, synth, capsys):
    ann = damaged_copy(synth, tmp_path)
    grid = tmp_path / "grid.png"
    code, out, err = run_cli(["data", "check", "--ann", ann, "--images", tmp_path / "images", "--classes-file",
                              synth / "coco" / "class_texts.json", "--grid", grid, "--samples", 9], capsys)
    assert code == 0 and err == ""
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 6
    expected = ["category id 77", "under 1 pixel", "extends outside", "is not 4 finite numbers", "file not found",
                "cannot be decoded"]
    for fragment in expected:
        assert sum(fragment in line for line in warnings) == 1, fragment
    summary = next(line for line in out.splitlines() if line.startswith("problems: "))
    for count in ("1 missing image (image skipped)", "1 corrupt image (image skipped)", "1 box out of bounds (box clipped)",
                  "1 degenerate box (box dropped)", "1 unknown category (box dropped)", "1 bad box (box dropped)"):
        assert count in summary
    assert "18 images" in out and "red circle" in out
    image = cv2.imread(str(grid))
    assert image is not None and image.shape == (960, 960, 3)  # 3 x 3 tiles of 320 px


def test_check_grounding_and_yolo_layouts_write_grids(tmp_path, synth, capsys):
    code, out, _ = run_cli(["data", "check", "--ann", synth / "grounding" / "annotations.json", "--images",
                            synth / "coco" / "images", "--grid", tmp_path / "g.png", "--samples", 4], capsys)
    assert code == 0 and "(grounding)" in out and cv2.imread(str(tmp_path / "g.png")).shape == (640, 640, 3)
    code, out, _ = run_cli(["data", "check", synth / "yolo", "--split", "val", "--no-mosaic", "--grid",
                            tmp_path / "y.png", "--samples", 2], capsys)
    assert code == 0 and "6 images" in out and (tmp_path / "y.png").is_file()


def test_relative_yolo_paths_as_synth_prints_them_work_for_check_and_convert(tmp_path, monkeypatch, capsys):
    """`data synth --out data/synth` prints `data/synth/yolo`; its data.yaml has no `path:` entry."""
    monkeypatch.chdir(tmp_path)
    assert run_cli(["data", "synth", "--out", "data/synth", "--images", 8, "--val-fraction", 0.25,
                    "--min-side", 96, "--max-side", 128], capsys)[0] == 0
    for source in ("data/synth/yolo", "data/synth/yolo/data.yaml"):
        code, out, err = run_cli(["data", "check", source, "--no-grid"], capsys)
        assert code == 0 and "6 images" in out, err
    code, out, err = run_cli(["convert", "yolo2coco", "data/synth/yolo", "--out", "ann.json"], capsys)
    assert code == 0, err
    assert len(json.loads((tmp_path / "ann_train.json").read_text())["images"]) == 6


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_check_names_and_counts_truncated_jpegs(tmp_path, capsys):
    """cv2 decodes a JPEG cut short without an error (the rest grey); only libjpeg prints, without the file."""
    synthesize(tmp_path, SynthConfig(images=6, seed=1, min_side=96, max_side=128))
    truncated = tmp_path / "coco" / "images" / "000002.jpg"
    cut_in_half(truncated)
    code, out, err = run_cli(coco_args(tmp_path), capsys)
    assert code == 0, err
    assert [line for line in out.splitlines() if "truncated" in line and str(truncated) in line], out
    assert "1 truncated image" in out.splitlines()[-1]


def test_truncated_jpeg_detection_has_no_false_alarms(tmp_path):
    from yoloworld.images import truncated_jpeg

    image = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    jpeg, png = tmp_path / "a.jpg", tmp_path / "a.png"
    cv2.imwrite(str(jpeg), image)
    cv2.imwrite(str(png), image)
    assert not truncated_jpeg(jpeg) and not truncated_jpeg(png)
    jpeg.write_bytes(jpeg.read_bytes() + b"camera data after the end marker")
    assert not truncated_jpeg(jpeg)
    cut_in_half(jpeg)
    assert truncated_jpeg(jpeg)


# ------------------------------------------------------------------------------------------------ synth

def test_synth_is_deterministic_per_seed(tmp_path, capsys):
    arguments = ["data", "synth", "--images", 6, "--val-fraction", 0.5]
    assert run_cli([*arguments, "--out", tmp_path / "a", "--seed", 1], capsys)[0] == 0
    assert run_cli([*arguments, "--out", tmp_path / "b", "--seed", 1], capsys)[0] == 0
    assert run_cli([*arguments, "--out", tmp_path / "c", "--seed", 2], capsys)[0] == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 20
    for file in files:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    same = (tmp_path / "a" / "coco" / "annotations.json").read_bytes() == \
        (tmp_path / "c" / "coco" / "annotations.json").read_bytes()
    assert not same
    code, _, err = run_cli([*arguments, "--out", tmp_path / "a"], capsys)
    assert code == 2 and "--overwrite" in err


def test_synth_layouts_agree(synth):
    coco = read_source(DatasetConfig(kind="coco", ann=str(synth / "coco" / "annotations.json"),
                                     images=str(synth / "coco" / "images"),
                                     classes_file=str(synth / "coco" / "class_texts.json"), with_masks=True))
    grounding = read_source(DatasetConfig(kind="grounding", ann=str(synth / "grounding" / "annotations.json"),
                                          images=str(synth / "coco" / "images")))
    yolo = read_source(DatasetConfig(kind="yolo", images=str(synth / "yolo")))
    assert len(coco.records) == len(grounding.records) == len(yolo.records) == 18
    assert [t[0] for t in coco.class_texts] == [f"{c} {s}" for c in ("red", "green", "blue")
                                                for s in ("circle", "square", "triangle")]
    for c, g, y in zip(coco.records, grounding.records, yolo.records):
        assert 1 <= len(c.boxes) <= 6 and 320 <= min(c.width, c.height) and max(c.width, c.height) <= 640
        np.testing.assert_allclose(c.boxes, g.boxes)
        np.testing.assert_allclose(c.boxes, y.boxes, atol=0.01)
        assert [c.class_texts[label] for label in c.labels] == [g.class_texts[label] for label in g.labels]
        assert all(t[0] in g.caption for t in g.class_texts)
        assert c.labels.tolist() == y.labels.tolist() and len(c.polygons) == len(c.boxes)
