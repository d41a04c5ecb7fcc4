"""The reward's cost against a floor measured in the same run (issue 13): absolute throughput does
not travel between machines, a ratio to the cheapest possible pass over the same text does.

Run: ``.venv/bin/python tests/perf/bench_matcher_ratio.py``. Prints, for a GRPO batch (512 prompts
x 6 rollouts) of ~1,000-token LVKC responses (``bench_rewards``'s batch):

1. ``compute_score`` over the batch / one regex pass that finds the stage tags in it;
2. the same ratio for closed questions (multiple choice and yes/no) whose answers are all
   different, so no verdict comes from the matcher's cache: the same LVKC responses (one in ten
   malformed, as in the mixed batch) with each ``<ANSWER>`` stage replaced by a unique one.

Goal: both at most 5x. Each line is printed twice: for the reward run from its source, then for the
compiled reward (README "A compiled reward": ``MEDSAGE_COMPILE=1``, built here into a temporary folder
with the README's command and timed in a child process). Each figure is the least of nine runs, floor and score interleaved, timed in
CPU time of this thread (``time.thread_time``), so time the machine gives to other processes counts
on neither side, and the least-disturbed run stands for each (on a shared machine the median of the
same code moved between 7x and 10x within an hour, as the CPU's speed did); every matcher cache is
emptied before each run (a new GRPO step brings new answers;
only the repeats within a step hit them). Two parts are printed beside them: the scaffold parse alone
(``parse``, which the reward runs once per response) and ``compute_score`` with every verdict a
constant (the parse, the format reward, the reward's and the matcher's own calls): what no change to
the verdicts can remove.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

import compiled_reward  # noqa: E402
from bench_rewards import OPTIONS, response  # noqa: E402

from importlib.machinery import EXTENSION_SUFFIXES  # noqa: E402
from unittest import mock  # noqa: E402

from medsage.reward_fns import answers, compute_score  # noqa: E402
from medsage.reward_fns.scaffold import parse  # noqa: E402

GOAL_RATIO = 5.0
STAGE_TAGS = re.compile(r"</?(?:LOC|VISUAL|KNOWLEDGE|CON|ANSWER)>")
FINDINGS = ("cyst", "metastasis", "hemangioma", "abscess", "calcification", "fat", "enhancement", "margin")


def unique_closed(rng: random.Random, i: int) -> tuple[str, str, dict | None]:
    """An LVKC response to a closed question whose answer text no other response repeats."""
    finding, segment = FINDINGS[i % len(FINDINGS)], i
    if i % 2:
        letter = "ABCD"[i % 4]
        answer = f"The answer is {letter}. {OPTIONS[letter]}, seen in segment {segment}."
        truth, extra = "A", {"options": OPTIONS}
    else:
        answer = f"{'Yes' if i % 4 else 'No'}, {finding} {'is' if i % 4 else 'is not'} seen in segment {segment}."
        truth, extra = "yes", None
    text, _, _ = response(rng, i)  # the mixed batch's response i: well formed but one in ten, as there
    head = text[: text.index("<ANSWER>")]
    return f"{head}<ANSWER>{answer}</ANSWER>", truth, extra


def _ratio(batch: list[tuple[str, str, dict | None]], rounds: int = 9) -> tuple[float, dict[str, float]]:
    """(compute_score / floor, the least of ``rounds`` seconds of each timed pass)."""
    def floor() -> int:
        return sum(len(STAGE_TAGS.findall(text)) for text, _, _ in batch)

    def score() -> float:
        return sum(compute_score("bench", text, truth, extra)["score"] for text, truth, extra in batch)

    def parsed() -> int:
        return sum(len(parse(text).sections) for text, _, _ in batch)

    def without_matcher() -> float:
        constant = lambda *args: answers.Verdict(True, True)  # noqa: E731
        with mock.patch.object(answers, "_verdict_cached", constant), mock.patch.object(answers, "_verdict", constant):
            return score()

    times: dict[str, list[float]] = {"floor": [], "score": [], "parse": [], "no_matcher": []}
    for _ in range(rounds):
        for name, run in (("floor", floor), ("score", score), ("parse", parsed), ("no_matcher", without_matcher)):
            answers.clear_caches()  # every round pays for its verdicts, clauses and options, as a new GRPO step does
            start = time.thread_time()
            run()
            times[name].append(time.thread_time() - start)
    least = {name: min(values) for name, values in times.items()}
    return least["score"] / least["floor"], least


def main() -> None:
    build = "compiled" if "--compiled" in sys.argv else "source"
    if build == "compiled":
        assert all(path.endswith(EXTENSION_SUFFIXES[0]) for path in compiled_reward.loaded_from().values())
    rng = random.Random(0)
    mixed = [response(rng, i) for i in range(512 * 6)]
    closed = [unique_closed(rng, i) for i in range(512 * 6)]
    assert len({text[text.index("<ANSWER>"):] for text, _, _ in closed}) == len(closed)
    compute_score("warmup", *mixed[0])
    for label, batch in (("GRPO batch (mixed)", mixed), ("closed, unique answers", closed)):
        ratio, least = _ratio(batch)
        floor_s = least["floor"]
        print(f"{build:8s} {label:24s} floor {floor_s * 1e3:6.1f} ms  compute_score {least['score'] * 1e3:7.1f} ms  "
              f"ratio {ratio:5.1f}x (goal <= {GOAL_RATIO:.0f}x)  [scaffold parse alone "
              f"{least['parse'] / floor_s:4.1f}x, every verdict a constant {least['no_matcher'] / floor_s:4.1f}x]",
              flush=True)
    if build == "source":
        with tempfile.TemporaryDirectory() as folder:
            site = compiled_reward.build(Path(folder))
            subprocess.run([sys.executable, __file__, "--compiled"], env=compiled_reward.environment(site), check=True)


if __name__ == "__main__":
    main()
