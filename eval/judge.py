"""LLM judges through an OpenAI-compatible endpoint, cached by the project's one client.

* :func:`judge_open_answers`: 0/1 correctness of open-ended answers (what the strongest suites
  report for open questions; a number scored this way is labelled "judge" in every report).
* :func:`judge_reasoning`: the paper's Table 2 GPT-score, 1-5 for Localization, Visual Analysis,
  Knowledge and Reasoning (section 4.4), read from the LVKC stages of a response.

Replies are validated (a digit; a JSON object with four integer scores in 1..5); an invalid reply
is retried by the client and never cached, so a report is a pure function of predictions + cache.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from medsage.data_gen.llm_client import LLMClient, LLMConfig, image_content_async
from medsage.reward_fns.answers import AnswerType

from .benchmarks import Item
from .scoring import response_answer

REASONING_DIMENSIONS: dict[str, str] = {
    "localization": "Localization",
    "visual_analysis": "Visual Analysis",
    "knowledge": "Knowledge",
    "reasoning": "Reasoning",
}

OPEN_JUDGE_PROMPT = """You grade answers to medical visual questions.
Question: {question}
Reference answer: {reference}
Model answer: {answer}
Does the model answer state the same medical fact as the reference answer (synonyms and extra
correct detail are fine; a different or hedged finding is not)? Reply with one digit: 1 if yes, 0 if no."""

REASONING_JUDGE_PROMPT = """You are an expert radiologist grading a model's structured reasoning about the attached medical image.
Question: {question}
Reference answer: {reference}
Model response:
{response}

Score each dimension from 1 (poor) to 5 (excellent):
- localization: does it identify the image region relevant to the question?
- visual_analysis: are the described visual findings accurate and relevant?
- knowledge: is the medical knowledge correct and pertinent?
- reasoning: does the conclusion follow from the evidence, without unsupported leaps?
Reply with only a JSON object: {{"localization": n, "visual_analysis": n, "knowledge": n, "reasoning": n}}"""


@dataclass(frozen=True)
class ReasoningScores:
    """One response's Table 2 scores (1-5 each)."""

    localization: int
    visual_analysis: int
    knowledge: int
    reasoning: int

    @property
    def average(self) -> float:
        return (self.localization + self.visual_analysis + self.knowledge + self.reasoning) / 4


def _verdict(text: str) -> bool | None:
    digits = re.findall(r"\b[01]\b", text)
    return digits[0] == "1" if len(set(digits)) == 1 else None


def parse_reasoning_scores(text: str) -> ReasoningScores | None:
    """The four scores from a judge reply (the first JSON object in it), or None if invalid."""
    match = re.search(r"\{[^{}]*\}", text)
    if not match:
        return None
    try:
        obj = json.loads(match.group(0))
        values = {k: obj[k] for k in REASONING_DIMENSIONS}
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5 for v in values.values()):
        return None
    return ReasoningScores(**values)


async def _judge_open(client: LLMClient, item: Item, answer: str) -> bool:
    prompt = OPEN_JUDGE_PROMPT.format(question=item.question, reference=item.answer, answer=answer)
    reply = await client.chat(
        [{"role": "user", "content": prompt}], temperature=0.0, max_tokens=4, validate=lambda t: _verdict(t) is not None
    )
    return bool(_verdict(reply.text))


def judge_open_answers(config: LLMConfig, items: Sequence[Item], responses: Sequence[str], style: str) -> dict[str, bool]:
    """0/1 verdicts for the open questions among ``items`` that have an answer to judge (by item id)."""
    todo = []
    for item, response in zip(items, responses):
        answer = response_answer(response, style)
        if item.kind is AnswerType.OPEN and answer:
            todo.append((item, answer))

    async def run() -> list[bool]:
        async with LLMClient(config) as client:
            return await asyncio.gather(*(_judge_open(client, item, answer) for item, answer in todo))

    return {item.id: verdict for (item, _), verdict in zip(todo, asyncio.run(run()) if todo else [])}


async def _judge_reasoning(client: LLMClient, item: Item, response: str, with_image: bool) -> ReasoningScores:
    text = REASONING_JUDGE_PROMPT.format(question=item.question, reference=item.answer, response=response)
    content: list[dict] = [await image_content_async(ref) for ref in item.images] if with_image else []
    content.append({"type": "text", "text": text})
    reply = await client.chat(
        [{"role": "user", "content": content}],
        temperature=0.0,
        max_tokens=64,
        validate=lambda t: parse_reasoning_scores(t) is not None,
    )
    scores = parse_reasoning_scores(reply.text)
    if scores is None:  # the client returns only replies the validator accepted; kept for type narrowing
        raise ValueError(f"judge reply for {item.id} has no valid scores: {reply.text!r}")
    return scores


def judge_reasoning(
    config: LLMConfig, items: Sequence[Item], responses: Sequence[str], with_image: bool = True
) -> dict[str, ReasoningScores]:
    """Table 2 scores for every response (by item id)."""

    async def run() -> list[ReasoningScores]:
        async with LLMClient(config) as client:
            return await asyncio.gather(*(_judge_reasoning(client, i, r, with_image) for i, r in zip(items, responses)))

    return {item.id: s for item, s in zip(items, asyncio.run(run()) if items else [])}
