"""Every reader loads its format, built here in tmp_path with the exact field layouts of the real files."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from yoloworld.data import DatasetConfig, ProblemLog, TrainDataset, read_source
from yoloworld.data.augment import AugmentConfig
from yoloworld.data.sources import detect_kind, load_dataset_yaml
from yoloworld.errors import DatasetError


def write_image(path, width, height, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------------------------------------ COCO + texts

def coco_files(tmp_path):
    write_image(tmp_path / "images" / "a.jpg", 100, 80)
    write_image(tmp_path / "images" / "sub" / "b.jpg", 60, 50)
    data = {
        "images": [{"id": 11, "file_name": "a.jpg", "width": 100, "height": 80},
                   {"id": 12, "file_name": "sub/b.jpg", "width": 60, "height": 50}],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 3, "name": "car", "supercategory": "vehicle"},
                       {"id": 7, "name": "train", "supercategory": "vehicle"}],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 3, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 7, "bbox": [50.5, 0, 20, 10], "area": 200, "iscrowd": 0},
            {"id": 3, "image_id": 11, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 1},
            {"id": 4, "image_id": 12, "category_id": 1, "bbox": [40, 30, 50, 10], "area": 500, "iscrowd": 0},
            {"id": 5, "image_id": 12, "category_id": 9, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
            {"id": 6, "image_id": 12, "category_id": 1, "bbox": [5, 5, 0.5, 9], "area": 4, "iscrowd": 0},
            {"id": 7, "image_id": 99, "category_id": 1, "bbox": [5, 5, 5, 5], "area": 25, "iscrowd": 0},
        ],
    }
    ann = write_json(tmp_path / "ann.json", data)
    texts = write_json(tmp_path / "texts.json", [["person", "human"], ["car", "automobile"], ["train"]])
    return ann, texts


def test_coco_reader_maps_category_order_boxes_and_class_texts(tmp_path):
    ann, texts = coco_files(tmp_path)
    problems = ProblemLog()
    source = read_source(DatasetConfig(kind="coco", ann=str(ann), images=str(tmp_path / "images"),
                                       classes_file=str(texts)), problems)
    assert source.class_texts == [["person", "human"], ["car", "automobile"], ["train"]]
    assert source.category_ids == [1, 3, 7]
    a, b = source.records
    assert a.file == str(tmp_path / "images" / "a.jpg") and (a.width, a.height) == (100, 80)
    np.testing.assert_allclose(a.boxes, [[10, 20, 40, 60], [50.5, 0, 70.5, 10]])
    assert a.labels.tolist() == [1, 2]  # crowd box 3 is not a target
    assert a.class_texts is source.class_texts  # shared vocabulary, not a copy
    np.testing.assert_allclose(b.boxes, [[40, 30, 60, 40]])  # clipped at the 60 px right edge
    assert b.labels.tolist() == [0]
    assert problems.counts == {"box_out_of_bounds": 1, "unknown_category": 1, "degenerate_box": 1,
                               "unknown_image": 1}
    assert any("category id 9" in line for line in problems.lines())


def test_coco_without_class_file_uses_category_names(tmp_path):
    ann, _ = coco_files(tmp_path)
    source = read_source(DatasetConfig(kind="coco", ann=str(ann), images=str(tmp_path / "images")))
    assert source.class_texts == [["person"], ["car"], ["train"]]


def test_class_text_count_mismatch_is_fatal(tmp_path):
    ann, _ = coco_files(tmp_path)
    texts = write_json(tmp_path / "short.json", [["person"], ["car"]])
    with pytest.raises(DatasetError, match="2 synonym lists but .* 3 categories"):
        read_source(DatasetConfig(kind="coco", ann=str(ann), images=str(tmp_path), classes_file=str(texts)))


@pytest.mark.parametrize("content, message", [
    (["person", "car", "train"], "is the string 'person'"),
    ([["person"], [], ["train"]], "entry 1"),
    ([["person"], [""], ["train"]], "non-empty string"),
    ({"person": 0}, "non-empty JSON list"),
])
def test_malformed_class_texts_are_fatal(tmp_path, content, message):
    ann, _ = coco_files(tmp_path)
    texts = write_json(tmp_path / "bad.json", content)
    with pytest.raises(DatasetError, match=message):
        read_source(DatasetConfig(kind="coco", ann=str(ann), images=str(tmp_path), classes_file=str(texts)))


def test_objects365_names_with_slash_become_synonyms(tmp_path):
    write_image(tmp_path / "images" / "obj365_train_000000000001.jpg", 64, 48)
    data = {"images": [{"height": 48, "id": 1, "file_name": "obj365_train_000000000001.jpg", "width": 64}],
            "annotations": [{"id": 1, "iscrowd": 0, "isfake": 0, "area": 100.0, "isreflected": 0,
                             "bbox": [1.0, 2.0, 10.0, 10.0], "image_id": 1, "category_id": 2}],
            "categories": [{"name": "person", "id": 1}, {"name": "cabinet/shelf", "id": 2}]}
    ann = write_json(tmp_path / "objects365_train.json", data)
    source = read_source(DatasetConfig(kind="objects365", ann=str(ann), images=str(tmp_path / "images")))
    assert source.class_texts == [["person"], ["cabinet", "shelf"]]
    assert source.records[0].labels.tolist() == [1]


# ------------------------------------------------------------------------------------------------ LVIS v1

def test_lvis_reader_uses_synonyms_coco_url_and_keeps_federated_ids(tmp_path):
    write_image(tmp_path / "coco" / "val2017" / "000000397133.jpg", 64, 48)
    data = {
        "info": {}, "licenses": [],
        "images": [{"date_captured": "2013-11-14 17:02:52", "neg_category_ids": [3, 5], "id": 397133,
                    "license": 4, "height": 48, "width": 64, "flickr_url": "http://farm7.staticflickr.com/x.jpg",
                    "coco_url": "http://images.cocodataset.org/val2017/000000397133.jpg",
                    "not_exhaustive_category_ids": [2]}],
        "annotations": [{"area": 120.0, "id": 1, "segmentation": [[1, 1, 20, 1, 20, 10, 1, 10]], "image_id": 397133,
                         "bbox": [1.0, 1.0, 19.0, 9.0], "category_id": 2}],
        "categories": [
            {"frequency": "c", "synset": "aerosol.n.02", "synonyms": ["aerosol_can", "spray_can"], "def": "a dispenser",
             "id": 1, "name": "aerosol_can", "image_count": 64, "instance_count": 109},
            {"frequency": "r", "synset": "yoke.n.07", "synonyms": ["yoke_(animal_equipment)"], "def": "gear",
             "id": 2, "name": "yoke_(animal_equipment)", "image_count": 2, "instance_count": 3},
        ],
    }
    ann = write_json(tmp_path / "lvis_v1_minival.json", data)
    assert detect_kind(DatasetConfig(kind="auto", ann=str(ann), images=str(tmp_path / "coco"))) == "lvis"
    source = read_source(DatasetConfig(kind="lvis", ann=str(ann), images=str(tmp_path / "coco"), with_masks=True))
    record = source.records[0]
    assert source.class_texts == [["aerosol can", "spray can"], ["yoke animal equipment"]]
    assert record.file == str(tmp_path / "coco" / "val2017" / "000000397133.jpg")
    assert record.neg_category_ids == (3, 5) and record.not_exhaustive_category_ids == (2,)
    assert record.labels.tolist() == [1]
    assert record.polygons[0][0].shape == (4, 2)


# ------------------------------------------------------------------------------------------------ grounding

def gqa_file(tmp_path):
    """Field layout of GLIP's mdetr_annotations/final_mixed_train_no_coco.json."""
    caption = "The man is holding a red umbrella next to a dog."
    data = {
        "images": [{"file_name": "2354786.jpg", "height": 60, "width": 80, "id": 0, "caption": caption,
                    "dataset_name": "gqa", "tokens_negative": [[0, 7], [21, 33]], "sentence_id": 0,
                    "original_img_id": 2354786, "tokens_positive_eval": [[[0, 7]], [[21, 33]]]}],
        "annotations": [
            {"area": 400.0, "iscrowd": 0, "category_id": 1, "image_id": 0, "id": 0, "bbox": [5, 5, 20, 20],
             "tokens_positive": [[0, 7]]},
            {"area": 100.0, "iscrowd": 0, "category_id": 1, "image_id": 0, "id": 1, "bbox": [30, 5, 10, 10],
             "tokens_positive": [[21, 24], [25, 33]]},
            {"area": 100.0, "iscrowd": 0, "category_id": 1, "image_id": 0, "id": 2, "bbox": [50, 30, 10, 10],
             "tokens_positive": [[0, 7]]},
            {"area": 100.0, "iscrowd": 0, "category_id": 1, "image_id": 0, "id": 3, "bbox": [50, 40, 10, 10],
             "tokens_positive": [[44, 99]]},
            {"area": 25.0, "iscrowd": 0, "category_id": 1, "image_id": 0, "id": 4, "bbox": [60, 10, 5, 5],
             "tokens_positive": [[42, 47]]},
        ],
        "categories": [{"supercategory": "object", "id": 1, "name": "object"}],
    }
    write_image(tmp_path / "gqa" / "2354786.jpg", 80, 60)
    return write_json(tmp_path / "final_mixed_train_no_coco.json", data)


