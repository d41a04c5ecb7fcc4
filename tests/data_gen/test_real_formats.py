"""Real formats read whole: DeepLesion slices with all their lesions, Ultralytics YOLO, VOCdevkit,
multi-turn PubMedVision, a json read record by record; bad input named by file and row, never clipped or lost."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsage.data_gen import phantom
from medsage.data_gen.config import load_config
from medsage.data_gen.instructions import InstructionConfig, Materialised, QuestionBuilder, load_question_templates
from medsage.data_gen.pipeline import build
from medsage.data_gen.readers import read_coco, read_deeplesion, read_pubmedvision, read_voc, read_yolo
from medsage.data_gen.readers import vqa_json
from medsage.data_gen.records import DataError, SkipLog

from build_recipes import write_recipe


def _deeplesion(root: Path, edit) -> Path:
    phantom.write_deeplesion(root, 4, seed=7)
    path = root / "DL_info.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    edit(rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def _second_lesion_on_first_slice(rows):
    """Row 3 becomes a lung lesion on row 2's slice (a liver lesion); row 4 gets a box outside the image."""
    rows[0]["Coarse_lesion_type"] = "4"
    rows[1].update(File_name=rows[0]["File_name"], Coarse_lesion_type="5", Bounding_boxes="150, 150, 180, 190")
    rows[2]["Bounding_boxes"] = "240, 240, 600, 300"


def test_deeplesion_slice_is_one_record_with_all_its_lesions_and_outside_boxes_are_dropped_by_row(tmp_path):
    root = _deeplesion(tmp_path / "dl", _second_lesion_on_first_slice)
    skips = SkipLog()
    records = list(read_deeplesion(root, skips))
    assert skips.seen == 3 and skips.kept == 2 and skips.reasons == {"box_outside_image": 1}
    first = records[0]
    assert first.labels == ("liver", "lung") and len(first.rois) == 2 and first.provenance.endswith("rows 2, 3")
    assert first.record_id == f"deeplesion/{first.meta['file_name']}"  # no line number in the id
    assert any("row 4" in e and "outside the 256x256 image" in e for e in skips.examples)


def test_deeplesion_rows_of_one_slice_apart_in_the_csv_are_one_record(tmp_path):
    """Rows 2 and 4 (csv lines) describe one slice with row 3, another slice, between them."""
    def scatter(rows):
        rows[0]["Coarse_lesion_type"] = "4"
        rows[2].update(File_name=rows[0]["File_name"], Coarse_lesion_type="5", Bounding_boxes="150, 150, 180, 190")

    def together(rows):  # the same rows, the slice's two next to each other
        scatter(rows)
        rows[1], rows[2] = rows[2], rows[1]

    skips = SkipLog()
    scattered = list(read_deeplesion(_deeplesion(tmp_path / "a", scatter), skips))
    assert skips.seen == 3 and skips.kept == 3 and not skips.reasons and not skips.dropped
    first = next(r for r in scattered if len(r.rois) == 2)
    assert first.labels == ("liver", "lung") and first.provenance.endswith("rows 2, 4")
    assert [r.record_id for r in scattered].count(first.record_id) == 1
    adjacent = {r.record_id: r for r in read_deeplesion(_deeplesion(tmp_path / "b", together), SkipLog())}
    assert set(adjacent) == {r.record_id for r in scattered}
    assert (adjacent[first.record_id].rois, adjacent[first.record_id].labels) == (first.rois, first.labels)


def test_questions_about_the_lesion_on_a_mixed_slice_point_at_its_box(tmp_path):
    first = next(read_deeplesion(_deeplesion(tmp_path / "dl", _second_lesion_on_first_slice), SkipLog()))
    config = InstructionConfig(per_record=4, task_types=("multiple_choice", "open", "yes_no", "localization"))
    builder = QuestionBuilder(config, {"deeplesion": ["bone", "liver", "lung", "kidney"]}, load_question_templates(), 0)
    samples = {s.task_type: s for s in builder.samples(first, Materialised("images/x.png", 256, 256))}
    for task in ("multiple_choice", "open"):
        roi = next(r for r in first.rois if r.label == samples[task].target)
        assert "box_2d" in samples[task].question, samples[task].question
        assert samples[task].question.endswith(f"{list(_grid(roi.box))} on a 0-1000 grid.")


