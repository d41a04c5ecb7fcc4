"""Rule rewards for R-GRPO (paper appendix A.4): format, accuracy and their weighted total.

The format reward asks for stage completeness and structure only, never textual overlap with a
reference trajectory (A.4: "avoiding overfitting to fixed expressions"). The accuracy reward
reads the ``<ANSWER>`` stage alone, through the shared matcher, so a correct word buried in the
reasoning earns nothing. The default weights follow EasyR1's recipes (the paper trained on
EasyR1 and does not state its own): ``0.9 * accuracy + 0.1 * format``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from .answers import match_answer
from .scaffold import STAGES, Parsed, names_region, parse

# Format credit in tenths (integers, so a perfect response sums to exactly 1.0): the five
# well-formed stages share 7, and one each goes to stage order, no defect at all, and a
# localization that names a region.
_STAGE_TENTHS = 7


@dataclass(frozen=True)
class RewardWeights:
    """How the reward parts add up to ``score``; set from a recipe through verl's reward kwargs."""

    accuracy: float = 0.9
    format: float = 0.1

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> "RewardWeights":
        """Build from a mapping such as ``{"accuracy": 1.0, "format": 0.5}``; unknown keys are an error."""
        config = dict(config or {})
        known = {f.name for f in fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown reward weight(s) {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**{k: float(v) for k, v in config.items()})


def format_reward(response: object, parsed: Parsed | None = None) -> float:
    """Structure score in [0, 1]: 1.0 exactly for a clean LVKC response, 0.0 with no stage tag."""
    parsed = parsed or parse(response)
    if not parsed.order:
        return 0.0
    flawed = {p.tag for p in parsed.problems if p.kind in ("repeated", "unclosed", "empty", "closed_with_open_tag")}
    well_formed = sum(1 for tag in STAGES if tag in parsed.sections and tag not in flawed)
    tenths = _STAGE_TENTHS * well_formed / len(STAGES)
    tenths += not any(p.kind == "misordered" for p in parsed.problems)
    tenths += not parsed.problems
    tenths += names_region(parsed.get("LOC"))
    return tenths / 10


def accuracy_reward(response: object, ground_truth: object, options: object = None, parsed: Parsed | None = None) -> float:
    """1.0 when the ``<ANSWER>`` stage matches the reference, else 0.0 (no ``<ANSWER>``: 0.0)."""
    parsed = parsed or parse(response)
    answer = parsed.get("ANSWER")
    if not answer:
        return 0.0
    return 1.0 if match_answer(answer, "" if ground_truth is None else str(ground_truth), options) else 0.0


def score_response(
    response: object, ground_truth: object, options: object = None, weights: RewardWeights = RewardWeights()
) -> dict[str, float]:
    """All reward parts of one response and their weighted total ``score``."""
    parsed = parse(response)
    accuracy = accuracy_reward(response, ground_truth, options, parsed)
    fmt = format_reward(response, parsed)
    return {"score": weights.accuracy * accuracy + weights.format * fmt, "accuracy": accuracy, "format": fmt}


def compute_score(
    data_source: str | None,
    solution_str: str,
    ground_truth: str,
    extra_info: Mapping[str, Any] | None = None,
    reward_weights: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """verl's custom reward (``reward.custom_reward_function.path``/``name``).

    ``extra_info["options"]`` maps letters to option texts for multiple choice (``ground_truth``
    is then the letter). ``reward_weights`` comes from the recipe's ``reward_kwargs``.
    """
    options = extra_info.get("options") if isinstance(extra_info, Mapping) else None
    return score_response(solution_str, ground_truth, options, RewardWeights.from_config(reward_weights))
