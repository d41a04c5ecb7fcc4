"""Scoring with the training reward's own matcher (paper section 4; DESIGN "One answer matcher").

Every number here avoids the known pitfalls of existing suites (notes/DATASETS.md):

* yes/no and multiple choice go through ``medsage.reward_fns.answers`` (whole-word, negation-aware);
* a response without a readable answer is a *parse failure*: it counts as wrong, stays in the
  denominator, and its rate is reported; nothing falls back to a random option;
* a response without an ``<ANSWER>`` stage is read the way the strongest suites read one
  (``\\boxed{}``, "the answer is ...", an answer-first line, the final line), and how many answers came from such a
  fallback is reported per benchmark and slice (``fallback_rate``): a model that stops writing
  the scaffold shows up there, not as a silently lower or higher accuracy;
* open questions report exact match, token recall and F1 as named fields (never positional), and
  the accuracy of an open question comes from the matcher or, when enabled, the LLM judge; each
  summary says which (``open_scored_by``);
* every accuracy carries a bootstrap 95% confidence interval, resampling questions;
* beyond the suites' single pass (:func:`medsage.eval.benchmarks.repeat_items`): CircularEval
  (a multiple-choice question is right only when all its option rotations are) and repeated
  sampling (mean accuracy over samples and pass@k, both with intervals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from medsage.reward_fns.answers import AnswerType, Verdict, extract_answer, judge, normalize, token_scores

from .benchmarks import Item

PROMPT_STYLES = ("lvkc", "plain")
# Where each prompt style asks for its answer; an answer found anywhere else came from a fallback.
_PRIMARY_SOURCES = {"lvkc": ("answer_tag",), "plain": ("answer_tag", "whole")}


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
    extracted_by: str = ""  # medsage.reward_fns.answers.ANSWER_SOURCES, "" when nothing was found
    fallback: bool = False  # the answer was not where the prompt style asks for it
    subject: str = ""
    subfield: str = ""
    base_id: str = ""  # the question a repeated copy asks again ("" = this one)
    sample: int = 0
    circular: bool = False  # one rotation of a CircularEval question


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
    fallback_n: int = 0
    fallback_rate: float = 0.0
    samples: int = 1  # generations per question; accuracy is then their mean
    pass_at_k: Estimate | None = None  # with samples > 1: right in at least one of the k = samples
    circular: bool = False  # multiple choice scored by CircularEval


def response_answer(response: str, style: str, fallback: bool = True) -> str | None:
    """The answer a response gives (:func:`medsage.reward_fns.answers.extract_answer`): the ``<ANSWER>``
    stage, else (with ``fallback``) ``\\boxed{}``, "the answer is ...", an answer-first line, the final line."""
    return _extract(response, style, fallback)[0]


def _extract(response: str, style: str, fallback: bool) -> tuple[str | None, str]:
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {PROMPT_STYLES}")
    return extract_answer(response, require_tag=not fallback)


def _decide(answer: str, item: Item) -> Verdict:
    """(answered, correct) for one answer text: ``judge``'s verdict, exactly as the training reward
    computes it (short answers are cached there)."""
    return judge(answer, item.answer, item.options or None, question=item.question, choices=item.choices,
                 rules=item.rules)


def score_item(
    item: Item, response: str, style: str = "lvkc", judge_verdict: bool | None = None, fallback: bool = True
) -> ScoredItem:
    """Score one response; ``judge_verdict`` (open questions only) overrides the matcher's decision;
    ``fallback=False`` reads the ``<ANSWER>`` stage only, as the RL reward does."""
    kind = item.kind
    answer, source = _extract(response, style, fallback)
    answered, correct = (False, False) if answer is None else _decide(answer, item)
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
        extracted_by=source if answer is not None else "",
        fallback=answer is not None and source not in _PRIMARY_SOURCES[style],
        subject=item.subject,
        subfield=item.subfield,
        base_id=item.base_id,
        sample=item.sample,
        circular=item.rotation >= 0,
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
    """Accuracy (with CI) over all questions, closed and open accuracy, open overlap, parse-failure
    rate; with repeated samples, accuracy is each question's mean over them and pass@k is reported."""
    scored = collapse_circular(scored)
    per_question = _per_question(scored)
    samples = max((len(v) for v in per_question.values()), default=1)
    closed = [s for s in scored if s.closed]
    open_ = [s for s in scored if not s.closed]
    open_kind = [s for s in open_ if s.kind == AnswerType.OPEN.value]
    return GroupSummary(
        benchmark=benchmark,
        by=by,
        key=key,
        n=len(per_question),
        accuracy=bootstrap_ci([sum(v) / len(v) for v in per_question.values()], n_resamples, seed),
        parse_failure_rate=_mean([not s.answered for s in scored]) or 0.0,
        closed_n=len(closed),
        closed_accuracy=_mean([s.correct for s in closed]),
        open_n=len(open_),
        open_accuracy=_mean([s.correct for s in open_]),
        open_exact=_mean([s.exact for s in open_kind]),
        open_recall=_mean([s.recall for s in open_kind]),
        open_f1=_mean([s.f1 for s in open_kind]),
        open_scored_by="judge" if any(s.judged for s in open_) else "matcher",
        fallback_n=sum(s.fallback for s in scored),
        fallback_rate=_mean([s.fallback for s in scored]) or 0.0,
        samples=samples,
        pass_at_k=bootstrap_ci([any(v) for v in per_question.values()], n_resamples, seed) if samples > 1 else None,
        circular=any(s.circular for s in scored),
    )


def _per_question(scored: list[ScoredItem]) -> dict[str, list[bool]]:
    """Each question's verdicts over its samples."""
    out: dict[str, list[bool]] = {}
    for s in scored:
        out.setdefault(s.base_id or s.id, []).append(s.correct)
    return out


def collapse_circular(scored: list[ScoredItem]) -> list[ScoredItem]:
    """CircularEval (VLMEvalKit): the rotations of one question (per sample) become one verdict,
    right only when every rotation is right and answered only when every one is."""
    rotations: dict[tuple[str, int], list[ScoredItem]] = {}
    out = []
    for s in scored:
        if s.circular:
            rotations.setdefault((s.base_id, s.sample), []).append(s)
        else:
            out.append(s)
    for (base, sample), group in rotations.items():
        out.append(replace(group[0], id=f"{base}|s{sample}", correct=all(g.correct for g in group),
                           answered=all(g.answered for g in group), fallback=any(g.fallback for g in group)))
    return out


SLICES: Mapping[str, Callable[[ScoredItem], str]] = {
    "modality": lambda s: s.modality,
    "question_type": lambda s: s.question_type,
    "answer_kind": lambda s: s.kind,
    "subject": lambda s: s.subject,
    "subfield": lambda s: s.subfield,
}


def summarize(scored: list[ScoredItem], n_resamples: int = 1000, seed: int = 0) -> list[GroupSummary]:
    """Per benchmark: the overall summary first, then one per modality, question type, answer kind,
    subject and subfield (slices with no key, such as MMMU's modality, are left out)."""
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
