"""Each loader on files written in the benchmark's public format; bad files give errors naming file/row/field."""

import base64
import json

import pytest
from eval_formats import png_bytes, write_hf_vqa, write_mmmu, write_omnimedvqa, write_pmc_vqa, write_slake

from medsage.eval.benchmarks import (
    MMMU_MEDICAL_SUBJECTS,
    BenchmarkFormatError,
    load_benchmark,
    load_image,
)
from medsage.eval.backends import to_openai_messages
from medsage.eval.prompts import first_turn
from medsage.reward_fns.answers import AnswerType


@pytest.mark.parametrize("name", ["vqa_rad", "pathvqa"])
def test_hf_parquet_loader(tmp_path, name):
    write_hf_vqa(tmp_path, [("Is there a fracture?", "yes"), ("Which organ is shown?", "Liver"), ("Is it normal?", "No")])
    items = load_benchmark(name, tmp_path)
    assert [i.answer for i in items] == ["yes", "Liver", "No"]
    assert [i.closed for i in items] == [True, False, True]
    assert [i.kind for i in items] == [AnswerType.YES_NO, AnswerType.OPEN, AnswerType.YES_NO]
    assert load_image(items[1].images[0]).size == (64, 64)
    assert len({i.id for i in items}) == 3 and all(i.benchmark == name for i in items)


def test_hf_parquet_missing_column_names_it(tmp_path):
    import pandas as pd

    (tmp_path / "data").mkdir()
    pd.DataFrame({"question": ["q"], "answer": ["yes"]}).to_parquet(tmp_path / "data" / "test-0.parquet")
    with pytest.raises(BenchmarkFormatError, match=r"test-0\.parquet.*missing column.*'image'"):
        load_benchmark("vqa_rad", tmp_path)


def test_hf_parquet_missing_split(tmp_path):
    write_hf_vqa(tmp_path, [("q", "yes")], split="train")
    with pytest.raises(BenchmarkFormatError, match="no 'test-\\*.parquet'"):
        load_benchmark("vqa_rad", tmp_path)


def _slake_rows():
    return [
        {"question": "Which organ is abnormal?", "answer": "Liver", "answer_type": "OPEN", "q_lang": "en"},
        {"question": "Is this a CT image?", "answer": "Yes", "answer_type": "CLOSED", "q_lang": "en", "modality": "MRI"},
        {"question": "哪个器官异常?", "answer": "肝脏", "answer_type": "OPEN", "q_lang": "zh"},
    ]


def test_slake_loader_english_by_default_and_chinese_selectable(tmp_path):
    write_slake(tmp_path, _slake_rows())
    english = load_benchmark("slake", tmp_path)
    assert [(i.answer, i.closed, i.modality) for i in english] == [("Liver", False, "CT"), ("Yes", True, "MRI")]
    assert english[0].id == "slake-1000" and english[0].question_type == "Organ"
    assert load_image(english[0].images[0]).mode == "RGB"
    chinese = load_benchmark("slake", tmp_path, language="zh")
    assert [i.answer for i in chinese] == ["肝脏"]


def test_phantom_is_slake_format_under_its_own_name(tmp_path):
    write_slake(tmp_path, _slake_rows()[:2])
    items = load_benchmark("phantom", tmp_path, limit=1)
    assert len(items) == 1 and items[0].benchmark == "phantom" and items[0].id == "phantom-1000"


def test_slake_errors_name_file_row_field(tmp_path):
    with pytest.raises(BenchmarkFormatError, match="test.json"):
        load_benchmark("slake", tmp_path)
    write_slake(tmp_path, _slake_rows())
    rows = json.loads((tmp_path / "test.json").read_text())
    del rows[1]["answer_type"]
    (tmp_path / "test.json").write_text(json.dumps(rows))
    with pytest.raises(BenchmarkFormatError, match=r"row 1: missing field 'answer_type'"):
        load_benchmark("slake", tmp_path)
    (tmp_path / "imgs" / "xmlab0" / "source.jpg").unlink()
    with pytest.raises(BenchmarkFormatError, match=r"row 0, field 'img_name'.*not found"):
        load_benchmark("slake", tmp_path)


def test_pmc_vqa_loader_strips_letter_prefixes_and_accepts_letter_or_text_answers(tmp_path):
    write_pmc_vqa(
        tmp_path,
        [
            ("What modality is this?", ["CT", "MRI", "X-ray", "Ultrasound"], "B"),
            ("Where is the lesion?", ["Left lung", "Right lung", "Liver", "Spleen"], "Liver"),
            ("What stain?", ["H&E", "PAS", "Gram", "Trichrome"], " D:Trichrome"),
        ],
    )
    items = load_benchmark("pmc_vqa", tmp_path)
    assert items[0].options == {"A": "CT", "B": "MRI", "C": "X-ray", "D": "Ultrasound"}
    assert [i.answer for i in items] == ["B", "C", "D"]
    assert all(i.kind is AnswerType.MULTIPLE_CHOICE and i.closed for i in items)


def test_pmc_vqa_answer_naming_no_option_is_an_error(tmp_path):
    write_pmc_vqa(tmp_path, [("q?", ["CT", "MRI", "X-ray", "US"], "PET")])
    with pytest.raises(BenchmarkFormatError, match=r"test_2\.csv, row 0, field 'Answer': 'PET'"):
        load_benchmark("pmc_vqa", tmp_path)


