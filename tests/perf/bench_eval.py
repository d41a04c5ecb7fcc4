"""Evaluation throughput, measured side by side in one run.

Run: ``python tests/perf/bench_eval.py``. Prints

1. closed-question scoring (yes/no and multiple choice through ``score_item``, which is the shared
   matcher) in predictions per second and as a ratio to the issue's goal (50,000/s), for short
   direct answers (plain prompts) and for LVKC responses of about 300 tokens, whose ``<ANSWER>``
   stage is parsed out first; answers are drawn from a pool of phrasings, so repeats occur as in a
   real benchmark, and a cold run with every answer unique is printed too;
2. HF-backend generation with the tiny Qwen2.5-VL: batched (8 per call) over per-sample, as a
   ratio of wall times for the same 16 questions (best of three, interleaved).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from medsage.eval.benchmarks import Item
from medsage.eval.scoring import _decide, score_item
from medsage.reward_fns.scaffold import Scaffold

GOAL_PER_S = 50_000
N = 60_000
OPTIONS = {"A": "Simple cyst", "B": "Metastasis", "C": "Hemangioma", "D": "Abscess"}
YES_NO = ["Yes", "No", "yes.", "No, there is no lesion.", "Yes, the liver is enlarged.", "There is no effusion.",
          "Normal study.", "**Yes**", "No abnormality; not enlarged.", "Yes - a nodule is present."]
MC = ["C", "(C)", "C. Hemangioma", "The answer is C.", "Findings are most consistent with hemangioma.",
      "B", "**B. Metastasis**", "Answer: D", "A or C", "It is likely an abscess (D)."]
PROSE = ("the lesion appears hypodense with smooth margins adjacent to the right hepatic lobe no calcification "
         "is seen surrounding parenchyma enhances normally findings favour a benign process").split()


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(PROSE) for _ in range(words)).capitalize() + "."


def _lvkc(rng: random.Random, answer: str) -> str:
    return Scaffold(_prose(rng, 40), _prose(rng, 90), _prose(rng, 60), _prose(rng, 30), answer).render()


def _workload(style: str, unique: bool) -> list[tuple[Item, str]]:
    rng = random.Random(0)
    yn = Item("b", "yn", "Is there a lesion?", "yes", ())
    mc = Item("b", "mc", "What is it?", "C", (), options=OPTIONS)
    pairs = []
    for i in range(N):
        item, pool = (yn, YES_NO) if i % 2 else (mc, MC)
        answer = pool[rng.randrange(len(pool))] + (f" (case {i})" if unique else "")
        pairs.append((item, answer if style == "plain" else _lvkc(rng, answer)))
    return pairs


def scoring_rate(style: str, unique: bool) -> float:
    pairs = _workload(style, unique)
    _decide.cache_clear()
    start = time.perf_counter()
    for item, response in pairs:
        score_item(item, response, style)
    return len(pairs) / (time.perf_counter() - start)


def generation_ratio() -> tuple[float, float]:
    from medsage.data_gen.phantom import write_phantom_benchmark
    from medsage.eval.backends import GenerationParams, HFBackend
    from medsage.eval.benchmarks import load_benchmark
    from medsage.eval.prompts import first_turn
    from medsage.plugins.tiny_model import build_tiny_qwen2_5_vl

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_qwen2_5_vl(Path(tmp) / "model", seed=0)
        items = load_benchmark("phantom", write_phantom_benchmark(Path(tmp) / "bench", n=16, seed=0))
        conversations = [first_turn(item, "lvkc") for item in items]
        params = GenerationParams(max_new_tokens=32)
        backends = {size: HFBackend(model, batch_size=size) for size in (1, 8)}
        backends[8].generate(conversations[:2], params)  # warm-up
        times = {size: float("inf") for size in backends}
        for _ in range(3):  # interleaved, best of three each: the machine is shared
            for size, backend in backends.items():
                start = time.perf_counter()
                backend.generate(conversations, params)
                times[size] = min(times[size], time.perf_counter() - start)
    return times[1], times[8]


def main() -> None:
    for style, unique in (("plain", False), ("lvkc", False), ("lvkc", True)):
        rate = scoring_rate(style, unique)
        label = f"closed scoring, {style} responses, {'every answer unique' if unique else 'pooled phrasings'}"
        print(f"{label:<62} {rate:>10,.0f} predictions/s   x{rate / GOAL_PER_S:.2f} of goal {GOAL_PER_S:,}/s")
    per_sample, batched = generation_ratio()
    print(f"HF generation, 16 questions x 32 tokens: per-sample {per_sample:.2f} s, batched(8) {batched:.2f} s, "
          f"speed-up x{per_sample / batched:.2f}")


if __name__ == "__main__":
    main()
