"""Loaders on the layouts users have, SLAKE in both languages, MMMU open questions, and fallback
answers counted in the report (issue 13); every fixture is written here in the real on-disk format."""

import csv

import pytest
from eval_formats import (
    hf_vqa_columns,
    png_bytes,
    write_hf_vqa,
    write_mmmu,
    write_omnimedvqa,
    write_pmc_vqa,
    write_saved_hf,
    write_slake,
)

from medsage.eval.benchmarks import BenchmarkFormatError, Item, load_benchmark, load_image
from medsage.eval.report import write_reports
from medsage.eval.scoring import score_item, summarize
from medsage.reward_fns.answers import AnswerType
from medsage.reward_fns.rewards import accuracy_reward, compute_score
from medsage.reward_fns.scaffold import Scaffold

ROWS = [("Is there a fracture?", "yes"), ("Which organ is shown?", "Liver")]


def lvkc(answer: str) -> str:
    return Scaffold("Left upper quadrant region.", "Hyperdense fluid.", "Blood is dense.", "So it is.", answer).render()


# ---------------------------------------------------------------------------------------------
# loader layouts


@pytest.mark.parametrize(
    "written, asked",
    [("validation", "val"), ("val", "validation"), ("validation", "validation"), ("valid", "val"), ("test", "test")],
)
def test_pathvqa_split_names_val_and_validation(tmp_path, written, asked):
    write_hf_vqa(tmp_path, ROWS, split=written)
    assert [i.answer for i in load_benchmark("pathvqa", tmp_path, split=asked)] == ["yes", "Liver"]


def test_pathvqa_missing_split_names_the_aliases_tried(tmp_path):
    write_hf_vqa(tmp_path, ROWS, split="train")
    with pytest.raises(BenchmarkFormatError, match=r"'val', 'validation'"):
        load_benchmark("pathvqa", tmp_path, split="val")


@pytest.mark.parametrize("name", ["vqa_rad", "pathvqa"])
@pytest.mark.parametrize("splits, asked", [(("train", "validation", "test"), "val"), (("test",), "test"), (None, "test")])
def test_hf_datasets_saved_with_save_to_disk(tmp_path, name, splits, asked):
    write_saved_hf(tmp_path, hf_vqa_columns(ROWS), splits)
    items = load_benchmark(name, tmp_path, split=asked)
    assert [(i.answer, i.closed) for i in items] == [("yes", True), ("Liver", False)]
    assert items[1].images[0] == png_bytes(11) and load_image(items[1].images[0]).size == (64, 64)


def test_save_to_disk_without_the_split_lists_the_saved_ones(tmp_path):
    write_saved_hf(tmp_path, hf_vqa_columns(ROWS), ("train",))
    with pytest.raises(BenchmarkFormatError, match=r"dataset_dict\.json: no split 'test'.*\['train'\]"):
        load_benchmark("vqa_rad", tmp_path)


def test_mmmu_subject_saved_with_save_to_disk(tmp_path):
    image = {"bytes": png_bytes(41), "path": None}
    columns = {"id": ["validation_Pharmacy_1"], "question": ["<image 1> Dose in mg?"], "options": ["[]"],
               "answer": ["25"], "image_1": [image], "question_type": ["open"], "subfield": ["Pharmacology"]}
    write_saved_hf(tmp_path / "Pharmacy", columns, ("validation",))
    (item,) = load_benchmark("mmmu_med", tmp_path, subjects=("Pharmacy",))
    assert (item.answer, item.subject, item.subfield, item.rules) == ("25", "Pharmacy", "Pharmacology", "mmmu")


CHOICES = ["CT", "MRI", "X-ray", "Ultrasound"]


@pytest.mark.parametrize("folders", [("figures",), ("images",), ("figures", "images")])
def test_pmc_vqa_images_in_figures_then_images(tmp_path, folders):
    for folder in folders:
        write_pmc_vqa(tmp_path, [("What modality?", CHOICES, "B")], image_dir=folder)
    (item,) = load_benchmark("pmc_vqa", tmp_path)
    assert item.images[0].split("/")[-2] == folders[0]