def test_mmmu_med_loader_reads_subject_folders_options_and_all_images(tmp_path):
    write_mmmu(tmp_path, "Clinical_Medicine", [("<image 1> What is shown? <image 2>", ["Infarct", "Tumour", "Abscess"], "B", 2)])
    write_mmmu(tmp_path, "Pharmacy", [("<image 1> Name the dose in mg.", [], "25", 1)])
    write_mmmu(tmp_path, "Art", [("not medical", ["a", "b"], "A", 1)])
    for subject in ("Basic_Medical_Science", "Diagnostics_and_Laboratory_Medicine", "Public_Health"):
        write_mmmu(tmp_path, subject, [("<image 1> Which?", ["x", "y"], "y", 1)])
    items = load_benchmark("mmmu_med", tmp_path)
    by_subject = {i.subject: i for i in items}
    assert sorted(by_subject) == sorted(MMMU_MEDICAL_SUBJECTS)
    assert by_subject["Public_Health"].answer == "B"  # the answer given as option text
    mc, open_q = by_subject["Clinical_Medicine"], by_subject["Pharmacy"]
    assert mc.options == {"A": "Infarct", "B": "Tumour", "C": "Abscess"} and mc.answer == "B" and len(mc.images) == 2
    assert not open_q.options and not open_q.closed and open_q.kind is AnswerType.OPEN


def test_mmmu_image_markers_agree_with_the_images_the_backends_send(tmp_path):
    question = "Which option shows the lesion of <image 2>? Compare <image 1>."
    write_mmmu(tmp_path, "Clinical_Medicine", [(question, ["<image 3>", "Neither", "<image 2> again"], "A", 4)])
    (item,) = load_benchmark("mmmu_med", tmp_path, subjects=("Clinical_Medicine",))
    assert item.images == tuple(png_bytes(40 + n) for n in (2, 1, 3, 4))  # by first mention; unmentioned image_4 last
    assert item.question == "Which option shows the lesion of (image 1)? Compare (image 2)."
    assert item.options == {"A": "(image 3)", "B": "Neither", "C": "(image 1) again"} and item.answer == "A"
    for style in ("lvkc", "plain"):
        (turn,) = first_turn(item, style)
        assert turn.images == item.images and "<image" not in turn.text and "A. (image 3)" in turn.text
        parts = to_openai_messages([turn])[0]["content"]
        sent = [base64.b64decode(p["image_url"]["url"].split(",", 1)[1]) for p in parts[:-1]]
        assert sent == list(item.images) and parts[-1] == {"type": "text", "text": turn.text}


def test_mmmu_marker_without_its_image_names_row_and_field(tmp_path):
    write_mmmu(tmp_path, "Pharmacy", [("<image 1> and <image 3>?", ["a", "b"], "A", 2)])
    with pytest.raises(BenchmarkFormatError, match=r"row 0, field 'image_3': the text refers to <image 3>"):
        load_benchmark("mmmu_med", tmp_path, subjects=("Pharmacy",))


def test_mmmu_missing_subject_folder_is_named(tmp_path):
    write_mmmu(tmp_path, "Clinical_Medicine", [("q", ["a", "b"], "A", 1)])
    with pytest.raises(BenchmarkFormatError, match="Basic_Medical_Science"):
        load_benchmark("mmmu_med", tmp_path)


def test_omnimedvqa_loader_maps_option_text_answers_to_letters(tmp_path):
    write_omnimedvqa(
        tmp_path,
        "ACRIMA",
        [
            {"question": "What modality?", "options": ["CT", "Fundus photography"], "gt_answer": "Fundus photography",
             "modality_type": "Fundus Photography"},
            {"question": "Which organ?", "options": ["Liver", "Kidney", "Heart", "Lung"], "gt_answer": "Heart",
             "question_type": "Anatomy Identification"},
        ],
    )
    items = load_benchmark("omnimedvqa", tmp_path)
    assert [i.answer for i in items] == ["B", "C"]
    assert items[0].options == {"A": "CT", "B": "Fundus photography"}
    assert items[0].modality == "Fundus Photography" and items[1].question_type == "Anatomy Identification"
    assert items[0].id == "omnimedvqa-ACRIMA_0"


def test_omnimedvqa_missing_folder(tmp_path):
    with pytest.raises(BenchmarkFormatError, match="Open-access"):
        load_benchmark("omnimedvqa", tmp_path)


def test_unknown_benchmark_lists_known_names(tmp_path):
    with pytest.raises(BenchmarkFormatError, match="known: .*vqa_rad"):
        load_benchmark("vqa-rad2", tmp_path)



def test_embedded_images_are_sent_with_their_own_type():
    """A benchmark's embedded JPEG goes out as image/jpeg, not labelled PNG (one data-URL helper for all)."""
    from io import BytesIO

    from PIL import Image

    from medsage.eval.prompts import Turn

    jpeg = BytesIO()
    Image.new("RGB", (8, 8), "gray").save(jpeg, format="JPEG")
    parts = to_openai_messages([Turn("user", "What is shown?", (jpeg.getvalue(), png_bytes(3)))])[0]["content"]
    assert [p["image_url"]["url"].split(";", 1)[0] for p in parts[:2]] == ["data:image/jpeg", "data:image/png"]
