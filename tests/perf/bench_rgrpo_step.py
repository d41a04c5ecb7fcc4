"""Cost of an R-GRPO step over a plain GRPO step through verl's real loop (plain script, not collected).

Runs the quickstart's R-GRPO stage twice on its outputs (run the quickstart first), same data, seed and
steps: ``medsage.self_check=false`` (GRPO on the first attempt, paper Table 5) and the default R-GRPO.
verl logs each step's timing (``timing_s/gen``, ``old_log_prob``, ``ref``, ``update_actor``, ``adv``,
``step``) and token count; the script prints both decomposed, the step ratio, and R-GRPO's overhead:
its step time beyond GRPO's step with R-GRPO's generation time and with log-prob and update time
scaled to R-GRPO's token count. Retries lengthen generation and add tokens by nature; the overhead is
what the loop, masks and advantage add on top (goal: under 10% of the step).

    python tests/perf/bench_rgrpo_step.py [--steps 3] [--run-dir outputs/quickstart]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "recipes" / "quickstart"))
import quickstart as qs  # noqa: E402

PARTS = {"generation": ("timing_s/gen",), "log-prob": ("timing_s/old_log_prob", "timing_s/ref"),
         "update": ("timing_s/update_actor",), "advantage": ("timing_s/adv",)}


def measure(cfg, run: Path, name: str, arm: list[str]) -> dict[str, float]:
    out = run / "bench_rgrpo_step" / name
    shutil.rmtree(out, ignore_errors=True)
    steps = qs.train_rl(cfg, run, out / "rl", out / "model", arm)["metrics"][1:]  # step 1 carries warm-up
    row = {part: statistics.mean(sum(s.get(k, 0.0) for k in keys) for s in steps) for part, keys in PARTS.items()}
    row["step"] = statistics.mean(s["timing_s/step"] for s in steps)
    row["tokens"] = statistics.mean(s["perf/total_num_tokens"] for s in steps)
    row["other"] = row["step"] - sum(row[p] for p in PARTS)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--run-dir", default="outputs/quickstart")
    args = parser.parse_args()
    cfg = qs.load_config(qs.REPO / "recipes/quickstart/quickstart.yaml", [f"run_dir={args.run_dir}", f"rl.steps={args.steps}"])
    run = (qs.REPO / cfg.run_dir).resolve()
    grpo = measure(cfg, run, "grpo", ["medsage.self_check=false"])
    rgrpo = measure(cfg, run, "rgrpo", [])
    print(f"{'':>12} {'GRPO':>9} {'R-GRPO':>9}   (mean of steps 2..{args.steps}, seconds)")
    for key in (*PARTS, "other", "step", "tokens"):
        print(f"{key:>12} {grpo[key]:9.2f} {rgrpo[key]:9.2f}")
    scale = rgrpo["tokens"] / grpo["tokens"]
    expected = rgrpo["generation"] + (grpo["log-prob"] + grpo["update"]) * scale + grpo["advantage"] + grpo["other"]
    print(f"R-GRPO / GRPO step: {rgrpo['step'] / grpo['step']:.2f}  (tokens x{scale:.2f})")
    print(f"R-GRPO overhead beyond its extra generation and tokens: {100 * (rgrpo['step'] - expected) / rgrpo['step']:+.1f}% of its step")


if __name__ == "__main__":
    main()
