"""Format and accuracy rewards, verl's compute_score contract, and the EasyR1 batch module."""

import importlib.util
import json
from pathlib import Path

import pytest

import medsage.reward_fns as reward_fns
from medsage.reward_fns import RewardWeights, accuracy_reward, compute_score, format_reward
from medsage.reward_fns import scaffold as sc
from medsage.reward_fns.answers import extract_choice

FIGURE12 = json.loads((Path(__file__).parent / "fixtures" / "figure12.json").read_text())["cases"]
STAGE_TEXT = {"LOC": "The right lower lobe", "VISUAL": "v", "KNOWLEDGE": "k", "CON": "c", "ANSWER": "Yes"}


def build(stages=sc.STAGES, text=STAGE_TEXT):
    return "".join(f"<{t}>{text[t]}</{t}>" for t in stages)


@pytest.mark.parametrize("case", FIGURE12, ids=[c["name"] for c in FIGURE12])
def test_figure12_outputs(case):
    parsed = sc.parse(case["response"])
    assert set(parsed.sections) == set(sc.STAGES)
    assert len(sc.groundings(parsed.get("LOC"))) >= 2
    fmt = format_reward(case["response"])
    if case["clean_scaffold"]:
        assert parsed.valid and fmt == 1.0
    else:  # these two close a stage with its opening tag: content recovered, credit reduced
        assert [p.kind for p in parsed.problems] == ["closed_with_open_tag"]
        assert 0.5 < fmt < 1.0
    if case["options"]:
        assert extract_choice(parsed.get("ANSWER"), case["options"]) == case["names_choice"]
        expected = 1.0 if case["names_choice"] == case["ground_truth"] else 0.0
        assert accuracy_reward(case["response"], case["ground_truth"], case["options"]) == expected


def test_figure12_ct_answer_is_not_credited_without_an_explicit_yes():
    """The CT example answers "Findings are consistent with ... hemorrhage" to a yes/no question.

    The matcher does not guess polarity from a finding (it cannot tell an affirmed finding from a
    normal one without reading the question), so SFT targets must state yes/no in <ANSWER>.
    """
    ct = next(c for c in FIGURE12 if c["name"] == "ct")
    assert accuracy_reward(ct["response"], "Yes") == 0.0
    assert accuracy_reward(ct["response"].replace("<ANSWER>", "<ANSWER>Yes. "), "Yes") == 1.0


def test_format_reward_is_one_exactly_for_a_clean_scaffold():
    assert format_reward(build()) == 1.0


def test_format_reward_is_zero_without_any_stage_tag():
    assert format_reward("Yes, the liver is enlarged.") == 0.0
    assert format_reward("") == 0.0


def test_format_reward_orders_defects_sensibly():
    full = format_reward(build())
    missing_one = format_reward(build(sc.STAGES[:4]))
    misordered = format_reward(build(("LOC", "KNOWLEDGE", "VISUAL", "CON", "ANSWER")))
    no_region = format_reward(build(text={**STAGE_TEXT, "LOC": "it looks bad"}))
    only_answer = format_reward(build(("ANSWER",)))
    assert full > no_region > only_answer > 0
    assert full > misordered and full > missing_one > only_answer
    assert missing_one < 1.0 and misordered < 1.0 and no_region < 1.0


def test_accuracy_reads_only_the_answer_stage():
    hidden = build(text={**STAGE_TEXT, "CON": "Yes", "ANSWER": "No"})
    assert accuracy_reward(hidden, "yes") == 0.0
    assert accuracy_reward(hidden, "no") == 1.0
    assert accuracy_reward("Yes", "yes") == 0.0  # no <ANSWER>: 0
    assert accuracy_reward(build(text={**STAGE_TEXT, "ANSWER": " "}), "yes") == 0.0


