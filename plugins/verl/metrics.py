"""Per-step R-GRPO metrics from the sessions' outcomes (paper Figure 5 tracks the self-check rate;
Tables 4-5 need first- and final-attempt accuracy and the correction rate)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np

from .sessions import GENERATED_SPANS, SessionOutcome, read_outcomes

PREFIX = "medsage"


def self_check_metrics(
    sessions: Sequence[Mapping[str, Any] | SessionOutcome], generated_lengths: Sequence[int]
) -> dict[str, float]:
    """Means over one training batch (padding rows already removed).

    Args:
        sessions: each session's :class:`SessionOutcome`, or the ``extra_fields`` verl carried it in.
        generated_lengths: each session's model-generated token count (``response_mask`` sum).
    """
    if not sessions:
        return {}
    outcomes = read_outcomes(sessions)
    mean = lambda values: float(np.mean([float(v) for v in values]))  # noqa: E731
    checked = [s.self_check_length for s in outcomes if s.self_checked]
    metrics = {
        f"{PREFIX}/self_check_rate": mean(s.self_checked for s in outcomes),
        f"{PREFIX}/retry_rate": mean(s.retried for s in outcomes),
        f"{PREFIX}/correction_rate": mean(s.r_sc for s in outcomes),
        f"{PREFIX}/first_accuracy": mean(s.first_correct for s in outcomes),
        f"{PREFIX}/final_accuracy": mean(s.final_correct for s in outcomes),
        f"{PREFIX}/response_length/mean": float(np.mean(generated_lengths)),
        f"{PREFIX}/self_check_length/mean": float(np.mean(checked)) if checked else 0.0,
    }
    for part in sorted({p for s in outcomes for p in s.reward_parts}):
        metrics[f"{PREFIX}/reward/{part}/mean"] = mean(s.reward_parts[part] for s in outcomes if part in s.reward_parts)
    stops = Counter(s.stop_reason for s in outcomes)
    metrics.update({f"{PREFIX}/stop/{reason}": count / len(outcomes) for reason, count in sorted(stops.items())})
    # Share of sessions whose span was cut at its cap: a high tau1 share means attempt_max_tokens
    # (or response_length) truncates answers before the ANSWER stage.
    capped = Counter(span for s in outcomes for span in s.capped_spans)
    metrics.update({f"{PREFIX}/capped/{span}": capped[span] / len(outcomes) for span in GENERATED_SPANS})
    return metrics


def effective_group_rate(scores: Sequence[float], uids: Sequence[str]) -> float:
    """Share of prompt groups whose sessions' rewards differ: the groups GRPO learns from (a group
    of equal rewards has advantage 0 everywhere); the "effective samples" of paper Figure 3."""
    groups: dict[str, set[float]] = {}
    for score, uid in zip(scores, uids):
        groups.setdefault(uid, set()).add(round(float(score), 6))
    return float(np.mean([len(values) > 1 for values in groups.values()])) if groups else 0.0
