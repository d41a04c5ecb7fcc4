"""Evaluation prompts: the LVKC prompt the SFT and RL data use (paper section 3.2; data_gen's
``lvkc_instruction``, so the model is scored on the instruction it was trained on), plain baselines,
and the inference-time self-check modes. The self-check and retry instructions themselves are the
R-GRPO templates (shipped in plugins/verl/templates/, rendered by ``medsage.plugins.verl.settings``), so
a model reviews itself at test time with the words it was trained on (section 3.3).

A conversation is a list of :class:`Turn`; every backend turns that into its own wire format, so
the prompt text is identical whichever engine generates.
"""

from __future__ import annotations

from dataclasses import dataclass

from medsage.data_gen.prompts import lvkc_instruction

from .benchmarks import ImageRef, Item


@dataclass(frozen=True)
class Turn:
    """One chat message; images come before the text, as in the SFT data (``<image>\\n<Instructions>``)."""

    role: str
    text: str
    images: tuple[ImageRef, ...] = ()


def _options_block(options: dict[str, str]) -> str:
    return "Options:\n" + "\n".join(f"{letter}. {text}" for letter, text in options.items())


def plain_instruction(question: str, options: dict[str, str] | None = None) -> str:
    """The usual direct-answer baseline prompt (LLaVA-Med / VLMEvalKit wording)."""
    if options:
        return f"{question.strip()}\n{_options_block(options)}\nAnswer with the option's letter from the given choices directly."
    return f"{question.strip()}\nAnswer the question using a single word or phrase."


PROMPT_BUILDERS = {"lvkc": lvkc_instruction, "plain": plain_instruction}


def first_turn(item: Item, style: str) -> list[Turn]:
    """The conversation that asks ``item``'s question in the given prompt style."""
    if style not in PROMPT_BUILDERS:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {sorted(PROMPT_BUILDERS)}")
    return [Turn("user", PROMPT_BUILDERS[style](item.question, item.options or None), item.images)]
