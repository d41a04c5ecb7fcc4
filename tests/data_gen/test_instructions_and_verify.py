"""Question building, balanced sampling, the ANSWER stage and the verification rules."""

from pathlib import Path

import numpy as np

from medsage.data_gen.instructions import (
    FilterConfig,
    InstructionConfig,
    TASK_TYPES,
    Materialised,
    QuestionBuilder,
    balance,
    label_problem,
    load_question_templates,
    materialise,
    region_phrase,
)
from medsage.data_gen.prompts import lvkc_instruction
from medsage.data_gen.records import ROI, Record
from medsage.data_gen.trajectories import OfflineGenerator, answer_stage, knowledge_base, knowledge_text, setting
from medsage.data_gen.verify import leaks, parse_verdict, rule_reasons
from medsage.reward_fns.answers import match_answer
from medsage.reward_fns.scaffold import Scaffold

LABELS = ["bone", "kidney", "liver", "lung", "pelvis"]


def _record(i: int, label: str) -> Record:
    return Record(record_id=f"deeplesion/{i}", source="deeplesion", image=Path("x.png"), modality="CT",
                  rois=(ROI(label, (10.0, 10.0, 40.0, 40.0)),), labels=(label,))


def _samples(n: int = 40):
    builder = QuestionBuilder(InstructionConfig(per_record=2), {"deeplesion": LABELS}, load_question_templates(), seed=0)
    image = Materialised("images/x.png", 100, 100)
    return [s for i in range(n) for s in builder.samples(_record(i, LABELS[i % 5]), image)]


def test_questions_are_balanced_answerable_and_use_the_label_space():
    samples = _samples()
    by_task = {}
    for s in samples:
        by_task.setdefault(s.task_type, []).append(s)
    counts = {k: len(v) for k, v in by_task.items()}
    assert set(counts) == set(TASK_TYPES) and sum(counts.values()) == 80 and min(counts.values()) >= 12, counts
    assert all(len({s.task_type for s in samples if s.record is r.record}) == 2 for r in samples)  # distinct per record
    for s in by_task["multiple_choice"]:
        assert len(s.options) == 4 and s.options[s.answer].lower() == s.target and set(s.leak_terms) == {s.target}
        assert {o.lower() for o in s.options.values()} <= set(LABELS)
    answers = [s.answer for s in by_task["yes_no"]]
    assert 5 <= answers.count("Yes") <= 15 and all(a in ("Yes", "No") for a in answers)
    for s in by_task["yes_no"]:
        assert (s.answer == "Yes") == (s.target == s.record.labels[0]) and s.target in s.question
    assert {s.answer for s in by_task["localization"]} == {"upper left"}


def test_sample_ids_and_task_types_come_from_content_not_position():
    """The same record yields the same samples wherever it is read; an edit changes only its own."""
    builder = QuestionBuilder(InstructionConfig(per_record=2), {"deeplesion": LABELS}, load_question_templates(), seed=0)
    image = Materialised("images/x.png", 100, 100)
    forward = {r.record_id: builder.samples(r, image) for r in (_record(i, LABELS[i % 5]) for i in range(12))}
    backward = {r.record_id: builder.samples(r, image) for r in (_record(i, LABELS[i % 5]) for i in reversed(range(12)))}
    assert forward == backward
    edited = Record(record_id="deeplesion/3", source="deeplesion", image=Path("x.png"), modality="CT",
                    rois=(ROI(LABELS[3], (12.0, 10.0, 40.0, 40.0)),), labels=(LABELS[3],))
    new_ids = {s.sample_id for s in builder.samples(edited, image)}
    assert new_ids.isdisjoint(s.sample_id for samples in forward.values() for s in samples)


def test_half_yes_no_task_list_gives_every_record_one_yes_no_question():
    config = InstructionConfig(per_record=2, task_types=("yes_no", "open", "yes_no", "localization", "yes_no", "multiple_choice"))
    builder = QuestionBuilder(config, {"deeplesion": LABELS}, load_question_templates(), seed=0)
    for i in range(20):
        tasks = [s.task_type for s in builder.samples(_record(i, LABELS[i % 5]), Materialised("images/x.png", 100, 100))]
        assert tasks.count("yes_no") == 1 and len(tasks) == 2


def test_colour_images_stay_colour_and_grey_ones_grey(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "smear.png")
    grey = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=2)).save(tmp_path / "xray.png")
    for name, mode in (("smear", "RGB"), ("xray", "L")):
        image = materialise(Record(name, "x", tmp_path / f"{name}.png", "X"), tmp_path / "ds", FilterConfig())
        assert Image.open(tmp_path / "ds" / image.path).mode == mode


def test_answer_stage_is_credited_by_the_shared_matcher():
    for s in _samples():
        assert match_answer(answer_stage(s), s.answer, s.options or None), (s.task_type, answer_stage(s))


def test_knowledge_base_never_names_its_own_label():
    for s in _samples():
        for template in ("anatomic", "morphologic", "differential"):
            text = knowledge_text(s, template)
            assert not any(leaks(text, term) for term in s.leak_terms), (s.target, template, text)
    assert all(set(entry) == {"anatomic", "morphologic", "differential"} for entry in knowledge_base().values())