def test_grounding_phrases_are_joined_spans_and_become_the_image_classes(tmp_path):
    ann = gqa_file(tmp_path)
    problems = ProblemLog()
    assert detect_kind(DatasetConfig(kind="auto", ann=str(ann), images=str(tmp_path))) == "grounding"
    source = read_source(DatasetConfig(kind="grounding", ann=str(ann), images=str(tmp_path / "gqa")), problems)
    record = source.records[0]
    assert record.class_texts == [["The man"], ["red umbrella"], ["a dog"]]
    assert record.labels.tolist() == [0, 1, 0, 2]
    np.testing.assert_allclose(record.boxes[1], [30, 5, 40, 15])
    assert record.caption.startswith("The man")
    assert source.class_texts == []  # no dataset vocabulary: every image has its own phrases
    assert problems.counts == {"span_outside_caption": 1}
    assert "annotation 3" in problems.lines()[0]


def test_flickr_separate_gt_layout(tmp_path):
    """Field layout of final_flickr_separateGT_train.json (several boxes per phrase, phrase_ids)."""
    caption = "Two young guys with shaggy hair look at their hands while hanging out in the yard ."
    data = {
        "images": [{"file_name": "1000092795.jpg", "height": 50, "width": 40, "id": 0, "caption": caption,
                    "dataset_name": "flickr", "tokens_negative": [[0, 83]], "sentence_id": 0,
                    "original_img_id": 1000092795, "tokens_positive_eval": [[[0, 15]], [[40, 51]]]}],
        "annotations": [
            {"area": 100.0, "iscrowd": 0, "image_id": 0, "category_id": 1, "id": 0, "bbox": [0, 0, 10, 10],
             "tokens_positive": [[0, 15]], "phrase_ids": 0},
            {"area": 100.0, "iscrowd": 0, "image_id": 0, "category_id": 1, "id": 1, "bbox": [20, 0, 10, 10],
             "tokens_positive": [[0, 15]], "phrase_ids": 0},
            {"area": 64.0, "iscrowd": 0, "image_id": 0, "category_id": 1, "id": 2, "bbox": [5, 30, 8, 8],
             "tokens_positive": [[40, 51]], "phrase_ids": 1},
        ],
        "categories": [{"supercategory": "object", "id": 1, "name": "object"}],
    }
    ann = write_json(tmp_path / "final_flickr_separateGT_train.json", data)
    source = read_source(DatasetConfig(kind="grounding", ann=str(ann), images=str(tmp_path)))
    record = source.records[0]
    assert record.class_texts == [["Two young guys"], ["their hands"]]
    assert record.labels.tolist() == [0, 0, 1]


