"""Readers on small files written in the real formats, including malformed rows and bad images."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsage.data_gen import phantom
from medsage.data_gen.readers import (
    location_cues,
    read_coco,
    read_deeplesion,
    read_llava,
    read_pubmedvision,
    read_voc,
    read_yolo,
    window_hu,
)
from medsage.data_gen.records import ROI, DataError, Record, SkipLog


def _rewrite_csv(path: Path, edit) -> None:
    rows = list(csv.DictReader(path.open()))
    fields = list(rows[0])
    edit(rows)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def test_deeplesion_reads_rows_boxes_windows_and_labels(tmp_path):
    root = phantom.write_deeplesion(tmp_path / "dl", 4, seed=1)
    rows = list(csv.DictReader((root / "DL_info.csv").open()))
    skips = SkipLog()
    records = list(read_deeplesion(root, skips))
    assert skips.seen == skips.kept == 4
    first = records[0]
    assert first.image == root / "Images_png" / "000001_01_01" / "100.png"
    assert first.rois[0].box == tuple(float(v) for v in rows[0]["Bounding_boxes"].split(","))
    assert first.labels == (phantom.LESION_TYPES[int(rows[0]["Coarse_lesion_type"])],)
    assert first.window == phantom.CT_WINDOW and first.modality == "CT"
    assert first.provenance.endswith("row 2")


def test_deeplesion_malformed_rows_are_counted_with_file_row_and_field(tmp_path):
    root = phantom.write_deeplesion(tmp_path / "dl", 6, seed=2)

    def corrupt(rows):
        rows[0]["Bounding_boxes"] = "12.5, 30"  # three numbers missing
        rows[1]["Coarse_lesion_type"] = "-1"  # unlabeled: kept, no label
        rows[2]["Possibly_noisy"] = "1"  # kept, flagged
        rows[3]["File_name"] = "000099_01_01_100.png"  # image absent
        rows[4]["DICOM_windows"] = "abc, 7"

    _rewrite_csv(root / "DL_info.csv", corrupt)
    skips = SkipLog()
    records = list(read_deeplesion(root, skips))
    assert skips.seen == 6 and skips.kept == len(records) == 3 and skips.skipped == 3
    assert skips.reasons == {"bad_field:Bounding_boxes": 1, "missing_image": 1, "bad_field:DICOM_windows": 1}
    assert any("row 2" in e and "Bounding_boxes" in e for e in skips.examples)
    assert records[0].labels == () and records[1].noisy


def test_deeplesion_preset_window_and_missing_columns(tmp_path):
    root = phantom.write_deeplesion(tmp_path / "dl", 1, seed=3)
    assert next(read_deeplesion(root, SkipLog(), window="lung")).window == (-1350.0, 150.0)
    with pytest.raises(ValueError, match="window"):
        next(read_deeplesion(root, SkipLog(), window="brain"))
    text = (root / "DL_info.csv").read_text().replace("Bounding_boxes,", "")
    (root / "DL_info.csv").write_text(text)
    with pytest.raises(DataError, match="Bounding_boxes"):
        list(read_deeplesion(root, SkipLog()))


def test_window_maps_hounsfield_units_to_8_bit():
    hu = np.array([-2000, -175, 50, 275, 4000], dtype=np.float32)
    out = window_hu((hu + 32768).astype(np.uint16), (-175, 275))
    assert out.tolist() == [0, 0, 128, 255, 255]


def test_coco_drops_root_category_and_bad_boxes_keeps_images(tmp_path):
    root = phantom.write_coco(tmp_path / "coco", 5, seed=0)
    path = root / "train" / "_annotations.coco.json"
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 99, "image_id": 0, "category_id": 1, "bbox": [1, 2, 0, 5]})
    data["annotations"].append({"id": 98, "image_id": 0, "category_id": 0, "bbox": [1, 2, 3, 5]})
    data["images"].append({"id": 77, "file_name": "gone_png.rf.0.jpg", "width": 10, "height": 10})
    path.write_text(json.dumps(data))
    skips = SkipLog()
    records = list(read_coco(root, skips))
    assert skips.seen == 6 and len(records) == 5 and skips.reasons == {"missing_image": 1}
    assert skips.dropped == {"degenerate_bbox": 1, "unknown_category": 1}
    assert {label for r in records for label in r.labels} <= {"mass", "nodule"}
    ann = data["annotations"][0]
    box = next(r for r in records if r.record_id.endswith(data["images"][0]["file_name"])).rois[0].box
    assert box == pytest.approx((ann["bbox"][0], ann["bbox"][1], ann["bbox"][0] + ann["bbox"][2], ann["bbox"][1] + ann["bbox"][3]))
    assert {r.split for r in records} == {"train", "val"}
    assert records[0].group == "roboflow/phantom_0000_png"


def test_coco_invalid_json_is_a_clear_error(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "_annotations.coco.json").write_text("{not json")
    with pytest.raises(DataError, match="_annotations.coco.json.*not valid JSON"):
        list(read_coco(tmp_path, SkipLog()))


def _yolo_export(root: Path) -> None:
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir(parents=True)
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['WBC', 'RBC']\n")
    Image.new("L", (200, 100), 80).save(root / "train" / "images" / "a_jpg.rf.1.jpg")
    Image.new("L", (200, 100), 80).save(root / "train" / "images" / "b_jpg.rf.2.jpg")
    (root / "train" / "images" / "c_jpg.rf.3.jpg").write_bytes(b"not an image")
    (root / "train" / "labels" / "a_jpg.rf.1.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1 0.3 0.3\n7 0.5 0.5 0.1 0.1\nx y\n")


def test_yolo_converts_normalised_centres_and_counts_bad_lines(tmp_path):
    _yolo_export(tmp_path)
    skips = SkipLog()
    records = {r.image.name: r for r in read_yolo(tmp_path, skips)}
    assert skips.seen == 3 and skips.reasons == {"unreadable_image": 1}
    assert skips.dropped == {"bad_label_line": 2}
    a = records["a_jpg.rf.1.jpg"]
    assert a.rois[0].label == "WBC" and a.rois[0].box == pytest.approx((80, 30, 120, 70))
    assert a.rois[1].label == "RBC" and a.rois[1].box == pytest.approx((20, 10, 60, 30))  # polygon's bbox
    assert records["b_jpg.rf.2.jpg"].rois == ()


def test_voc_reads_objects_and_reports_broken_xml(tmp_path):
    (tmp_path / "valid").mkdir()
    Image.new("L", (64, 64)).save(tmp_path / "valid" / "x.jpg")
    (tmp_path / "valid" / "x.xml").write_text(
        "<annotation><filename>x.jpg</filename><size><width>64</width><height>64</height></size>"
        "<object><name>fracture</name><bndbox><xmin>4</xmin><ymin>5</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>"
        "<object><name>fracture</name><bndbox><xmin>9</xmin><ymin>5</ymin><xmax>3</xmax><ymax>40</ymax></bndbox></object>"
        "</annotation>"
    )
    (tmp_path / "valid" / "broken.xml").write_text("<annotation><filename>")
    skips = SkipLog()
    records = list(read_voc(tmp_path, skips))
    assert len(records) == 1 and records[0].split == "val" and records[0].rois[0].box == (4, 5, 30, 40)
    assert skips.reasons == {"bad_field:xml": 1} and skips.dropped == {"degenerate_bbox": 1}
    assert any("broken.xml" in e for e in skips.examples)


def test_pubmedvision_and_llava_records_with_weak_rois(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    pmv = [
        {"id": "p1", "image": ["a.png"], "modality": "Computed Tomography", "body_part": "Chest",
         "conversations": [{"from": "human", "value": "What is seen?"},
                           {"from": "gpt", "value": "A nodule in the right upper lobe, see the white arrow pointing to it."}]},
        {"id": "p2", "image": ["a.png", "a.png"], "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"id": "p3", "image": ["a.png"], "conversations": [{"from": "human", "value": "only a question"}]},
        {"id": "p4", "image": ["missing.png"], "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
    ]
    (tmp_path / "pmv.json").write_text(json.dumps(pmv))
    skips = SkipLog()
    records = list(read_pubmedvision(tmp_path / "pmv.json", tmp_path, skips))
    assert [r.record_id for r in records] == ["pubmedvision/p1"]
    assert skips.reasons == {"multi_image": 1, "bad_field:conversations": 1, "missing_image": 1}
    r = records[0]
    assert r.modality == "CT" and r.answer.startswith("A nodule")
    assert [roi.text for roi in r.rois][0] == "right upper lobe" and all(not roi.strong for roi in r.rois)

    llava = [{"id": 5, "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nIs it normal?"},
                                                            {"from": "gpt", "value": "No."}]}]
    (tmp_path / "llava.json").write_text(json.dumps(llava))
    (rec,) = read_llava(tmp_path / "llava.json", tmp_path, SkipLog())
    assert rec.question == "Is it normal?" and rec.answer == "No." and rec.rois == ()
    (tmp_path / "bad.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DataError, match="bad.json.*JSON array"):
        list(read_llava(tmp_path / "bad.json", tmp_path, SkipLog()))


def test_location_cues_find_laterality_phrases_and_arrows():
    cues = location_cues("Opacity in the left lower lobe; the red arrow indicates a mass near the right kidney.")
    assert cues[:2] == ["left lower lobe", "right kidney"]
    assert any(c.startswith("the red arrow indicates") for c in cues)
    assert location_cues("No location words here.") == []


def test_phantom_benchmark_is_slake_format_balanced_and_deterministic(tmp_path):
    a = phantom.write_phantom_benchmark(tmp_path / "a", 24, seed=3)
    b = phantom.write_phantom_benchmark(tmp_path / "b", 24, seed=3)
    items = json.loads((a / "test.json").read_text())
    assert (a / "test.json").read_text() == (b / "test.json").read_text()
    assert len(items) == 24 and {"img_id", "img_name", "question", "answer", "answer_type", "q_lang",
                                 "modality", "content_type", "location"} <= set(items[0])
    closed = [i["answer"] for i in items if i["answer_type"] == "CLOSED"]
    assert len(closed) == 16 and closed.count("Yes") == closed.count("No") == 8
    assert all(Image.open(a / "imgs" / i["img_name"]).size == (phantom.CT_SIZE, phantom.CT_SIZE) for i in items)
    assert {i["answer"] for i in items if i["answer_type"] == "OPEN"} <= {"Lung", "Liver", "Kidney", "Bone"}


def test_phantom_lesions_are_visible_where_the_annotation_says():
    import random

    for seed in range(12):
        pixels, lesion = phantom.ct_slice(random.Random(seed))
        hu = pixels.astype(float) - 32768
        cy, cx = int(round(lesion.cy)), int(round(lesion.cx))
        core = hu[cy - 1:cy + 2, cx - 1:cx + 2].mean()
        assert abs(core - lesion.hu) < 40, (seed, core, lesion)


def test_phantom_lesions_stand_out_at_the_quickstart_image_budget():
    """At 112x112 (the quickstart's processor budget) every lesion still spans several pixels and
    differs from the organ around it by a clear grey-level margin: issue 7's probe found that a tiny
    model learns nothing from lesions that shrink to 1-4 px or match the tissue next to them."""
    import random

    small = 112
    for seed in range(40):
        pixels, lesion = phantom.ct_slice(random.Random(seed))
        grey = np.asarray(phantom.ct_to_8bit(pixels).resize((small, small), Image.Resampling.BICUBIC), dtype=float)
        k = small / phantom.CT_SIZE
        assert lesion.radius * k >= 4.0, (seed, lesion.radius)
        cx, cy, r = lesion.cx * k, lesion.cy * k, lesion.radius * k
        yy, xx = np.mgrid[0:small, 0:small]
        dist = np.hypot(xx - cx, yy - cy)
        inside = grey[dist <= r - 1.5].mean()
        ring = grey[(dist >= r + 1.5) & (dist <= r + 3.0)].mean()
        assert abs(inside - ring) >= 40, (seed, lesion.label, inside, ring)


def test_phantom_patients_never_hash_alike():
    """Patient variation (habitus, position, shading) keeps distinct patients apart in the leakage
    check's perceptual hash, so a phantom training set is never reported as benchmark leakage."""
    import itertools
    import random

    from medsage.data_gen.leakage import dhash

    rng = random.Random(7)
    hashes = [int.from_bytes(dhash(phantom.ct_to_8bit(phantom.ct_slice(rng)[0])), "big") for _ in range(30)]
    closest = min(bin(a ^ b).count("1") for a, b in itertools.combinations(hashes, 2))
    assert closest > 20  # data_gen's LeakageConfig default distance


def test_record_json_round_trips_and_reads_a_work_folder_of_an_older_version(tmp_path):
    record = Record("r", "coco", tmp_path / "a.png", "CT", rois=(ROI("liver", (1.0, 2.0, 3.0, 4.0)),),
                    labels=("liver",), window=(-160.0, 240.0), meta={"k": 1})
    assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record
    older = {**record.to_json(), "size": [512, 512]}  # a field this version no longer has
    assert Record.from_json(older) == record
