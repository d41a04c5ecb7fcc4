"""Rewards for R-GRPO (paper appendix A.4): format, accuracy, trajectory consistency, weighted.

The format reward asks for stage completeness and structure only, never textual overlap with a
reference trajectory (A.4: "avoiding overfitting to fixed expressions"). The accuracy reward
reads the ``<ANSWER>`` stage alone, through the shared matcher, so a correct word buried in the
reasoning earns nothing. The default weights follow EasyR1's recipes (the paper trained on
EasyR1 and does not state its own): ``0.9 * accuracy + 0.1 * format``.

The trajectory-consistency reward comes from a trained scorer behind an HTTP service
(:mod:`medsage.reward_fns.consistency`); its weight defaults to 0, which never contacts a scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

from medsage.config import bounded, build

from .answers import extract_answer, judge, question_choices
from .consistency.client import ConsistencyClient, ConsistencyConfig, consistency_client
from .scaffold import STAGES, Parsed, names_region, parse

# Format credit in tenths (integers, so a perfect response sums to exactly 1.0): the five
# well-formed stages share 7, and one each goes to stage order, no defect at all, and a
# localization that names a region.
_STAGE_TENTHS = 7


@dataclass(frozen=True)
class RewardWeights:
    """How the reward parts add up to ``score``; set from a recipe through verl's reward kwargs."""

    accuracy: float = bounded(0.9, ge=0)
    format: float = bounded(0.1, ge=0)
    consistency: float = bounded(0.0, ge=0)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> "RewardWeights":
        """Build from a mapping such as ``{"accuracy": 1.0, "format": 0.5}`` with the one recipe loader
        (:mod:`medsage.config`): an unknown key or a value that is not a number is an error.

        verl calls the reward once per response with the same ``reward_kwargs``, so a checked result is
        reused for an equal mapping (the weights are frozen); a mapping that is not hashable is built anew.
        """
        if not config:
            return _DEFAULT_WEIGHTS
        try:  # each value's type is part of the key: 1 and True are equal, but True is refused
            key = tuple(sorted((k, type(v), v) for k, v in config.items()))
            hash(key)
        except (TypeError, AttributeError):
            return build(cls, dict(config), "reward_kwargs", "reward_weights")
        return _weights_from_items(key)


_DEFAULT_WEIGHTS = RewardWeights()


@lru_cache(maxsize=64)
def _weights_from_items(items: tuple) -> RewardWeights:
    return build(RewardWeights, {k: v for k, _, v in items}, "reward_kwargs", "reward_weights")


@dataclass(frozen=True)
class RewardKwargs:
    """What a recipe's ``reward_kwargs`` may hold (the keyword arguments of :func:`compute_score`), so the
    R-GRPO entry point checks them before training instead of a reward worker at the first sample."""

    reward_weights: RewardWeights = field(default_factory=RewardWeights)
    consistency: ConsistencyConfig | None = None

    def __post_init__(self) -> None:
        if self.reward_weights.consistency and self.consistency is None:
            raise ValueError("consistency.url: required when reward_weights.consistency is not 0 (the scorer's address)")


def format_reward(response: object, parsed: Parsed | None = None) -> float:
    """Structure score in [0, 1]: 1.0 exactly for a clean LVKC response, 0.0 with no stage tag."""
    parsed = parsed or parse(response)
    if not parsed.problems:  # every stage present, well formed, in order: 7 + 1 + 1 tenths, and the region's
        return (9 + names_region(parsed.get("LOC"))) / 10
    if not parsed.order:
        return 0.0
    flawed = {p.tag for p in parsed.problems if p.kind in ("repeated", "unclosed", "empty", "closed_with_open_tag")}
    well_formed = sum(1 for tag in STAGES if tag in parsed.sections and tag not in flawed)
    tenths = _STAGE_TENTHS * well_formed / len(STAGES)
    tenths += not any(p.kind == "misordered" for p in parsed.problems)
    tenths += not parsed.problems
    tenths += names_region(parsed.get("LOC"))
    return tenths / 10


