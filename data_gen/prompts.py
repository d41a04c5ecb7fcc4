"""Prompts: the one LVKC instruction and the stage-wise generation prompts (paper Figures 8-10, A.3.4-A.3.5).

``lvkc_instruction`` is THE user turn for LVKC answers: SFT data, RL prompts and evaluation all
call it, so the model is trained and scored on the same instruction. No system prompt is used.

The generation prompts live as editable text files in ``templates/`` (``loc.txt`` = Figure 8,
``visual.txt`` = Figure 9, ``knowledge.txt`` = Figure 10; ``con.txt`` is the reasoning stage of
A.3.4, whose prompt the paper does not print; ``judge.txt`` is the A.3.5 verification). Figure 11
(the content integrator, "assemble in order without adding new information") is deterministic
and is done by :meth:`medsage.reward_fns.scaffold.Scaffold.render`. A recipe may point
``generation.prompt_dir`` at a copy of the folder to edit them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medsage.reward_fns.answers import LETTERS, coerce_options
from medsage.reward_fns.scaffold import ANSWER, CON, GRID, KNOWLEDGE, LOC, STAGES, VISUAL, tagged

TEMPLATE_DIR = Path(__file__).parent / "templates"
STAGE_PROMPTS = ("loc", "visual", "knowledge", "con", "judge")
# The stage each generation prompt writes; its file names the tags as the ``{tags}`` field.
PROMPT_STAGES: dict[str, str] = {"loc": LOC, "visual": VISUAL, "knowledge": KNOWLEDGE, "con": CON}

# The interpretation templates T of Eq. 3: the angles from which knowledge is matched.
KNOWLEDGE_TEMPLATES: dict[str, str] = {
    "anatomic": "anatomical compartment and relations: which structure the finding belongs to and what surrounds it",
    "morphologic": "imaging morphology: density or signal, shape, margins and size criteria",
    "differential": "differential diagnosis: the criteria that separate the answer from the alternatives",
}

# What each stage holds, as the instruction describes it to the model.
STAGE_GUIDE: dict[str, str] = {
    LOC: f'where to look (boxes as {{"box_2d": [ymin, xmin, ymax, xmax], "label": "..."}} on a 0-{GRID} grid)',
    VISUAL: "what is seen",
    KNOWLEDGE: "the relevant medical knowledge",
    CON: "the conclusion",
    ANSWER: "the final answer",
}
LVKC_FORMAT = (
    f"Answer in five tagged stages: {''.join(tagged(tag, STAGE_GUIDE[tag]) for tag in STAGES)}. "
    f"In <{ANSWER}>, give the option letter and its text for a multiple-choice question, and begin with "
    "Yes or No for a yes/no question."
)


def question_with_options(question: str, options: dict[str, str] | list[str] | None = None) -> str:
    """The question followed by its lettered options, one per line."""
    opts = coerce_options(options) if options is not None else {}
    lines = [question.strip()]
    if opts:
        lines.append("Options:")
        lines += [f"{letter}. {opts[letter]}" for letter in LETTERS if letter in opts]
    return "\n".join(lines)


def lvkc_instruction(question: str, options: dict[str, str] | list[str] | None = None) -> str:
    """The user instruction for an LVKC answer (without the ``<image>`` token; callers add it)."""
    return f"{question_with_options(question, options)}\n{LVKC_FORMAT}"


@dataclass(frozen=True)
class StagePrompts:
    """The stage prompt texts, formatted with ``str.format`` fields named in each file; a stage's
    prompt also gets ``{tags}``, its empty tag pair from the scaffold (``<LOC></LOC>``)."""

    texts: dict[str, str]

    @classmethod
    def load(cls, directory: Path | None = None) -> "StagePrompts":
        directory = Path(directory) if directory else TEMPLATE_DIR
        texts = {}
        for name in STAGE_PROMPTS:
            path = directory / f"{name}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"stage prompt {path} not found (needed: {', '.join(STAGE_PROMPTS)})")
            texts[name] = path.read_text(encoding="utf-8")
        return cls(texts)

    def render(self, name: str, **fields: str) -> str:
        try:
            tags = {"tags": tagged(PROMPT_STAGES[name], "")} if name in PROMPT_STAGES else {}
            return self.texts[name].format(**tags, **fields)
        except KeyError as err:
            raise KeyError(f"prompt {name!r} uses field {err} that was not provided") from None