def test_pmc_vqa_missing_image_names_both_folders(tmp_path):
    write_pmc_vqa(tmp_path, [("What modality?", CHOICES, "B")], image_dir="elsewhere")
    with pytest.raises(BenchmarkFormatError, match=r"row 0, field 'Figure_path'.*figures.*images"):
        load_benchmark("pmc_vqa", tmp_path)
    assert load_benchmark("pmc_vqa", tmp_path, image_dir="elsewhere")[0].answer == "B"


def test_omnimedvqa_entry_keyed_modality(tmp_path):
    write_omnimedvqa(tmp_path, "Chest CT Scan", [
        {"question": "What modality?", "options": ["CT", "MRI"], "gt_answer": "CT", "modality": "CT(Computed Tomography)"},
        {"question": "Which organ?", "options": ["Lung", "Liver"], "gt_answer": "Lung", "modality_type": "X-Ray"},
    ])
    assert [i.modality for i in load_benchmark("omnimedvqa", tmp_path)] == ["CT(Computed Tomography)", "X-Ray"]


# ---------------------------------------------------------------------------------------------
# SLAKE in both languages


def _slake_rows():
    return [
        {"question": "Which organ is abnormal?", "answer": "Liver", "answer_type": "OPEN", "q_lang": "en"},
        {"question": "Is this a CT or MRI?", "answer": "MRI", "answer_type": "CLOSED", "q_lang": "en"},
        {"question": "Is there a lesion?", "answer": "Yes", "answer_type": "CLOSED", "q_lang": "en"},
        {"question": "哪个器官异常?", "answer": "肝脏", "answer_type": "OPEN", "q_lang": "zh"},
        {"question": "图片中包含肝脏吗?", "answer": "不包含", "answer_type": "CLOSED", "q_lang": "zh"},
    ]


@pytest.mark.parametrize("options, count", [({}, 3), ({"language": "en"}, 3), ({"language": "zh"}, 2),
                                            ({"language": "both"}, 5)])
def test_slake_language_en_zh_both(tmp_path, options, count):
    write_slake(tmp_path, _slake_rows())
    items = load_benchmark("slake", tmp_path, **options)
    assert len(items) == count and len({i.id for i in items}) == count


@pytest.mark.parametrize("options, message", [({"language": "fr"}, "options.language must be one of en, zh, both; got 'fr'"),
                                              ({"language": "EN"}, "options.language"),
                                              ({"languages": "en"}, r"unknown option\(s\) \['options.languages'\]"),
                                              ({"lang": "en"}, r"\['options.lang'\]; accepted: \['language'")])
def test_slake_bad_language_is_an_error_naming_the_recipe_key(tmp_path, options, message):
    write_slake(tmp_path, _slake_rows())
    with pytest.raises(BenchmarkFormatError, match=message):
        load_benchmark("slake", tmp_path, **options)


def test_slake_closed_forms_are_scored_as_their_kind(tmp_path):
    write_slake(tmp_path, _slake_rows())
    open_en, either, yes_no, open_zh, closed_zh = load_benchmark("slake", tmp_path, language="both")
    assert [i.kind for i in (open_en, either, yes_no, open_zh, closed_zh)] == [
        AnswerType.OPEN, AnswerType.EITHER_OR, AnswerType.YES_NO, AnswerType.OPEN, AnswerType.YES_NO]
    cases = [(either, "MRI", True), (either, "It is an MRI scan.", True), (either, "CT", False),
             (either, "CT or MRI", False), (closed_zh, "不包含", True), (closed_zh, "没有", True), (closed_zh, "包含", False),
             (open_zh, "肝脏", True), (open_zh, "脾脏", False)]
    for item, answer, right in cases:
        assert score_item(item, lvkc(answer)).correct is right, answer
    assert not score_item(either, lvkc("CT or MRI")).answered


# ---------------------------------------------------------------------------------------------
# MMMU-Med open questions