def accuracy_reward(
    response: object,
    ground_truth: object,
    options: object = None,
    parsed: Parsed | None = None,
    require_answer_tag: bool = True,
    question: object = None,
) -> float:
    """1.0 when the answer matches the reference, else 0.0.

    ``require_answer_tag`` (default True, the reward's setting): only the ``<ANSWER>`` stage is
    read and a response without one earns 0.0, so the policy is paid for the scaffold's format as
    well as the fact. False reads a missing stage the way evaluation does (``\\boxed{}``, "the
    answer is ...", the final line; :func:`medsage.reward_fns.answers.extract_answer`).
    ``question`` lets a yes/no statement about the asked predicate count ("not normal"), and makes
    an "A or B" question a choice between its two alternatives, as evaluation scores it ("liver?
    kidney?" names both and earns nothing; :func:`medsage.reward_fns.answers.question_choices`).
    """
    parsed = parsed or parse(response)
    answer = parsed.get("ANSWER") if require_answer_tag else extract_answer(response)[0]
    if not answer:
        return 0.0
    reference = "" if ground_truth is None else str(ground_truth)
    choices = question_choices(question, reference) if question else ()
    return 1.0 if judge(answer, reference, options, question=question or None, choices=choices).correct else 0.0


def score_response(
    response: object,
    ground_truth: object,
    options: object = None,
    weights: RewardWeights = RewardWeights(),
    consistency: ConsistencyClient | None = None,
    question: str = "",
    require_answer_tag: bool = True,
) -> dict[str, float]:
    """All reward parts of one response and their weighted total ``score``.

    With ``weights.consistency`` non-zero, ``consistency`` scores (``question``, ``response``) and
    the result gains ``consistency`` and ``consistency_unreachable`` (1.0 when the ``zero`` policy
    stood in for an unreachable scorer, so verl's per-key means report the rate).
    """
    parsed = parse(response)
    accuracy = accuracy_reward(response, ground_truth, options, parsed, require_answer_tag, question)
    fmt = format_reward(response, parsed)
    parts = {"score": weights.accuracy * accuracy + weights.format * fmt, "accuracy": accuracy, "format": fmt}
    if weights.consistency:
        if consistency is None:
            raise ValueError("reward weight consistency is not 0 but no scorer is configured (reward_kwargs.consistency.url)")
        result = consistency.score(question, response if isinstance(response, str) else str(response or ""))
        parts["score"] += weights.consistency * result.score
        parts["consistency"] = result.score
        parts["consistency_unreachable"] = 0.0 if result.reachable else 1.0
    return parts


def compute_score(
    data_source: str | None,
    solution_str: object,
    ground_truth: object,
    extra_info: Mapping[str, Any] | None = None,
    reward_weights: Mapping[str, Any] | None = None,
    consistency: Mapping[str, Any] | None = None,
    require_answer_tag: bool = True,
    **kwargs: Any,
) -> dict[str, float]:
    """verl's custom reward (``reward.custom_reward_function.path``/``name``).

    ``extra_info["options"]`` holds the option texts in letter order for multiple choice, as the RL
    parquet writes them (``RLExtraInfo``; a letter-to-text mapping is read too), and ``ground_truth``
    is then the letter; ``extra_info["question"]`` is what the consistency scorer reads beside the
    response. ``reward_weights`` and ``consistency`` (``{url, timeout_s, on_unreachable}``) come
    from the recipe's ``reward_kwargs``, and so does ``require_answer_tag`` (default True: only the
    ``<ANSWER>`` stage is paid; see :func:`accuracy_reward`).
    """
    info = extra_info if type(extra_info) is dict or isinstance(extra_info, Mapping) else {}
    weights = RewardWeights.from_config(reward_weights)
    client = consistency_client(consistency) if weights.consistency and consistency else None
    question = info.get("question")
    return score_response(
        solution_str, ground_truth, info.get("options"), weights, client, question if isinstance(question, str) else "",
        require_answer_tag,
    )