def test_compute_score_verl_contract_with_options_in_extra_info():
    response = build(text={**STAGE_TEXT, "ANSWER": "(B) Muscle strain"})
    info = {"options": {"A": "Tendonitis", "B": "Muscle strain"}, "answer_type": "multiple_choice"}
    out = compute_score("phantom", response, "B", info)
    assert out == {"score": pytest.approx(1.0), "accuracy": 1.0, "format": 1.0}
    wrong = compute_score("phantom", response, "A", info)
    assert wrong["accuracy"] == 0.0 and wrong["score"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "answer, paid, paid_without_question",
    [("Liver", 1.0, 1.0), ("It is the liver, not the kidney", 1.0, 1.0), ("liver? kidney?", 0.0, 1.0),
     ("Kidney", 0.0, 0.0), ("Liver and kidney", 0.0, 0.0)],
)
def test_an_either_or_question_is_paid_as_evaluation_scores_it(answer, paid, paid_without_question):
    """The RL row's question makes "kidney or liver?" a choice between the two, as SLAKE's closed
    questions are scored in evaluation: naming both (a hedge the open matcher paid) earns nothing."""
    info = {"options": [], "question": "Which is bigger in this image, kidney or liver?", "answer_type": "open"}
    response = build(text={**STAGE_TEXT, "ANSWER": answer})
    assert compute_score("slake", response, "Liver", info)["accuracy"] == paid
    assert accuracy_reward(response, "Liver", None) == paid_without_question  # the open matcher


def test_weights_come_from_configuration():
    out = compute_score("x", build(), "no", None, reward_weights={"accuracy": 1.0, "format": 0.5})
    assert out["score"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="consistncy"):
        RewardWeights.from_config({"consistncy": 1.0})


def test_weights_are_checked_on_every_call_that_could_differ():
    """verl passes the same reward_kwargs for every response, so a checked result is reused; an equal
    mapping that the loader would refuse (True == 1) must still be refused, every time."""
    assert RewardWeights.from_config({"accuracy": 1}) == RewardWeights(accuracy=1.0)
    for _ in range(2):
        with pytest.raises(ValueError, match="accuracy"):
            RewardWeights.from_config({"accuracy": True})
        with pytest.raises(ValueError, match="consistncy"):
            RewardWeights.from_config({"consistncy": 1.0})
    assert RewardWeights.from_config(None) == RewardWeights()
    assert RewardWeights.from_config({}) == RewardWeights()
    with pytest.raises(ValueError, match="bogus"):
        RewardWeights.from_config({"bogus": {"unhashable": [1]}})
    weights = {"accuracy": 1.0, "format": 0.5}
    assert RewardWeights.from_config(weights) is RewardWeights.from_config(dict(weights))


def test_compute_score_is_what_the_package_exports():
    assert reward_fns.compute_score is compute_score


def test_easyr1_batch_module_loads_by_file_path():
    """EasyR1 imports ``path.py:compute_score`` by file path, outside any package."""
    path = Path(reward_fns.__file__).parent / "easyr1.py"
    spec = importlib.util.spec_from_file_location("user_reward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.REWARD_TYPE == "batch"
    options = {"A": "Arm", "B": "Chest"}
    inputs = [
        {"response": build(), "response_length": 20, "ground_truth": "yes"},
        {"response": "no tags", "response_length": 2, "ground_truth": "yes"},
        {
            "response": build(text={**STAGE_TEXT, "ANSWER": "This image represents the chest"}),
            "response_length": 20,
            "ground_truth": json.dumps({"answer": "B", "options": options}),
        },
    ]
    restated = build(text={**STAGE_TEXT, "ANSWER": "The heart is enlarged."})
    inputs += [{"response": restated, "response_length": 20,
                "ground_truth": json.dumps({"answer": "yes", "question": question})}
               for question in ("Is the heart enlarged?", None)]  # the question read as verl's extra_info is
    out = module.compute_score(inputs)
    assert [r["accuracy"] for r in out] == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert [r["format"] for r in out] == [1.0, 0.0, 1.0, 1.0, 1.0]
    assert out[0]["overall"] == pytest.approx(1.0) and out[1]["overall"] == 0.0
    assert module.compute_score(inputs[:1], accuracy_weight=0.5, format_weight=0.5)[0]["overall"] == 1.0
