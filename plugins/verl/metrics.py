"""Per-step R-GRPO metrics from the sessions' ``extra_fields`` (paper Figure 5 tracks the
self-check rate; Tables 4-5 need first- and final-attempt accuracy and the correction rate)."""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

PREFIX = "medsage"


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
    return metrics