# ------------------------------------------------------------------------------------------------ CC3M

def test_cc3m_pseudo_labels_use_box_tokens(tmp_path):
    """Field layout of cc3m_pseudo_annotations.json as shown in the tutorial (chapter 2.4.5)."""
    data = {
        "categories": [{"name": "appropriate attire", "id": 1}, {"name": "golfers", "id": 2},
                       {"name": "the exhibit", "id": 3}, {"name": "art museum", "id": 4}, {"name": "homes", "id": 5}],
        "images": [
            {"id": 0, "file_name": "2916026_474308128", "height": 811, "width": 1024,
             "caption": "actor , who recently played his first round of golf , feels rules on appropriate attire "
                        "for golfers are a good idea ."},
            {"id": 1, "file_name": "426852_4023546009", "height": 400, "width": 600,
             "caption": "the exhibit displays homes commissioned by art museum ."},
        ],
        "annotations": [
            {"image_id": 0, "id": 0, "category_id": 1, "area": 422653.1869565472,
             "bbox": [0.0, 379.05767822265625, 976.2655029296875, 432.92852783203125], "iscrowd": 0,
             "score": 0.3347477614879608, "tokens": "appropriate attire"},
            {"image_id": 0, "id": 1, "category_id": 2, "area": 790882.0195608903,
             "bbox": [0.0, 11.648781776428223, 989.0121459960938, 799.668662071228], "iscrowd": 0,
             "score": 0.3464314341545105, "tokens": "golfers"},
            {"image_id": 1, "id": 2, "category_id": 3, "area": 130493.92645893525,
             "bbox": [129.6766357421875, 4.1426849365234375, 332.00677490234375, 393.0459747314453], "iscrowd": 0,
             "score": 0.3408966362476349, "tokens": "the exhibit"},
            {"image_id": 1, "id": 3, "category_id": 3, "area": 18324.43645722326,
             "bbox": [0.7921218872070312, 125.02227783203125, 109.76447296142578, 166.9432373046875], "iscrowd": 0,
             "score": 0.3054649829864502, "tokens": "the exhibit"},
            {"image_id": 1, "id": 4, "category_id": 4, "area": 238566.77633925015,
             "bbox": [0.240753173828125, 0.5902252197265625, 599.0253601074219, 398.2582244873047], "iscrowd": 0,
             "score": 0.3036207854747772, "tokens": "art museum"},
            {"image_id": 1, "id": 5, "category_id": 5, "area": 238566.77633925015,
             "bbox": [0.240753173828125, 0.5902252197265625, 599.0253601074219, 398.2582244873047], "iscrowd": 0,
             "score": 0.3074909448623657, "tokens": "homes"},
        ],
    }
    ann = write_json(tmp_path / "cc3m_pseudo_annotations.json", data)
    problems = ProblemLog()
    assert detect_kind(DatasetConfig(kind="auto", ann=str(ann), images=str(tmp_path))) == "cc3m"
    source = read_source(DatasetConfig(kind="cc3m", ann=str(ann), images=str(tmp_path)), problems)
    first, second = source.records
    assert first.class_texts == [["appropriate attire"], ["golfers"]]
    assert second.class_texts == [["the exhibit"], ["art museum"], ["homes"]]
    assert second.labels.tolist() == [0, 0, 1, 2]
    assert first.file == str(tmp_path / "2916026_474308128")
    # 379.06 + 432.93 ends 0.99 px below the 811 px image: clipped silently (rounding, not an error)
    assert first.boxes[0, 3] == pytest.approx(811.0) and len(problems) == 0


