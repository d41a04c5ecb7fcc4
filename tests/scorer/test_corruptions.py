"""Pairs reader and synthetic corruptions: each kind breaks exactly one cross-stage link."""

import json
import random

import pytest

from medsage.reward_fns.consistency import CORRUPTION_KINDS, add_corruptions, corrupt, group_pairs, read_pairs
from medsage.reward_fns.consistency.corruptions import leak_label
from medsage.reward_fns.consistency.pairs import FILTERED, is_held_out
from medsage.reward_fns.scaffold import STAGES, parse

from scorer_data import case


@pytest.fixture
def cases():
    rng = random.Random(1)
    return [case(i, rng) for i in range(40)]


def test_read_pairs_groups_negatives_under_their_positive(tmp_path, cases):
    path = tmp_path / "pairs.jsonl"
    lines = [{**c, "negative": f"bad {k}", "negative_reason": "conflict"} for c in cases[:3] for k in range(2)]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    groups = group_pairs(read_pairs(path))
    assert [g.sample_id for g in groups] == ["case-0", "case-1", "case-2"]
    assert [n.text for n in groups[0].negatives] == ["bad 0", "bad 1"]
    assert {n.kind for g in groups for n in g.negatives} == {FILTERED}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", ":2: not valid JSON"),
        ('["a"]', ":2: expected a JSON object"),
        ('{"sample_id": "s", "question": "q", "positive": "p", "negative_reason": "r"}', ":2: field 'negative'"),
        ('{"sample_id": "s", "question": "q", "positive": " ", "negative": "n", "negative_reason": "r"}', ":2: field 'positive'"),
    ],
)
def test_bad_pairs_line_names_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    good = json.dumps({"sample_id": 1, "question": "q", "positive": "p", "negative": "n", "negative_reason": "r"})
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(ValueError, match=str(path).replace(".", r"\.") + message.replace("(", r"\(")):
        read_pairs(path)


def test_each_corruption_changes_the_trajectory_as_its_kind_says(cases):
    rng = random.Random(0)
    own, donors = cases[0]["positive"], [c["positive"] for c in cases[1:]]
    base = parse(own).sections
    out = {kind: parse(corrupt(kind, own, donors, rng)) for kind in CORRUPTION_KINDS}
    shuffled = out["shuffled_stages"].sections
    assert out["shuffled_stages"].valid and shuffled["ANSWER"] == base["ANSWER"]
    assert sorted(shuffled[t] for t in STAGES[:4]) == sorted(base[t] for t in STAGES[:4])
    assert all(shuffled[t] != base[t] for t in STAGES[:4])
    for kind, tag in [("swapped_conclusion", "CON"), ("foreign_knowledge", "KNOWLEDGE"), ("contradicting_answer", "ANSWER")]:
        changed = {t for t in STAGES if out[kind].sections[t] != base[t]}
        assert changed == {tag}, kind
    assert {base["ANSWER"], out["contradicting_answer"].get("ANSWER")} == {"Yes", "No"}
    dropped = out["dropped_stage"]
    assert len(dropped.sections) == 4 and "ANSWER" in dropped.sections
    assert [p.kind for p in dropped.problems] == ["missing"]


def test_leak_label_names_the_label_in_the_visual_evidence_only(cases):
    own = cases[0]["positive"]
    base, leaked = parse(own), parse(leak_label(own, "hepatic cyst"))
    assert leaked.valid and leaked.preamble == base.preamble
    assert {t for t in STAGES if leaked.sections[t] != base.sections[t]} == {"VISUAL"}
    assert leaked.get("VISUAL").startswith(base.get("VISUAL")) and "hepatic cyst" in leaked.get("VISUAL")
    assert leak_label("plain text without stages", "cyst") is None


def test_corruption_skips_what_it_cannot_corrupt(cases):
    rng = random.Random(0)
    assert corrupt("dropped_stage", "plain text without stages", [], rng) is None
    assert corrupt("foreign_knowledge", cases[0]["positive"], [cases[0]["positive"]], rng) is None
    with pytest.raises(ValueError, match="unknown corruption kind"):
        corrupt("typo", cases[0]["positive"], [], rng)


def test_add_corruptions_is_deterministic_and_never_uses_own_sample(tmp_path, cases):
    def build(seed):
        groups = group_pairs(read_pairs(_write(tmp_path / f"p{seed}.jsonl", cases)))
        add_corruptions(groups, CORRUPTION_KINDS, seed=seed)
        return groups

    first, again = build(0), build(0)
    assert [[n.text for n in g.negatives] for g in first] == [[n.text for n in g.negatives] for g in again]
    for g in first:
        assert [n.kind for n in g.negatives] == [FILTERED, *CORRUPTION_KINDS]
        assert g.positive not in {n.text for n in g.negatives}


def test_held_out_split_is_stable_and_near_the_fraction():
    ids = [f"s{i}" for i in range(2000)]
    held = [i for i in ids if is_held_out(i, 0.2)]
    assert held == [i for i in ids if is_held_out(i, 0.2)]
    assert 300 < len(held) < 500


def _write(path, cases):
    path.write_text("".join(json.dumps({**c, "negative": "rejected", "negative_reason": "r"}) + "\n" for c in cases))
    return path
