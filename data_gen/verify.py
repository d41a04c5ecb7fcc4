"""Trajectory verification (paper A.3.5): rule checks, then a judge model through an OpenAI-compatible endpoint.

Rules: the scaffold is valid (all five stages, in order, closed); the ANSWER stage gives the
reference answer under the shared matcher (the same code as the RL reward and the evaluation);
the label does not leak into the preamble, LOC, VISUAL or KNOWLEDGE text (the stage prompts
forbid it, Figures 8-10). A trajectory that passes the rules goes to the judge (Qwen2.5-VL-72B in
the paper), which looks for cross-stage conflicts and unsupported steps. Rejected trajectories
keep their reasons and become the scorer's negatives (A.4).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from medsage.data_gen.instructions import Sample
from medsage.data_gen.llm_client import LLMClient, image_content_async
from medsage.data_gen.prompts import StagePrompts, question_with_options
from medsage.data_gen.trajectories import LABEL_LEAK, Trajectory
from medsage.reward_fns.answers import match_answer, normalize
from medsage.reward_fns.scaffold import ANSWER, KNOWLEDGE, LOC, VISUAL, parse

LEAK_STAGES = ("preamble", LOC, VISUAL, KNOWLEDGE)
_JSON_RE = re.compile(r"\{.*\}", re.DOTALL)


def leaks(text: str, term: str) -> bool:
    """Whether ``term`` appears in ``text`` as whole words, ignoring case and punctuation."""
    needle = normalize(term)
    return bool(needle) and f" {needle} " in f" {normalize(text)} "


def rule_reasons(text: str, sample: Sample) -> list[str]:
    """Why a trajectory breaks the rules (empty when it passes)."""
    parsed = parse(text)
    reasons = []
    if not parsed.valid:
        reasons.append("invalid_scaffold:" + ",".join(sorted({p.kind for p in parsed.problems})))
    if not match_answer(parsed.get(ANSWER) or "", sample.answer, sample.options or None):
        reasons.append("wrong_answer")
    for stage in LEAK_STAGES:
        body = parsed.preamble if stage == "preamble" else parsed.get(stage) or ""
        if any(leaks(body, term) for term in sample.leak_terms):
            reasons.append(f"{LABEL_LEAK}:{stage}")
    return reasons


def json_object(reply: str) -> dict | None:
    """The JSON object in a model's reply (models wrap it in prose or code fences), or None."""
    m = _JSON_RE.search(reply or "")
    try:
        data = json.loads(m.group(0)) if m else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def parse_verdict(reply: str) -> tuple[bool, list[str]] | None:
    """``(consistent, issues)`` from the judge's JSON reply, or None when it is not that JSON."""
    data = json_object(reply)
    if data is None or not isinstance(data.get("consistent"), bool):
        return None
    issues = data.get("issues") or []
    return data["consistent"], [str(i) for i in issues] if isinstance(issues, list) else [str(issues)]


class Verifier:
    """Rule checks always; the judge when a client is given (``judge=None`` means rules only)."""

    def __init__(self, judge: LLMClient | None, prompts: StagePrompts, dataset_dir: Path, max_tokens: int = 256):
        self.judge, self.prompts, self.dataset_dir, self.max_tokens = judge, prompts, Path(dataset_dir), max_tokens

    async def verify(self, sample: Sample, trajectory: Trajectory) -> Trajectory:
        reasons = rule_reasons(trajectory.text, sample)
        if not reasons and self.judge is not None:
            reasons = await self._judge(sample, trajectory)
        return replace(trajectory, accepted=not reasons, reasons=tuple(reasons))

    async def _judge(self, sample: Sample, trajectory: Trajectory) -> list[str]:
        prompt = self.prompts.render(
            "judge", prompt=question_with_options(sample.question, sample.options or None),
            answer=sample.answer_text, trajectory=trajectory.text)
        messages = [{"role": "user", "content": [await image_content_async(self.dataset_dir / sample.image),
                                                 {"type": "text", "text": prompt}]}]
        reply = await self.judge.chat(messages, temperature=0.0, max_tokens=self.max_tokens,
                                      validate=lambda text: parse_verdict(text) is not None)
        consistent, issues = parse_verdict(reply.text)
        return [] if consistent else [f"judge:{i}" for i in (issues or ["inconsistent"])]