# ------------------------------------------------------------------------------------------------ YOLO txt

def yolo_split(root, names_file=True, comma=False):
    write_image(root / "images" / "a.jpg", 100, 50)
    write_image(root / "images" / "b.png", 40, 40)
    write_image(root / "images" / "c.jpg", 40, 40)  # no label file: background
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.1 0.1\n\n7 0.5 0.5 0.1 0.1\noops\n")
    (root / "labels" / "b.txt").write_text("0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n")
    if names_file:
        (root / "classes.txt").write_text("person, bicycle\n" if comma else "person\nbicycle\n")


def test_yolo_folder_reads_boxes_polygons_and_reports_bad_lines(tmp_path):
    yolo_split(tmp_path / "train", comma=True)  # the tutorial's comma-separated classes.txt
    problems = ProblemLog()
    source = read_source(DatasetConfig(kind="yolo", images=str(tmp_path / "train"), with_masks=True), problems)
    assert source.class_texts == [["person"], ["bicycle"]]
    records = {Path(r.file).stem: r for r in source.records}
    assert sorted(r.image_id for r in source.records) == [1, 2, 3]
    np.testing.assert_allclose(records["a"].boxes, [[40, 15, 60, 35], [5, 2.5, 15, 7.5]], rtol=1e-6)
    assert records["a"].labels.tolist() == [1, 0]
    np.testing.assert_allclose(records["b"].boxes, [[10, 10, 30, 30]])
    assert records["b"].polygons[0][0].shape == (4, 2)
    assert len(records["c"].boxes) == 0
    assert problems.counts == {"unknown_category": 1, "bad_label_line": 1}