def test_mmmu_reads_question_type_and_subfield_and_not_img_type(tmp_path):
    write_mmmu(tmp_path, "Pharmacy", [("<image 1> Dose in mg?", [], "25", 1)], subfield="Pharmacology")
    write_mmmu(tmp_path, "Clinical_Medicine", [("<image 1> Which?", ["Infarct", "Tumour"], "B", 1)], subfield="Pathology")
    open_q, mc = load_benchmark("mmmu_med", tmp_path, subjects=("Pharmacy", "Clinical_Medicine"))
    assert (open_q.question_type, open_q.subfield, open_q.subject, open_q.rules) == ("open", "Pharmacology", "Pharmacy", "mmmu")
    assert (mc.question_type, mc.subfield, mc.rules) == ("multiple-choice", "Pathology", "medsage")
    assert open_q.modality == mc.modality == ""  # img_type "['Microscopic Images']" is not a modality
    scored = [score_item(open_q, lvkc("The dose is 25.0 mg")), score_item(mc, lvkc("B"))]
    slices = {(s.by, s.key): s.accuracy.value for s in summarize(scored, n_resamples=20)}
    assert slices[("subfield", "Pharmacology")] == 1.0 and slices[("subject", "Clinical_Medicine")] == 1.0
    assert ("question_type", "open") in slices and not any(by == "modality" for by, _ in slices)


@pytest.mark.parametrize(
    "answer, reference, right",
    [("25.0", "25", True), ("The answer is 24.999", "25", True), ("so it is 2,500", "2500", True),
     ("The answer is 26", "25", False), ("Therefore 0.5", "['1/2', '0.5']", True), ("hepatotoxicity", "Hepatotoxicity", True)],
)
def test_mmmu_open_questions_scored_by_mmmu_rules(answer, reference, right):
    item = Item("mmmu_med", "m1", "Dose?", reference, (), closed=False, rules="mmmu")
    assert score_item(item, lvkc(answer)).correct is right


# ---------------------------------------------------------------------------------------------
# fallbacks: evaluation reads them and says how many; the reward requires <ANSWER>


def test_fallback_answers_are_scored_and_counted_per_benchmark(tmp_path):
    def yes(i: int) -> Item:
        return Item("vqa_rad", f"y{i}", "Is there a fracture?", "yes", ())

    def mc(i: int) -> Item:
        return Item("pmc_vqa", f"m{i}", "Which?", "C", (), options={"A": "CT", "B": "MRI", "C": "Xray"})

    responses = [(yes(0), lvkc("Yes")), (yes(1), "Thinking...\nThe answer is yes."), (yes(2), "no tags at all\nYes"),
                 (mc(0), "Reasoning.\n\\boxed{C}"), (mc(1), lvkc("C")), (mc(2), "<CON>hm</CON><ANSWER></ANSWER>")]
    scored = [score_item(item, response) for item, response in responses]
    assert [s.extracted_by for s in scored] == ["answer_tag", "answer_is", "final_line", "boxed", "answer_tag", ""]
    assert [s.correct for s in scored] == [True, True, True, True, True, False]
    assert [s.fallback for s in scored] == [False, True, True, True, False, False]
    strict = [score_item(item, response, fallback=False).correct for item, response in responses]
    assert strict == [True, False, False, False, True, False]
    files = write_reports(summarize(scored, n_resamples=20), "ours", tmp_path)
    rows = {(r["benchmark"], r["by"], r["key"]): r for r in csv.DictReader(files.breakdown_csv.open())}
    assert rows[("vqa_rad", "all", "all")]["fallback_n"] == "2" and rows[("pmc_vqa", "all", "all")]["fallback_n"] == "1"
    table1 = {r["benchmark"]: r["fallback_n"] for r in csv.DictReader(files.table1_csv.open()) if r["group"] == "ours"}
    assert table1 == {"vqa_rad": "2", "pmc_vqa": "1"}
    assert "VQA-RAD 2" in files.table1_md.read_text()