def test_offline_stages_state_what_was_seen_and_yes_no_conclusions_compare_it(tmp_path):
    """VISUAL names the tissue around the annotated finding (never the finding), and a yes/no CON sets
    it beside the tissue of the finding asked about, so a "No" is reasoned from the image, not the question."""
    import asyncio
    import random

    from PIL import Image

    from medsage.reward_fns.scaffold import parse

    (tmp_path / "images").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100), dtype=np.uint8)).save(tmp_path / "images/x.png")
    generator = OfflineGenerator(tmp_path, negatives_per_sample=0)
    checked = {"Yes": 0, "No": 0, "multiple_choice": 0}
    for s in _samples():
        if s.task_type not in ("yes_no", "multiple_choice"):
            continue
        assert setting(s.finding) and setting(s.target), s  # every label of LABELS has a setting
        text = asyncio.run(generator.generate(s, [(s.record.rois[0], "anatomic")], random.Random(0)))[0].text
        stages = parse(text)
        assert f"set within {setting(s.finding)}" in stages.get("VISUAL"), text
        assert rule_reasons(text, s) == [], (rule_reasons(text, s), text)
        restated = f"The question is whether a {s.target} finding is present."
        if s.task_type == "yes_no":
            assert restated in stages.preamble, text
            assert stages.get("CON") == (f"The focus is set within {setting(s.finding)}; a {s.target} lesion would be set "
                                         f"within {setting(s.target)}, so a {s.target} finding is "
                                         f"{'present' if setting(s.finding) == setting(s.target) else 'not supported'}.")
            assert (s.finding == s.target) == (s.answer == "Yes")
            checked[s.answer] += 1
        else:
            assert "The question is whether" not in stages.preamble, text
            checked[s.task_type] += 1
    assert min(checked.values()) >= 3, checked


def test_balance_evens_out_groups_up_to_the_target():
    samples = _samples() + [s for s in _samples(80) if s.task_type == "open"]
    chosen = balance(samples, 60, seed=1)
    counts = {t: sum(s.task_type == t for s in chosen) for t in ("multiple_choice", "yes_no", "open", "localization")}
    assert len(chosen) == 60 and set(counts.values()) == {15}
    assert len({id(s) for s in chosen}) == 60  # no sample drawn twice


def test_rule_reasons_catch_wrong_answers_leaks_and_broken_scaffolds():
    s = next(x for x in _samples() if x.task_type == "multiple_choice")
    good = Scaffold(loc="The upper left region.", visual="A rounded focus.", knowledge="- Criteria.",
                    con="Supported.", answer=answer_stage(s)).render()
    assert rule_reasons(good, s) == []
    wrong = next(k for k in s.options if k != s.answer)
    assert rule_reasons(good.replace(answer_stage(s), f"{wrong}. {s.options[wrong]}"), s) == ["wrong_answer"]
    assert rule_reasons(good.replace("A rounded focus.", f"A rounded {s.target} focus."), s) == ["label_leak:VISUAL"]
    assert rule_reasons(good.replace("</CON>", ""), s)[0].startswith("invalid_scaffold")


def test_filters_count_noisy_unlabeled_and_bad_images(tmp_path):
    from PIL import Image

    config = FilterConfig(min_side_px=32, min_std=3.0)
    assert label_problem(Record("a", "x", Path("a"), "CT", noisy=True, labels=("liver",)), config) == "possibly_noisy"
    assert label_problem(Record("a", "x", Path("a"), "CT"), config) == "unlabeled"
    Image.new("L", (64, 64), 128).save(tmp_path / "blank.png")
    Image.new("L", (16, 16)).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "ok.png")
    results = {name: materialise(Record(name, "x", tmp_path / f"{name}.png", "CT"), tmp_path / "ds", config)
               for name in ("blank", "small", "broken", "ok")}
    assert results["blank"] == "blank_image" and results["small"] == "image_too_small"
    assert results["broken"] == "unreadable_image" and (tmp_path / "ds" / results["ok"].path).is_file()


def test_judge_verdicts_parse_or_are_refused():
    assert parse_verdict('Here: {"consistent": false, "issues": ["conflict"]}') == (False, ["conflict"])
    assert parse_verdict('{"consistent": true}') == (True, [])
    assert parse_verdict("{not json") is None and parse_verdict('{"consistent": "yes"}') is None


def test_instruction_lists_options_in_letter_order():
    text = lvkc_instruction("Which?", {"B": "Lung", "A": "Liver"})
    assert text.startswith("Which?\nOptions:\nA. Liver\nB. Lung\n") and "<ANSWER>" in text
    assert region_phrase((0, 0, 10, 10), 100, 100) == "upper left" and region_phrase((40, 40, 60, 60), 100, 100) == "central"


def test_stage_prompts_and_the_lvkc_instruction_name_the_scaffold_tags(tmp_path):
    from medsage.data_gen.prompts import PROMPT_STAGES, STAGE_PROMPTS, StagePrompts
    from medsage.reward_fns.scaffold import STAGES, parse_tags

    prompts = StagePrompts.load()
    fields = {"prompt": "q", "roi_hint": "", "roi_summary": "", "visual_summary": "", "label": "", "template": "",
              "loc": "", "visual": "", "knowledge": "", "answer": "", "trajectory": ""}
    for name, stage in PROMPT_STAGES.items():
        assert f"wrapped in <{stage}></{stage}>." in prompts.render(name, **fields)
    # A recipe's own copy that spells the tags out still renders.
    for name in STAGE_PROMPTS:
        (tmp_path / f"{name}.txt").write_text("Write {prompt} wrapped in <LOC></LOC>.")
    assert StagePrompts.load(tmp_path).render("loc", prompt="q") == "Write q wrapped in <LOC></LOC>."
    instruction = lvkc_instruction("Is there a cyst?")
    assert parse_tags(instruction.split(": ", 1)[1], STAGES).order == STAGES
