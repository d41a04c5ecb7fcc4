"""Per-step R-GRPO metrics from the sessions' ``extra_fields`` (paper Figure 5 tracks the
self-check rate; Tables 4-5 need first- and final-attempt accuracy and the correction rate)."""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

PREFIX = "medsage"
CAPPED_SPANS = ("tau1", "check", "tau2")  # the self-check loop's generated spans


def self_check_metrics(sessions: Sequence[Mapping], generated_lengths: Sequence[int]) -> dict[str, float]:
    """Means over one training batch (padding rows already removed).

    Args:
        sessions: each session's ``extra_fields`` as the self-check agent loop wrote them.
        generated_lengths: each session's model-generated token count (``response_mask`` sum).
    """
    if not sessions:
        return {}
    mean = lambda key: float(np.mean([float(s[key]) for s in sessions]))  # noqa: E731
    checked = [s["self_check_length"] for s in sessions if s["self_checked"]]
    metrics = {
        f"{PREFIX}/self_check_rate": mean("self_checked"),
        f"{PREFIX}/retry_rate": mean("retried"),
        f"{PREFIX}/correction_rate": mean("r_sc"),
        f"{PREFIX}/first_accuracy": mean("first_correct"),
        f"{PREFIX}/final_accuracy": mean("final_correct"),
        f"{PREFIX}/response_length/mean": float(np.mean(generated_lengths)),
        f"{PREFIX}/self_check_length/mean": float(np.mean(checked)) if checked else 0.0,
    }
    for part in sorted({p for s in sessions for p in s["reward_parts"]}):
        values = [float(s["reward_parts"][part]) for s in sessions if part in s["reward_parts"]]
        metrics[f"{PREFIX}/reward/{part}/mean"] = float(np.mean(values))
    stops = Counter(s["stop_reason"] for s in sessions)
    metrics.update({f"{PREFIX}/stop/{reason}": count / len(sessions) for reason, count in sorted(stops.items())})
    # Share of sessions whose span was cut at its cap: a high tau1 share means attempt_max_tokens
    # (or response_length) truncates answers before the ANSWER stage.
    capped = Counter(span for s in sessions for span in s["capped_spans"])
    metrics.update({f"{PREFIX}/capped/{span}": capped[span] / len(sessions) for span in CAPPED_SPANS})
    return metrics


def effective_group_rate(scores: Sequence[float], uids: Sequence[str]) -> float:
    """Share of prompt groups whose sessions' rewards differ: the groups GRPO learns from (a group
    of equal rewards has advantage 0 everywhere); the "effective samples" of paper Figure 3."""
    groups: dict[str, set[float]] = {}
    for score, uid in zip(scores, uids):
        groups.setdefault(uid, set()).add(round(float(score), 6))
    return float(np.mean([len(values) > 1 for values in groups.values()])) if groups else 0.0
