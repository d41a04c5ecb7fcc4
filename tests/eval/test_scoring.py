"""Known-answer scoring suite: predictions with a known number right give exactly that accuracy."""

import math

import pytest

from medsage.eval.benchmarks import Item
from medsage.eval.scoring import bootstrap_ci, response_answer, score_item, summarize, summarize_group
from medsage.reward_fns.scaffold import Scaffold

MC_OPTIONS = {"A": "Tendonitis", "B": "Muscle strain", "C": "Flexor pathology", "D": "Nerve compression"}


def lvkc(answer: str) -> str:
    return Scaffold("Left upper quadrant region.", "Hyperdense fluid.", "Blood is dense.", "So it is.", answer).render()


def yes_no_item(i: int, answer: str) -> Item:
    return Item("bench", f"yn{i}", "Is there a lesion?", answer, (), modality="CT", question_type="Abnormality")


def mc_item(i: int) -> Item:
    return Item("bench", f"mc{i}", "What attribute?", "C", (), options=MC_OPTIONS, modality="MRI", question_type="Attribute")


def open_item(i: int) -> Item:
    return Item("bench", f"op{i}", "Which organ?", "Spleen", (), closed=False, modality="CT", question_type="Organ")


def _suite():
    """10 yes/no (8 right, one of them read by a fallback; 1 unparseable), 8 MC (5 right, 2 unparseable),
    5 open (2 right, 1 empty)."""
    pairs = []
    yes_no_preds = ["Yes", "No, there is no lesion.", "yes", "Yes, a nodule is present.", "Yes, normal otherwise.",
                    "yes", "Not normal: yes."]
    for i, pred in enumerate(yes_no_preds):  # all 7 right (reference "yes" ... "no" for the second)
        pairs.append((yes_no_item(i, "no" if i == 1 else "yes"), lvkc(pred)))
    pairs.append((yes_no_item(7, "yes"), lvkc("No.")))  # wrong
    pairs.append((yes_no_item(8, "no"), lvkc("Normal appearance.")))  # "normal" is not "no": parse failure
    pairs.append((yes_no_item(9, "no"), "No, but the response has no ANSWER stage."))  # right, by the fallback
    mc_preds = ["C", "(C)", "The answer is C.", "**C. Flexor pathology**", "Findings are most consistent with flexor pathology."]
    pairs += [(mc_item(i), lvkc(p)) for i, p in enumerate(mc_preds)]
    pairs.append((mc_item(5), lvkc("B")))  # wrong
    pairs.append((mc_item(6), lvkc("A or C, hard to say between tendonitis and flexor pathology")))  # parse failure
    pairs.append((mc_item(7), lvkc("I cannot tell.")))  # parse failure
    open_preds = ["Spleen", "The imaged structure is the spleen.", "Liver", "Not the spleen"]
    pairs += [(open_item(i), lvkc(p)) for i, p in enumerate(open_preds)]
    pairs.append((open_item(4), "<LOC>x</LOC><ANSWER></ANSWER>"))  # empty answer: parse failure
    return pairs


def test_known_answer_suite_gives_exact_accuracy_per_question_type():
    scored = [score_item(item, pred) for item, pred in _suite()]
    overall, *slices = summarize(scored, n_resamples=200)
    assert overall.n == 23
    assert overall.accuracy.value == pytest.approx(15 / 23)
    assert overall.parse_failure_rate == pytest.approx(4 / 23)
    assert (overall.fallback_n, overall.fallback_rate) == (1, pytest.approx(1 / 23))
    assert overall.closed_n == 18 and overall.closed_accuracy == pytest.approx(13 / 18)
    assert overall.open_n == 5 and overall.open_accuracy == pytest.approx(2 / 5)
    assert overall.open_scored_by == "matcher"
    by_kind = {s.key: s for s in slices if s.by == "answer_kind"}
    assert by_kind["yes_no"].accuracy.value == pytest.approx(8 / 10)
    assert by_kind["yes_no"].parse_failure_rate == pytest.approx(1 / 10)
    assert by_kind["multiple_choice"].accuracy.value == pytest.approx(5 / 8)
    assert by_kind["multiple_choice"].parse_failure_rate == pytest.approx(2 / 8)
    assert by_kind["open"].accuracy.value == pytest.approx(2 / 5)
    by_qtype = {s.key: s.accuracy.value for s in slices if s.by == "question_type"}
    assert by_qtype == pytest.approx({"Abnormality": 0.8, "Attribute": 5 / 8, "Organ": 0.4})
    by_modality = {s.key: s.n for s in slices if s.by == "modality"}
    assert by_modality == {"CT": 15, "MRI": 8}


