"""The MEDSAGE reward in EasyR1's batch form (the framework the paper trained with, B.1).

A stock EasyR1 config names this file directly::

    worker.reward.reward_function=/path/to/reward_fns/easyr1.py:compute_score

EasyR1 gives each input ``response``, ``response_length`` and ``ground_truth`` only. Multiple
choice therefore needs the options inside ``ground_truth``: either the plain letter (matched
against letter-form answers only) or a JSON object ``{"answer": "C", "options": {"A": ..., ...}}``.
The object may carry the ``question`` too, which the verl reward reads from ``extra_info``: then a
yes/no statement about what it asks counts ("The heart is enlarged.") and an "A or B" question is
scored as a choice between the two.

The file is also loaded by path, outside any package, so it imports the installed ``medsage``.
"""

from __future__ import annotations

import json
from typing import Any

from medsage.reward_fns.rewards import RewardWeights, score_response

REWARD_TYPE = "batch"


def _reference(ground_truth: object) -> tuple[object, object, str]:
    """(answer, options, question) from a plain reference or a JSON object holding them."""
    if isinstance(ground_truth, str) and ground_truth.lstrip().startswith("{"):
        try:
            obj = json.loads(ground_truth)
        except ValueError:
            return ground_truth, None, ""
        if isinstance(obj, dict) and "answer" in obj:
            question = obj.get("question")
            return obj["answer"], obj.get("options"), question if isinstance(question, str) else ""
    return ground_truth, None, ""


def compute_score(reward_inputs: list[dict[str, Any]], accuracy_weight: float = 0.9, format_weight: float = 0.1) -> list[dict[str, float]]:
    """Score a batch; each result has EasyR1's ``overall`` plus ``accuracy`` and ``format``."""
    weights = RewardWeights(accuracy=accuracy_weight, format=format_weight)
    results = []
    for item in reward_inputs:
        reference, options, question = _reference(item.get("ground_truth"))
        parts = score_response(item.get("response", ""), reference, options, weights, question=question)
        results.append({"overall": parts["score"], "accuracy": parts["accuracy"], "format": parts["format"]})
    return results
