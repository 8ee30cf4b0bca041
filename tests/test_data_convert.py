"""`yoloworld convert yolo2coco` round-trips a YOLO dataset; `yoloworld texts` writes class-text files."""

import json

import cv2
import numpy as np
import pytest

from yoloworld.cli import main
from yoloworld.data import DatasetConfig, load_class_texts, read_source


def write_yolo_split(root, rng, names):
    """The tutorial's layout: <split>/images, <split>/labels, <split>/classes.txt; full-precision labels."""
    lines_per_image = {}
    for i in range(4):
        width, height = (int(v) for v in rng.integers(50, 300, 2))
        (root / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / f"{i:06d}.jpg"), np.zeros((height, width, 3), np.uint8))
        rows = []
        for _ in range(int(rng.integers(0, 5))):
            w, h = rng.uniform(0.01, 0.5, 2)
            cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
            rows.append([int(rng.integers(len(names))), float(cx), float(cy), float(w), float(h)])
        lines_per_image[f"{i:06d}"] = (rows, width, height)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{i:06d}.txt").write_text("".join(f"{r[0]} {r[1]!r} {r[2]!r} {r[3]!r} {r[4]!r}\n"
                                                              for r in rows))
    (root / "labels" / "000000.txt").open("a").write("1 0.1 0.1 0.3 0.1 0.3 0.4\n")  # a polygon line
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return lines_per_image


def test_yolo2coco_round_trips_every_split(tmp_path, capsys):
    rng = np.random.default_rng(0)
    names = ["person", "bicycle", "car"]
    labels = {split: write_yolo_split(tmp_path / "coco128" / split, rng, names) for split in ("train", "val", "test")}
    assert main(["convert", "yolo2coco", str(tmp_path / "coco128"), "--out", str(tmp_path / "annotations"),
                 "--texts", str(tmp_path / "texts.json")]) == 0
    printed = capsys.readouterr().out
    assert load_class_texts(tmp_path / "texts.json") == [[n] for n in names]
    for split in ("train", "val", "test"):
        ann = tmp_path / "annotations" / f"{split}.json"
        images = tmp_path / "coco128" / split / "images"
        assert f"-> {ann}" in printed
        if split != "test":  # the printed training command uses the train and val splits
            assert f"data.{split}.0.ann={ann} data.{split}.0.images={images}" in printed
        coco = json.loads(ann.read_text())
        assert [c["name"] for c in coco["categories"]] == names
        # the JSON holds the label values exactly (relative 1e-6 is the promise; float64 gives ~1e-15)
        for image in coco["images"]:
            rows, width, height = labels[split][image["file_name"][:-4]]
            anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]][: len(rows)]
            for row, ann_entry in zip(rows, anns):
                x, y, w, h = ann_entry["bbox"]
                back = [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height]
                np.testing.assert_allclose(back, row[1:], rtol=1e-6)
                assert ann_entry["category_id"] - 1 == row[0]
        # reading the COCO file gives the same records as reading the YOLO folder directly
        from_coco = read_source(DatasetConfig(kind="coco", ann=str(ann), images=str(images)))
        from_yolo = read_source(DatasetConfig(kind="yolo", images=str(tmp_path / "coco128" / split)))
        assert len(from_coco.records) == len(from_yolo.records) == 4
        for a, b in zip(from_coco.records, from_yolo.records):
            assert a.file == b.file and (a.width, a.height) == (b.width, b.height)
            np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-6)
            assert a.labels.tolist() == b.labels.tolist()
    train = json.loads((tmp_path / "annotations" / "train.json").read_text())
    polygon_ann = [a for a in train["annotations"] if a["image_id"] == 1][-1]
    assert len(polygon_ann["segmentation"][0]) == 6


def test_single_split_and_json_out_names(tmp_path):
    rng = np.random.default_rng(1)
    write_yolo_split(tmp_path / "one", rng, ["a", "b"])
    assert main(["convert", "yolo2coco", str(tmp_path / "one")]) == 0
    assert (tmp_path / "one" / "annotations.json").is_file()
    for split in ("train", "val"):
        write_yolo_split(tmp_path / "two" / split, rng, ["a", "b"])
    assert main(["convert", "yolo2coco", str(tmp_path / "two"), "--out", str(tmp_path / "out" / "ann.json")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [".yoloworld-outputs.json", "ann_train.json", "ann_val.json"]  # + the record of convert's files


def test_texts_from_coco_lvis_and_names(tmp_path):
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"},
                                                            {"id": 2, "name": "cabinet/shelf"}]}
    lvis = {"images": [], "annotations": [], "categories": [
        {"id": 1, "name": "aerosol_can", "synonyms": ["aerosol_can", "spray_can"], "frequency": "c"},
        {"id": 2, "name": "yoke_(animal_equipment)", "synonyms": ["yoke_(animal_equipment)"], "frequency": "r"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    (tmp_path / "lvis.json").write_text(json.dumps(lvis))
    (tmp_path / "names.txt").write_text("person, bicycle, car\n")
    cases = [(["--coco", str(tmp_path / "coco.json")], [["person"], ["cabinet", "shelf"]]),
             (["--lvis", str(tmp_path / "lvis.json")], [["aerosol can", "spray can"], ["yoke animal equipment"]]),
             (["--names", "red circle", "blue square"], [["red circle"], ["blue square"]]),
             (["--names-file", str(tmp_path / "names.txt")], [["person"], ["bicycle"], ["car"]])]
    for i, (arguments, expected) in enumerate(cases):
        out = tmp_path / f"texts{i}.json"
        assert main(["texts", *arguments, "--out", str(out)]) == 0
        assert load_class_texts(out) == expected


@pytest.mark.parametrize("arguments, message", [
    (["texts", "--coco", "missing.json", "--out", "x.json"], "missing.json: annotation file not found"),
    (["texts", "--names-file", "missing.txt", "--out", "x.json"], "missing.txt: class-name file not found"),
    (["convert", "yolo2coco", "nowhere"], "nowhere: no such YOLO dataset folder"),
])
def test_tool_errors_are_one_line(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
