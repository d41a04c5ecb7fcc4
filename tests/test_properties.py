"""Property-based: no model output makes the parser, matcher or rewards raise or leave their range."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsage.reward_fns import compute_score, format_reward
from medsage.reward_fns import scaffold as sc
from medsage.reward_fns.answers import extract_choice, match_answer, token_scores, yes_no

TAG_PIECES = [f"<{t}>" for t in sc.STAGES] + [f"</{t}>" for t in sc.STAGES] + ["<", ">", "</", "{", "}", '"box_2d"']
FRAGMENTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(TAG_PIECES + ["yes", "no", "(B)", "**C**", "answer is", '{"point": [1, 2]}', "\n", "  "]),
)
MODEL_TEXT = st.lists(FRAGMENTS, max_size=40).map("".join)
OPTIONS = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from("ABCDE"), st.text(max_size=15), max_size=5),
    st.lists(st.text(max_size=15), max_size=5),
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(MODEL_TEXT, st.text(max_size=20), OPTIONS)
def test_rewards_stay_in_range(response, reference, options):
    out = compute_score("fuzz", response, reference, {"options": options})
    assert out["accuracy"] in (0.0, 1.0)
    assert 0.0 <= out["format"] <= 1.0
    assert 0.0 <= out["score"] <= 1.0


@SETTINGS
@given(MODEL_TEXT)
def test_parser_never_raises_and_sections_are_substrings(text):
    parsed = sc.parse(text)
    for content in parsed.sections.values():
        assert content in text
    if parsed.valid:  # a clean parse loses format credit only for a LOC that names no region
        assert format_reward(text) == (1.0 if sc.names_region(parsed.get("LOC")) else 0.9)
    else:
        assert format_reward(text) < 1.0
    sc.groundings(text)


def _full_parse(text, tags=sc.STAGES):
    """The parse without its one-pass read of well-formed text (the tag loop alone)."""
    cached = sc._WELL_FORMED_CACHE.get(tags, "unset")
    sc._WELL_FORMED_CACHE[tags] = None
    try:
        return sc.parse_tags(text, tags)
    finally:
        if cached == "unset":
            del sc._WELL_FORMED_CACHE[tags]
        else:
            sc._WELL_FORMED_CACHE[tags] = cached


WELL_FORMED = st.tuples(*[st.lists(FRAGMENTS, max_size=4).map("".join) for _ in range(2 * len(sc.STAGES) + 1)]).map(
    lambda texts: texts[0] + "".join(f"<{t}>{texts[2 * i + 1]}</{t}>{texts[2 * i + 2]}" for i, t in enumerate(sc.STAGES))
)


@SETTINGS
@given(st.one_of(MODEL_TEXT, WELL_FORMED))
def test_one_pass_read_of_well_formed_text_is_the_full_parse(text):
    fast, full = sc.parse(text), _full_parse(text)
    assert (fast.preamble, fast.sections, list(fast.sections), fast.order, fast.problems) == (
        full.preamble, full.sections, list(full.sections), full.order, full.problems)


ASCII_WORDS = st.lists(st.one_of(st.text(st.characters(max_codepoint=127), max_size=12), st.sampled_from(
    ["a", "an", "the", "lungs", "mass", "abscess", "x-ray", "X ray", "radiographs", "CT scans", "axial", "MR", "1990s",
     "sinus", "denies", "A", "The", "\x01", "\x7f", "\x1f", "_", "--", ".", "nodules", "plain films", "xrays",
     "radiography", "computed tomography", "magnetic resonance imaging", "MRI scans", "ultrasound scans", "sonography",
     "ultrasonography", "coronal planes", "sagittal", "transverse plane", "metastases", "masses", "stenosis", "ses",
     "bases", "abscesses", "uses", "Haemorrhages", "oedema", "tumours", "anaemia", "oesophagus", "does", "your",
     "LLL", "rul", "T2WI", "t1w", "RUQ", "lml", "Renal", "cardiomegaly", "posteroanterior", "women", "hypo-dense",
     "non-calcified", "lower left", "upper right", "calcified", "edema", "HCC", "NSCLC", "COVID-19", "covid19",
     "free air under the diaphragm", "kidney stones", "gallstones", "gall stones", "gallbladder calculi",
     "heart attack", "MI", "blood clots", "hepatic steatosis", "fatty infiltration of the liver", "sonograms",
     "grey", "cxr", "postero anterior", "glasses", "processes", "mammogram", "mammographic", "PET scans",
     "positron emission tomography", "low density", "high attenuation", "low signal intensity", "high signal",
     "hypoattenuating", "hyper attenuation", "rim enhancing", "SBO", "ptx", "non-contrast", "contrast-enhanced",
     "with IV contrast", "post contrast", "precontrast", "unenhanced", "several", "posterior anterior",
     "frontal plane", "frontal planes"])),
    max_size=12).map(" ".join)


@SETTINGS
@given(ASCII_WORDS)
def test_word_by_word_normal_forms_equal_the_patterns(text):
    """normalize and _canon_norm read an ASCII text word by word; a non-ASCII word after it sends the
    same text through the patterns (the articles', the spelling rules', the plural rule's)."""
    from medsage.reward_fns import answers as A

    def without_last_word(normal: str) -> str:
        return " ".join(normal.split()[:-1])

    assert A.normalize(text) == without_last_word(A.normalize(text + " \u00e9"))
    assert A._canon_norm(text) == without_last_word(A._canon(A.normalize(text + " \u00e9")))
    assert A._canon_norm(text) == A._canon(A.normalize(text))


@SETTINGS
@given(MODEL_TEXT, st.text(max_size=20), OPTIONS)
def test_matcher_is_total(prediction, reference, options):
    assert match_answer(prediction, reference, options) in (True, False)
    assert extract_choice(prediction, options) in (None, "A", "B", "C", "D", "E")
    assert yes_no(prediction) in (None, "yes", "no")
    s = token_scores(prediction, reference)
    assert 0.0 <= s.precision <= 1.0 and 0.0 <= s.recall <= 1.0 and 0.0 <= s.f1 <= 1.0


@SETTINGS
@given(st.sampled_from(sc.STAGES), st.text(min_size=1, max_size=30).filter(lambda s: "<" not in s and s.strip()))
def test_clean_scaffold_with_any_content_scores_full_format(stage, content):
    texts = {t: "the left lobe" if t == "LOC" else "x" for t in sc.STAGES}
    texts[stage] = texts[stage] + " " + content
    assert format_reward("".join(f"<{t}>{texts[t]}</{t}>" for t in sc.STAGES)) == 1.0


ADVERSARIAL = [
    "<" * 200_000,
    "< " * 100_000,
    "<LOC>" * 40_000,
    "{" * 100_000 + "}" * 100_000,
    '<LOC>{"box_2d": [' + "1," * 100_000 + "]}",
    "(A) " * 50_000,
    "no " * 70_000,
    "answer is " * 20_000,
    "<ANSWER>" + "a " * 100_000 + "</ANSWER>",
]


@pytest.mark.timeout(10)  # a guard against catastrophic backtracking, not a speed measurement
@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_200kb_adversarial_strings_finish(text):
    assert len(text) >= 150_000
    out = compute_score("adv", text, "C", {"options": {"A": "a " * 50, "B": "no", "C": "x"}})
    assert 0.0 <= out["score"] <= 1.0
    assert match_answer(text, "no") in (True, False)
    assert match_answer(text, "a a a") in (True, False)


QUESTION = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["Is there", "Are there", "a mass", "还是", "这是", "CT", "MRI", "肝脏", "?", "？", " or ",
                              "Does the image show", "is seen", " "]), max_size=8).map("".join),
)


@SETTINGS
@given(MODEL_TEXT, QUESTION, st.text(max_size=12))
def test_question_aware_matching_is_total(prediction, question, reference):
    from medsage.reward_fns.answers import judge, question_choices

    choices = question_choices(question, reference)
    assert isinstance(choices, tuple) and len(choices) in (0, 2)
    verdict = judge(prediction, reference, question=question, choices=choices)
    assert verdict.correct in (True, False) and (verdict.answered or not verdict.correct)
    assert yes_no(prediction, question) in (None, "yes", "no")