def test_reward_requires_the_answer_stage_unless_switched():
    plain = "The lung is clear.\nThe answer is no."
    assert accuracy_reward(plain, "no") == 0.0
    assert accuracy_reward(plain, "no", require_answer_tag=False) == 1.0
    assert accuracy_reward(lvkc("No"), "no") == 1.0
    assert compute_score("slake", plain, "no")["accuracy"] == 0.0
    assert compute_score("slake", plain, "no", require_answer_tag=False)["accuracy"] == 1.0
    assert compute_score("slake", lvkc("Not normal"), "no", {"question": "Is the liver normal?"})["accuracy"] == 1.0



# ---------------------------------------------------------------------------------------------
# beyond the suites: CircularEval and repeated sampling

FOUR = ["Tendonitis", "Muscle strain", "Flexor pathology", "Nerve compression"]


def _always_a(item: Item) -> str:
    return lvkc("A")  # a model that favours the first position


def _knows(item: Item) -> str:
    return lvkc(item.options[item.answer])  # a model that knows the answer, wherever it is listed


def test_circular_eval_exposes_a_position_biased_model(tmp_path):
    write_pmc_vqa(tmp_path, [(f"Question {i}?", FOUR, "B" if i == 3 else "A") for i in range(4)])
    plain = load_benchmark("pmc_vqa", tmp_path)
    circular = load_benchmark("pmc_vqa", tmp_path, circular=True)
    assert len(circular) == 16 and circular[1].id == "pmc_vqa-0|c1|s0"
    assert circular[1].options == dict(zip("ABCD", FOUR[1:] + FOUR[:1])) and circular[1].answer == "D"

    def accuracy(items, model):
        (overall, *_) = summarize([score_item(i, model(i)) for i in items], n_resamples=50)
        return overall

    assert accuracy(plain, _always_a).accuracy.value == 0.75
    biased = accuracy(circular, _always_a)
    assert biased.accuracy.value == 0.0 and biased.n == 4 and biased.circular
    assert accuracy(circular, _knows).accuracy.value == accuracy(plain, _knows).accuracy.value == 1.0


def test_repeated_sampling_gives_mean_accuracy_and_pass_at_k_with_intervals(tmp_path):
    write_pmc_vqa(tmp_path, [("Q0?", FOUR, "C"), ("Q1?", FOUR, "C")])
    items = load_benchmark("pmc_vqa", tmp_path, samples=3)
    assert [i.id for i in items[:3]] == ["pmc_vqa-0|s0", "pmc_vqa-0|s1", "pmc_vqa-0|s2"]
    answers = {"pmc_vqa-0": ["C", "B", "A"], "pmc_vqa-1": ["C", "C", "C"]}  # 1/3 and 3/3 right
    scored = [score_item(i, lvkc(answers[i.base_id][i.sample])) for i in items]
    overall = summarize(scored, n_resamples=200)[0]
    assert overall.n == 2 and overall.samples == 3
    assert overall.accuracy.value == pytest.approx((1 / 3 + 1) / 2)
    assert overall.pass_at_k.value == 1.0 and overall.pass_at_k.low <= 1.0 <= overall.pass_at_k.high
    assert overall.accuracy.low < overall.accuracy.value < overall.accuracy.high
    files = write_reports([overall], "ours", tmp_path / "out")
    row = next(csv.DictReader(files.breakdown_csv.open()))
    assert (row["samples"], row["pass_at_k"]) == ("3", "100.0")
    assert "pass@3 100.0" in files.table1_md.read_text()


def test_circular_and_samples_together_and_bad_sample_counts(tmp_path):
    write_pmc_vqa(tmp_path, [("Q0?", FOUR, "A")])
    items = load_benchmark("pmc_vqa", tmp_path, circular=True, samples=2)
    assert len(items) == 8 and len({i.id for i in items}) == 8
    scored = [score_item(i, _knows(i)) for i in items]
    overall = summarize(scored, n_resamples=20)[0]
    assert (overall.n, overall.samples, overall.accuracy.value, overall.pass_at_k.value) == (1, 2, 1.0, 1.0)
    with pytest.raises(BenchmarkFormatError, match="options.samples must be at least 1"):
        load_benchmark("pmc_vqa", tmp_path, samples=0)