def test_yolo_data_yaml_with_ultralytics_layout(tmp_path):
    for split in ("train", "val"):
        write_image(tmp_path / "images" / split / f"{split}.jpg", 32, 32)
        (tmp_path / "labels" / split).mkdir(parents=True)
        (tmp_path / "labels" / split / f"{split}.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n  2: bird\n")
    source = read_source(DatasetConfig(kind="yolo", ann=str(tmp_path / "data.yaml"), split="val"))
    assert source.class_texts == [["cat"], ["dog"], ["bird"]]
    assert [Path(r.file).name for r in source.records] == ["val.jpg"]
    assert source.records[0].labels.tolist() == [2]
    splits = load_dataset_yaml(tmp_path / "data.yaml")
    assert set(splits) == {"train", "val"} and splits["train"][0].kind == "yolo"


def test_yolo_folder_without_class_names_is_fatal(tmp_path):
    yolo_split(tmp_path, names_file=False)
    with pytest.raises(DatasetError, match="classes.txt"):
        read_source(DatasetConfig(kind="yolo", images=str(tmp_path)))


# ------------------------------------------------------------------------------------------------ mixing

def test_dataset_yaml_mixes_sources_each_with_its_own_texts(tmp_path):
    ann, texts = coco_files(tmp_path)
    gqa = gqa_file(tmp_path)
    (tmp_path / "mix.yaml").write_text(
        "train:\n"
        f"  - {{kind: coco, ann: {ann.name}, images: images, classes_file: {texts.name}}}\n"
        f"  - {{kind: grounding, ann: {gqa.name}, images: gqa}}\n")
    configs = load_dataset_yaml(tmp_path / "mix.yaml")["train"]
    sources = [read_source(c) for c in configs]
    dataset = TrainDataset(sources, AugmentConfig(image_size=64), num_texts=6)
    coco_texts = {t for synonyms in sources[0].class_texts for t in synonyms}
    gqa_texts = {"The man", "red umbrella", "a dog"}
    for index in range(len(dataset)):
        for epoch in range(5):
            dataset.set_epoch(epoch)
            texts = {t for t in dataset[index]["texts"] if t}
            assert texts <= (coco_texts if index < 2 else gqa_texts)
    assert len(dataset) == 3
