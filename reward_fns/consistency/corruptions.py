"""Synthetic negatives: corruptions of verified trajectories (paper appendix A.4).

The scorer must catch what A.3.5's verification filters out: "logical conflicts across stages,
missing or unsupported reasoning steps, incorrect knowledge associations, and internally
contradictory statements". Each corruption below produces one such defect from a positive, so the
scorer sees negatives that differ from a good trajectory by exactly one broken link:

- ``shuffled_stages``: the reasoning stages' contents permuted under fixed tags (evidence out of order);
- ``swapped_conclusion``: ``<CON>`` taken from another case (a conclusion the evidence does not support);
- ``contradicting_answer``: an ``<ANSWER>`` that contradicts the conclusion;
- ``foreign_knowledge``: ``<KNOWLEDGE>`` taken from another case (a wrong knowledge association);
- ``dropped_stage``: one reasoning stage removed (a missing step).

The data build draws its labelled negatives from here too (the offline generator's
``contradicting_answer`` and ``dropped_stage``, whose wrong answers it offers as donors), plus
:func:`leak_label`: a label named in the visual evidence, the leak its verifier must reject.

Stage tags are read with the shared scaffold parser and written with its renderer; only
trajectories it parses cleanly are corrupted.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from ..answers import match_answer, yes_no
from ..scaffold import ANSWER, CON, KNOWLEDGE, REASONING_STAGES, VISUAL, parse, render_sections
from .pairs import Group, Negative

_DONOR_TRIES = 8

Sections = dict[str, str]
Corruption = Callable[[Sections, Sequence[Sections], random.Random], Sections | None]


def _shuffled_stages(own: Sections, donors: Sequence[Sections], rng: random.Random) -> Sections | None:
    contents = [own[t] for t in REASONING_STAGES]
    if len(set(contents)) < len(contents):  # a derangement of distinct contents always exists
        return None
    order = list(range(len(contents)))
    while any(contents[i] == contents[j] for i, j in enumerate(order)):
        rng.shuffle(order)
    return {**own, **{t: contents[j] for t, j in zip(REASONING_STAGES, order)}}


def _from_donor(tag: str) -> Corruption:
    def swap(own: Sections, donors: Sequence[Sections], rng: random.Random) -> Sections | None:
        for _ in range(min(_DONOR_TRIES, len(donors))):
            donor = rng.choice(donors)
            if donor[tag].strip().lower() != own[tag].strip().lower():
                return {**own, tag: donor[tag]}
        return None

    return swap


def _contradicting_answer(own: Sections, donors: Sequence[Sections], rng: random.Random) -> Sections | None:
    polarity = yes_no(own[ANSWER])
    if polarity is not None:
        return {**own, ANSWER: "No" if polarity == "yes" else "Yes"}
    for _ in range(min(_DONOR_TRIES, len(donors))):
        answer = rng.choice(donors)[ANSWER]
        if not match_answer(answer, own[ANSWER]) and not match_answer(own[ANSWER], answer):
            return {**own, ANSWER: answer}
    return None


def _dropped_stage(own: Sections, donors: Sequence[Sections], rng: random.Random) -> Sections | None:
    dropped = rng.choice(REASONING_STAGES)
    return {t: text for t, text in own.items() if t != dropped}


CORRUPTIONS: dict[str, Corruption] = {
    "shuffled_stages": _shuffled_stages,
    "swapped_conclusion": _from_donor(CON),
    "contradicting_answer": _contradicting_answer,
    "foreign_knowledge": _from_donor(KNOWLEDGE),
    "dropped_stage": _dropped_stage,
}
CORRUPTION_KINDS: tuple[str, ...] = tuple(CORRUPTIONS)


def _check_kinds(kinds: Sequence[str]) -> None:
    unknown = [k for k in kinds if k not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption kind(s) {unknown}; expected some of {list(CORRUPTION_KINDS)}")


def corrupt(kind: str, trajectory: str, donors: Sequence[str], rng: random.Random) -> str | None:
    """One corrupted copy of ``trajectory`` (None when it is not a clean LVKC trajectory or no
    donor differs). ``donors`` are trajectories of other cases, used by the swapping kinds."""
    _check_kinds([kind])
    parsed = parse(trajectory)
    if not parsed.valid:
        return None
    donor_sections = [p.sections for p in map(parse, donors) if p.valid]
    sections = CORRUPTIONS[kind](parsed.sections, donor_sections, rng)
    return None if sections is None else render_sections(sections, parsed.preamble)


def leak_label(trajectory: str, term: str) -> str | None:
    """``trajectory`` with its visual evidence naming ``term`` (a label the reasoning must not
    state before the answer); None when it is not a clean LVKC trajectory."""
    parsed = parse(trajectory)
    if not parsed.valid:
        return None
    sections = {**parsed.sections, VISUAL: f"{parsed.sections[VISUAL]} The appearance is typical of {term}."}
    return render_sections(sections, parsed.preamble)


def add_corruptions(groups: list[Group], kinds: Sequence[str], seed: int = 0) -> int:
    """Append one negative of every kind in ``kinds`` to each group whose positive is a clean LVKC
    trajectory, drawing donors from other samples' positives; deterministic in ``seed``.
    Returns how many negatives were added."""
    _check_kinds(kinds)
    rng = random.Random(seed)
    parsed = [parse(g.positive) for g in groups]
    clean = [i for i, p in enumerate(parsed) if p.valid]
    added = 0
    for i in clean:
        picks = rng.sample(clean, min(len(clean), _DONOR_TRIES + 1))
        donors = [parsed[j].sections for j in picks if groups[j].sample_id != groups[i].sample_id]
        for kind in kinds:
            sections = CORRUPTIONS[kind](parsed[i].sections, donors, rng)
            if sections is not None:
                groups[i].negatives.append(Negative(render_sections(sections, parsed[i].preamble), kind))
                added += 1
    return added
