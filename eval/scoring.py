"""Scoring with the training reward's own matcher (paper section 4; DESIGN "One answer matcher").

Every number here avoids the known pitfalls of existing suites (notes/DATASETS.md):

* yes/no and multiple choice go through ``medsage.reward_fns.answers`` (whole-word, negation-aware);
* a response without a readable answer is a *parse failure*: it counts as wrong, stays in the
  denominator, and its rate is reported; nothing falls back to a random option;
* open questions report exact match, token recall and F1 as named fields (never positional), and
  the accuracy of an open question comes from the matcher or, when enabled, the LLM judge; each
  summary says which (``open_scored_by``);
* every accuracy carries a bootstrap 95% confidence interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from medsage.reward_fns.answers import AnswerType, extract_choice, match_answer, normalize, token_scores, yes_no
from medsage.reward_fns.scaffold import answer_text

from .benchmarks import Item

PROMPT_STYLES = ("lvkc", "plain")


@dataclass(frozen=True)
class ScoredItem:
    """One prediction, scored. ``answered`` False is a parse failure (and ``correct`` is then False)."""

    id: str
    benchmark: str
    kind: str
    closed: bool
    modality: str
    question_type: str
    answered: bool
    correct: bool
    exact: bool
    recall: float
    f1: float
    judged: bool = False


@dataclass(frozen=True)
class Estimate:
    """A proportion with its bootstrap confidence interval (all in [0, 1])."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class GroupSummary:
    """Metrics of one benchmark, or of one slice of it (``by`` = modality / question_type / answer_kind)."""

    benchmark: str
    by: str
    key: str
    n: int
    accuracy: Estimate
    parse_failure_rate: float
    closed_n: int
    closed_accuracy: float | None
    open_n: int
    open_accuracy: float | None
    open_exact: float | None
    open_recall: float | None
    open_f1: float | None
    open_scored_by: str


def response_answer(response: str, style: str) -> str | None:
    """The answer a response gives: the ``<ANSWER>`` stage for LVKC prompts, the whole text for plain ones."""
    if style == "lvkc":
        return answer_text(response)
    if style == "plain":
        return response.strip() or None
    raise ValueError(f"unknown prompt style {style!r}; expected one of {PROMPT_STYLES}")


@lru_cache(maxsize=1 << 16)
def _decide(answer: str, reference: str, options: tuple[tuple[str, str], ...], kind: AnswerType) -> tuple[bool, bool]:
    """(answered, correct) for one answer text. Closed answers repeat ("B", "Yes"), hence the cache;
    ``correct`` is always ``match_answer``'s verdict, exactly as the training reward computes it."""
    opts = dict(options) or None
    correct = match_answer(answer, reference, opts)
    if correct:
        return True, True
    if kind is AnswerType.MULTIPLE_CHOICE:
        return extract_choice(answer, opts) is not None, False
    if kind is AnswerType.YES_NO:
        return yes_no(answer) is not None, False
    return bool(normalize(answer)), False


def score_item(item: Item, response: str, style: str = "lvkc", judge_verdict: bool | None = None) -> ScoredItem:
    """Score one response; ``judge_verdict`` (open questions only) overrides the matcher's decision."""
    kind = item.kind
    answer = response_answer(response, style)
    answered, correct = (False, False) if answer is None else _decide(answer, item.answer, item.options_key, kind)
    exact, recall, f1 = False, 0.0, 0.0
    judged = False
    if kind is AnswerType.OPEN and answered:
        overlap = token_scores(answer, item.answer)
        exact, recall, f1 = normalize(answer) == normalize(item.answer), overlap.recall, overlap.f1
        if judge_verdict is not None:
            correct, judged = judge_verdict, True
    return ScoredItem(
        id=item.id,
        benchmark=item.benchmark,
        kind=kind.value,
        closed=item.closed,
        modality=item.modality,
        question_type=item.question_type,
        answered=answered,
        correct=correct,
        exact=exact,
        recall=recall,
        f1=f1,
        judged=judged,
    )


def bootstrap_ci(values: Iterable[float], n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Estimate:
    """Mean of ``values`` with a percentile bootstrap interval (resampling items with replacement)."""
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, 2_000_000 // x.size)  # bound memory: at most ~2M indices per block
    for start in range(0, n_resamples, step):
        count = min(step, n_resamples - start)
        means[start : start + count] = x[rng.integers(0, x.size, size=(count, x.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(float(x.mean()), float(low), float(high))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_group(
    scored: list[ScoredItem], benchmark: str, by: str = "all", key: str = "all", n_resamples: int = 1000, seed: int = 0
) -> GroupSummary:
    """Accuracy (with CI) over all items, closed and open accuracy, open overlap, parse-failure rate."""
    closed = [s for s in scored if s.closed]
    open_ = [s for s in scored if not s.closed]
    open_kind = [s for s in open_ if s.kind == AnswerType.OPEN.value]
    return GroupSummary(
        benchmark=benchmark,
        by=by,
        key=key,
        n=len(scored),
        accuracy=bootstrap_ci([s.correct for s in scored], n_resamples, seed),
        parse_failure_rate=_mean([not s.answered for s in scored]) or 0.0,
        closed_n=len(closed),
        closed_accuracy=_mean([s.correct for s in closed]),
        open_n=len(open_),
        open_accuracy=_mean([s.correct for s in open_]),
        open_exact=_mean([s.exact for s in open_kind]),
        open_recall=_mean([s.recall for s in open_kind]),
        open_f1=_mean([s.f1 for s in open_kind]),
        open_scored_by="judge" if any(s.judged for s in open_) else "matcher",
    )


SLICES: Mapping[str, Callable[[ScoredItem], str]] = {
    "modality": lambda s: s.modality,
    "question_type": lambda s: s.question_type,
    "answer_kind": lambda s: s.kind,
}


def summarize(scored: list[ScoredItem], n_resamples: int = 1000, seed: int = 0) -> list[GroupSummary]:
    """Per benchmark: the overall summary first, then one per modality, question type and answer kind."""
    out = []
    for benchmark in sorted({s.benchmark for s in scored}):
        rows = [s for s in scored if s.benchmark == benchmark]
        out.append(summarize_group(rows, benchmark, n_resamples=n_resamples, seed=seed))
        for by, key_of in SLICES.items():
            keys = sorted({key_of(s) for s in rows if key_of(s)})
            for key in keys:
                group = [s for s in rows if key_of(s) == key]
                out.append(summarize_group(group, benchmark, by, key, n_resamples, seed))
    return out