def test_open_overlap_is_named_and_averaged_over_open_items_once():
    items = [open_item(0), open_item(1)]
    items[1] = Item("bench", "op1", "Where?", "left lower lobe", (), closed=False)
    scored = [score_item(items[0], lvkc("spleen")), score_item(items[1], lvkc("left lobe"))]
    summary = summarize_group(scored, "bench", n_resamples=50)
    assert summary.open_exact == pytest.approx(0.5)
    assert summary.open_recall == pytest.approx((1 + 2 / 3) / 2)
    assert summary.open_f1 == pytest.approx((1 + 0.8) / 2)
    assert scored[1].recall == pytest.approx(2 / 3) and scored[1].f1 == pytest.approx(0.8)


def test_judge_verdict_decides_open_questions_only():
    wrong_by_matcher = score_item(open_item(0), lvkc("splenic parenchyma"), judge_verdict=True)
    assert wrong_by_matcher.correct and wrong_by_matcher.judged
    closed = score_item(yes_no_item(0, "yes"), lvkc("no"), judge_verdict=True)
    assert not closed.correct and not closed.judged
    unanswered = score_item(open_item(1), "no answer stage", judge_verdict=True, fallback=False)
    assert not unanswered.correct and not unanswered.answered
    assert summarize_group([wrong_by_matcher], "b", n_resamples=10).open_scored_by == "judge"


def test_plain_style_reads_the_whole_response_and_lvkc_counts_it_as_a_fallback():
    assert response_answer("  Yes  ", "plain") == "Yes"
    plain = score_item(yes_no_item(0, "yes"), "Yes.", style="plain")
    assert plain.correct and not plain.fallback and plain.extracted_by == "whole"
    lvkc_ = score_item(yes_no_item(0, "yes"), "Yes.", style="lvkc")
    assert lvkc_.correct and lvkc_.fallback and lvkc_.extracted_by == "whole"
    assert not score_item(yes_no_item(0, "yes"), "Yes.", style="lvkc", fallback=False).answered
    with pytest.raises(ValueError, match="unknown prompt style"):
        response_answer("x", "cot")


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    small = bootstrap_ci([1, 0] * 10, n_resamples=500, seed=1)
    large = bootstrap_ci([1, 0] * 1000, n_resamples=500, seed=1)
    assert small.value == large.value == 0.5
    assert small.low < 0.5 < small.high and large.low < 0.5 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 5
    certain = bootstrap_ci([1, 1, 1], n_resamples=100)
    assert certain.low == certain.high == 1.0
    assert math.isnan(bootstrap_ci([]).value)
    assert bootstrap_ci([1, 0, 1], seed=3) == bootstrap_ci([1, 0, 1], seed=3)


def test_chinese_slake_closed_answers_are_scored_not_parse_failures():
    item = Item("slake", "zh0", "图中有病灶吗?", "是", (), modality="CT", question_type="Abnormality")
    right, wrong, unreadable = (score_item(item, lvkc(text)) for text in ("是的，有病灶。", "没有", "肝脏"))
    assert (right.answered, right.correct) == (True, True)
    assert (wrong.answered, wrong.correct) == (True, False)
    assert (unreadable.answered, unreadable.correct) == (False, False)
