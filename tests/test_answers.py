"""The shared answer matcher: multiple choice, yes/no, open-ended, and the known scoring pitfalls."""

import numpy as np
import pytest

from medsage.reward_fns.answers import (
    AnswerType,
    answer_type,
    coerce_options,
    extract_choice,
    match_answer,
    normalize,
    token_scores,
    yes_no,
)

OPTS = {"A": "Tendonitis", "B": "Muscle strain", "C": "Flexor pathology", "D": "Nerve compression"}


@pytest.mark.parametrize(
    "prediction",
    [
        "C",
        "(C)",
        "C.",
        "**C**",
        "[C]",
        "The answer is C",
        "The answer is C.",
        "Answer: (C)",
        "Option C",
        "C. Flexor pathology",
        "(C) Flexor pathology",
        "Findings are most consistent with flexor pathology.",
        "**Flexor Pathology**",
        "The answer is C: flexor pathology.",
    ],
)
def test_multiple_choice_letter_and_text_forms(prediction):
    assert extract_choice(prediction, OPTS) == "C"
    assert match_answer(prediction, "C", OPTS)
    assert not match_answer(prediction, "B", OPTS)


@pytest.mark.parametrize(
    "prediction",
    [
        "A large tendon tear is seen.",  # the article "A" is not option A
        "The answer is a tear.",
        "",
        "I cannot tell.",
        "E",  # not an offered letter
    ],
)
def test_nothing_recognisable_is_no_choice(prediction):
    assert extract_choice(prediction, OPTS) is None
    assert not match_answer(prediction, "A", OPTS)


@pytest.mark.parametrize(
    "prediction",
    [
        "B or C",
        "(B) and (C)",
        "Muscle strain rather than flexor pathology",
        "The answer is C. Option B is also possible.",
    ],
)
def test_naming_two_different_options_is_wrong(prediction):
    assert extract_choice(prediction, OPTS) is None
    assert not match_answer(prediction, "C", OPTS)


def test_option_text_inside_a_longer_option_counts_once():
    opts = {"A": "Spleen", "B": "Spleen laceration", "C": "Liver"}
    assert extract_choice("There is a spleen laceration.", opts) == "B"
    assert extract_choice("The imaged structure is the spleen.", opts) == "A"


def test_reference_may_be_the_option_text():
    assert match_answer("C", "Flexor pathology", OPTS)


@pytest.mark.parametrize(
    "shape",
    [
        OPTS,
        list(OPTS.values()),
        np.array(list(OPTS.values()), dtype=object),
        '{"A": "Tendonitis", "B": "Muscle strain", "C": "Flexor pathology", "D": "Nerve compression"}',
        {**OPTS, "E": None},  # parquet structs fill absent letters with None
    ],
)
def test_options_arrive_in_every_loader_shape(shape):
    assert coerce_options(shape) == OPTS


@pytest.mark.parametrize("bad", [None, 3, "not json", {"AA": "x"}, {"1": "x"}])
def test_unusable_options_give_an_empty_mapping(bad):
    assert coerce_options(bad) == {}


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("Yes", "yes"),
        ("yes, there is a fracture", "yes"),
        ("No.", "no"),
        ("**No**, the lungs are clear", "no"),
        ("There is no evidence of hemorrhage.", "no"),
        ("The answer is yes.", "yes"),
        ("That is not correct", "no"),
        ("The liver appears normal.", None),  # "no" must not match "normal"
        ("A nodule is seen.", None),  # nor "nodule"
        ("It is not enlarged", None),  # nor "not"
        ("Yes and no", "yes"),  # the leading word decides
        ("Maybe yes, maybe no", None),  # both without a lead: ambiguous
        ("", None),
    ],
)
def test_yes_no_is_whole_word_and_negation_aware(prediction, expected):
    assert yes_no(prediction) == expected


@pytest.mark.parametrize(
    "prediction, expected",
    [("是", "yes"), ("是的，存在病灶。", "yes"), ("有", "yes"), ("否", "no"), ("不是", "no"), ("没有发现异常", "no"),
     ("**否**", "no"), ("肝脏", None)],
)
def test_chinese_yes_no_for_slake_zh(prediction, expected):
    assert yes_no(prediction) == expected
    if expected:
        assert match_answer(prediction, "是" if expected == "yes" else "否")
        assert not match_answer(prediction, "否" if expected == "yes" else "是")


def test_yes_no_matching():
    assert match_answer("No, the heart is normal in size.", "no")
    assert not match_answer("The heart is normal in size.", "no")
    assert not match_answer("Nodules are present.", "No")
    assert match_answer("YES", "Yes")


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [
        ("The Liver.", "liver", True),
        ("Findings are most consistent with choroidal neovascularization.", "choroidal neovascularization", True),
        ("There is no pneumothorax.", "pneumothorax", False),
        ("Not pneumothorax but effusion.", "pneumothorax", False),
        ("left lung", "right lung", False),
        ("lung", "left lung", False),
        ("liver kidney spleen heart lung brain bone muscle skin eye ear nose throat aorta", "aorta", False),
        ("", "liver", False),
        ("liver", "", False),
    ],
)
def test_open_answers(prediction, reference, expected):
    assert match_answer(prediction, reference) is expected


def test_normalize_is_squad_style():
    assert normalize("  The **Left**  Lung, an  organ! ") == "left lung organ"


def test_token_scores_are_named_and_correct():
    s = token_scores("left lower lobe opacity", "left lobe")
    assert (s.precision, s.recall) == (0.5, 1.0)
    assert s.f1 == pytest.approx(2 / 3)
    assert token_scores("", "") == token_scores("x", "x")
    assert token_scores("x", "y").f1 == 0.0


def test_answer_type_inference():
    assert answer_type("C", OPTS) is AnswerType.MULTIPLE_CHOICE
    assert answer_type(" No ") is AnswerType.YES_NO
    assert answer_type("否") is AnswerType.YES_NO
    assert answer_type("left lung") is AnswerType.OPEN


@pytest.mark.parametrize("garbage", [None, 5, b"bytes", ["list"], {"d": 1}])
def test_matcher_never_raises_on_garbage(garbage):
    assert match_answer(garbage, "yes") is False
    assert match_answer(garbage, "C", OPTS) is False
    assert match_answer("C", garbage, OPTS) is False
    assert match_answer("liver", garbage) in (True, False)