def _grid(box):
    from medsage.reward_fns.scaffold import pixels_to_box_2d

    return pixels_to_box_2d(box, 256, 256)


def test_non_utf8_csv_is_an_error_naming_file_and_line(tmp_path):
    root = phantom.write_deeplesion(tmp_path / "dl", 3, seed=1)
    path = root / "DL_info.csv"
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b",M,", b",\xe9,").replace(b",F,", b",\xe9,")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"DL_info.csv, row 3: not UTF-8 \(byte 0xe9"):
        list(read_deeplesion(root, SkipLog()))


def test_yolo_ultralytics_layout_with_a_path_root(tmp_path):
    data = tmp_path / "datasets" / "bccd"
    for split in ("train", "val"):
        (data / "images" / split).mkdir(parents=True)
        (data / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (100, 50), (200, 40, 90)).save(data / "images" / split / f"{split}1.jpg")
        (data / "labels" / split / f"{split}1.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.9 0.5 0.4 0.2\n")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "data.yaml").write_text("path: ../datasets/bccd\ntrain: images/train\nval: images/val\n"
                                                "names: {0: WBC, 1: RBC}\n")
    skips = SkipLog()
    records = list(read_yolo(tmp_path / "cfg", skips))
    assert [(r.split, r.labels) for r in records] == [("train", ("WBC",)), ("val", ("WBC",))]
    assert records[0].rois[0].box == pytest.approx((40, 15, 60, 35))
    assert skips.dropped == {"box_outside_image": 2}  # cx 0.9 + w/2 0.2 = 1.1: outside, not clipped


def _yolo_image(data: Path, rel: str, labels: str | None) -> Path:
    """An image at ``data/rel`` and, when given, its labels where Ultralytics looks (images -> labels, .txt)."""
    image = data / rel
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (100, 50), (200, 40, 90)).save(image)
    if labels is not None:
        label = data / rel.replace("images/", "labels/", 1).rsplit(".", 1)[0]
        label.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{label}.txt").write_text(labels)
    return image


def test_yolo_splits_given_as_txt_lists_of_image_paths(tmp_path):
    data = tmp_path / "coco8"
    _yolo_image(data, "images/train2017/a.jpg", "0 0.5 0.5 0.2 0.4\n")
    _yolo_image(data, "images/extra/a.jpg", "1 0.5 0.5 0.2 0.4\n")  # same file name, another folder
    absolute = _yolo_image(tmp_path / "elsewhere", "images/c.jpg", "1 0.25 0.5 0.1 0.2\n")
    _yolo_image(data, "images/val2017/v.jpg", "0 0.5 0.5 0.2 0.4\n")
    (data / "train2017.txt").write_text("./images/train2017/a.jpg\n"   # relative to the list's folder
                                        "images/extra/a.jpg\n"         # relative, without ./
                                        f"{absolute}\n"                 # absolute
                                        "./images/train2017/a.jpg\n"   # listed twice
                                        "./images/train2017/gone.jpg\n"  # missing
                                        "./labels/train2017/a.txt\n\n")  # not an image; blank line ignored
    (data / "lists").mkdir()
    (data / "lists" / "val.txt").write_text("../images/val2017/v.jpg\n")
    (data / "data.yaml").write_text("path: .\ntrain: train2017.txt\nval: lists/val.txt\nnames: [WBC, RBC]\n")
    skips = SkipLog()
    records = list(read_yolo(data, skips))
    assert [(r.split, r.labels) for r in records] == [("train", ("WBC",)), ("train", ("RBC",)), ("train", ("RBC",)),
                                                      ("val", ("WBC",))]
    assert len({r.record_id for r in records}) == 4  # a.jpg twice, in two folders: two ids
    assert records[0].record_id == "roboflow/train/images/train2017/a.jpg"
    assert records[2].image == absolute.resolve() and records[2].rois[0].box == pytest.approx((20, 20, 30, 30))
    assert skips.seen == 7 and skips.kept == 4
    assert skips.reasons == {"listed_twice": 1, "missing_image": 1, "not_an_image": 1}
    for row, reason in ((4, "listed_twice"), (5, "missing_image"), (6, "not_an_image")):
        assert any(e.startswith(f"{data / 'train2017.txt'}, row {row}: {reason}") for e in skips.examples), skips.examples


