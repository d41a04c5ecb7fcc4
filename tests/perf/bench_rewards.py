"""compute_score over one GRPO batch (512 prompts x 6 rollouts) of ~1,000-token LVKC responses.

Run: ``.venv/bin/python tests/perf/bench_rewards.py``. Prints responses per second on one core
and the ratio to the issue's goal (20,000/s). The batch mixes multiple choice, yes/no and open
questions, and one response in ten is malformed the way early-RL policies write (a stage closed
with its opening tag, a missing stage, text after the answer).
"""

from __future__ import annotations

import random
import time

from medsage.reward_fns import compute_score

GOAL_PER_S = 20_000
CHARS_PER_TOKEN = 4.2  # English radiology prose under Qwen2.5's tokenizer
WORDS = (
    "the lesion appears hypodense with smooth margins and homogeneous attenuation adjacent to "
    "the right hepatic lobe no calcification or fat is seen surrounding parenchyma enhances normally "
    "findings favour a benign cyst over metastasis given the sharp interface and water density"
).split()
OPTIONS = {"A": "Simple cyst", "B": "Metastasis", "C": "Hemangioma", "D": "Abscess"}


def prose(rng: random.Random, chars: int) -> str:
    out, n = [], 0
    while n < chars:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out).capitalize() + "."


def response(rng: random.Random, i: int) -> tuple[str, str, dict | None]:
    kind = i % 3
    answer, truth, extra = {
        0: ("The answer is A. Simple cyst", "A", {"options": OPTIONS}),
        1: ("No, there is no metastasis.", "no", None),
        2: ("Findings are consistent with a simple hepatic cyst", "simple hepatic cyst", None),
    }[kind]
    budget = int(1000 * CHARS_PER_TOKEN)
    text = (
        f"{prose(rng, 300)} <LOC>The right hepatic lobe "
        f'{{"box_2d": [{rng.randint(0, 400)}, 210, 640, 580], "label": "hypodense lesion"}}</LOC>'
        f"<VISUAL>{prose(rng, budget * 2 // 5)}</VISUAL><KNOWLEDGE>{prose(rng, budget // 4)}</KNOWLEDGE>"
        f"<CON>{prose(rng, budget // 5)}</CON><ANSWER>{answer}</ANSWER>"
    )
    if i % 10 == 0:
        text = text.replace("</KNOWLEDGE>", "<KNOWLEDGE>").replace("<CON>", "", 1) + " trailing words"
    return text, truth, extra


def main() -> None:
    rng = random.Random(0)
    batch = [response(rng, i) for i in range(512 * 6)]
    mean_chars = sum(len(r[0]) for r in batch) / len(batch)
    compute_score("warmup", *batch[0])
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        total = sum(compute_score("bench", text, truth, extra)["score"] for text, truth, extra in batch)
        best = max(best, len(batch) / (time.perf_counter() - start))
    print(f"responses: {len(batch)}  mean length: {mean_chars:.0f} chars (~{mean_chars / CHARS_PER_TOKEN:.0f} tokens)")
    print(f"mean score: {total / len(batch):.3f}")
    print(f"compute_score: {best:,.0f} responses/s on one core; goal {GOAL_PER_S:,}/s; ratio {best / GOAL_PER_S:.2f}x")


if __name__ == "__main__":
    main()