def test_yolo_split_lists_of_folders_and_a_missing_list_is_an_error(tmp_path):
    data = tmp_path / "d"
    _yolo_image(data, "images/a/x.jpg", "0 0.5 0.5 0.2 0.4\n")
    _yolo_image(data, "images/b/x.jpg", None)  # no label file: an image without boxes
    (data / "data.yaml").write_text("train: [images/a, images/b]\nnames: {0: WBC}\n")
    records = list(read_yolo(data, SkipLog()))
    assert [r.record_id for r in records] == ["roboflow/train/images/a/x.jpg", "roboflow/train/images/b/x.jpg"]
    assert [len(r.rois) for r in records] == [1, 0]
    (data / "data.yaml").write_text("train: train.txt\nnames: {0: WBC}\n")
    with pytest.raises(DataError, match=r"data.yaml, field 'train': image list 'train.txt' not found"):
        list(read_yolo(data, SkipLog()))


def test_voc_devkit_layout_skips_difficult_objects_and_counts_them(tmp_path):
    year = tmp_path / "VOCdevkit" / "VOC2012"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (year / folder).mkdir(parents=True)
    objects = {"a": [("WBC", 0, (4, 5, 30, 40)), ("RBC", 1, (10, 10, 20, 20)), ("RBC", 0, (50, 50, 90, 90))],
               "b": [("Platelets", 0, (1, 1, 9, 9))]}
    for name, objs in objects.items():
        Image.new("RGB", (64, 64), (120, 30, 60)).save(year / "JPEGImages" / f"{name}.jpg")
        body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                       f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, d, b in objs)
        (year / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>64</width><height>64</height></size>{body}</annotation>")
    (year / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (year / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    skips = SkipLog()
    records = {r.image.name: r for r in read_voc(tmp_path, skips)}
    assert records["a.jpg"].image == year / "JPEGImages" / "a.jpg" and records["a.jpg"].labels == ("WBC",)
    assert records["a.jpg"].split == "train" and records["b.jpg"].split == "val"
    assert skips.dropped == {"voc_difficult": 1, "box_outside_image": 1}


def test_coco_boxes_outside_their_image_are_dropped_not_clipped(tmp_path):
    root = phantom.write_coco(tmp_path / "coco", 5, seed=0)
    path = root / "train" / "_annotations.coco.json"
    data = json.loads(path.read_text())
    image = data["images"][0]
    data["annotations"].append({"id": 99, "image_id": image["id"], "category_id": 1,
                                "bbox": [image["width"] - 5, 10, 40, 20]})
    path.write_text(json.dumps(data))
    skips = SkipLog()
    list(read_coco(root, skips))
    assert skips.dropped == {"box_outside_image": 1}


def test_every_question_answer_turn_is_a_record_and_the_json_is_read_record_by_record(tmp_path, monkeypatch):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    turns = [{"from": "human", "value": "What modality?"}, {"from": "gpt", "value": "CT."},
             {"from": "human", "value": "Which side is the nodule on?"}, {"from": "gpt", "value": "The left lower lobe."},
             {"from": "human", "value": "Dangling question"}]
    records = [{"id": f"p{i}", "image": ["a.png"], "conversations": turns, "modality": "Computed Tomography"}
               for i in range(50)]
    (tmp_path / "pmv.json").write_text(json.dumps(records, indent=2))
    monkeypatch.setattr(vqa_json, "CHUNK_CHARS", 64)  # many chunk boundaries inside records
    skips = SkipLog()
    read = list(read_pubmedvision(tmp_path / "pmv.json", tmp_path, skips))
    assert len(read) == 100 and skips.kept == 50 and skips.dropped == {"unpaired_turn": 50}
    assert [r.record_id for r in read[:2]] == ["pubmedvision/p0", "pubmedvision/p0#1"]
    assert read[1].question == "Which side is the nodule on?" and read[1].rois[0].text == "left lower lobe"


def test_json_errors_name_the_line(tmp_path):
    (tmp_path / "x.json").write_bytes(b'[\n{"id": 1},\n{"id": "\xff"}\n]')
    with pytest.raises(DataError, match=r"x.json: line 3: not UTF-8"):
        list(vqa_json.iter_json_array(tmp_path / "x.json"))
    (tmp_path / "y.json").write_text('[\n{"id": 1},\n{"id": 2,,}\n]')
    with pytest.raises(DataError, match=r"y.json: line 3: not valid JSON"):
        list(vqa_json.iter_json_array(tmp_path / "y.json"))


def test_unreadable_images_are_counted_with_their_path_in_the_card(tmp_path):
    root = phantom.write_coco(tmp_path / "coco", 5, seed=0)
    data = json.loads((root / "train" / "_annotations.coco.json").read_text())
    broken = root / "train" / data["images"][0]["file_name"]
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    recipe = write_recipe(tmp_path / "r.yaml", sources=[{"kind": "coco", "root": str(root)}])
    stats = build(load_config(recipe), progress=False)
    assert stats.filtered["unreadable_image"] == 1
    card = (tmp_path / "out" / "card" / "README.md").read_text()
    assert f"({broken}): unreadable_image" in card


def test_colour_sources_stay_colour_through_the_build(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "smear.png")
    records = [{"id": "s", "image": ["smear.png"], "modality": "Microscopy Images",
                "conversations": [{"from": "human", "value": "What cells are seen?"}, {"from": "gpt", "value": "Neutrophils."}]}]
    (tmp_path / "pmv.json").write_text(json.dumps(records))
    recipe = write_recipe(tmp_path / "r.yaml", sources=[{"kind": "pubmedvision", "json": str(tmp_path / "pmv.json")}])
    build(load_config(recipe), progress=False)
    rows = json.loads((tmp_path / "out" / "sft" / "sage_sft.json").read_text())
    assert rows and Image.open(tmp_path / "out" / "sft" / rows[0]["images"][0]).mode == "RGB"


def test_a_large_json_is_read_in_memory_bounded_by_one_record(tmp_path, monkeypatch):
    """PubMedVision's 722 MB file takes ~2.3 GB loaded whole (this 4.8 MB one, 15 MB); read record by
    record it takes a few chunks, whatever the file's size."""
    import tracemalloc

    record = {"image": ["images/a.png"], "modality": "Computed Tomography", "body_part": "Chest",
              "conversations": [{"from": "human", "value": "What is seen? " * 20}, {"from": "gpt", "value": "A nodule. " * 40}]}
    path = tmp_path / "big.json"
    with path.open("w", encoding="utf-8") as f:
        f.write("[" + ",\n".join(json.dumps({**record, "id": str(i)}) for i in range(6_000)) + "]")
    size = path.stat().st_size
    monkeypatch.setattr(vqa_json, "CHUNK_CHARS", 1 << 16)
    tracemalloc.start()
    n = sum(1 for _ in vqa_json.iter_json_array(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 6_000 and size > 4e6 and peak < 1e6, (size, peak)


def test_location_cues_keep_their_case_and_survive_text_whose_lower_case_is_longer():
    from medsage.data_gen.readers.vqa_json import location_cues

    text = "Mass in the Right Lower Lobe; the White Arrow pointing at the LEFT KIDNEY."
    assert location_cues(text) == ["Right Lower Lobe", "LEFT KIDNEY", "the White Arrow pointing at the LEFT KIDNEY"]
    assert len("İ".lower()) == 2  # lower-casing changes the length: the case-insensitive patterns run instead
    assert location_cues("İstanbul patient: Right Lower Lobe, arrows at the left hilum") == [
        "Right Lower Lobe", "left hilum", "arrows at the left hilum"]
