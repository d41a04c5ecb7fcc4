"""The paper's ablations on the quickstart's phantom data: Table 5 (SFT, SFT + GRPO, SFT + R-GRPO),
Table 4 and Figure 5 (the self-check bonus alpha), measured here beside the paper's published numbers.

    python recipes/quickstart/ablation.py recipes/quickstart/ablation.yaml [a.b=value ...]

Every arm runs the quickstart's own R-GRPO stage (``medsage-rgrpo`` on the CPU backend, verl's model
merger, the evaluation suite) from the quickstart's SFT model with the same steps and seed; only the
arm's overrides differ. The SFT row is the quickstart's own evaluation. A finished arm is skipped on
the next run, so a killed ablation resumes.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import quickstart as qs  # noqa: E402  (this folder)
from medsage.config import bounded, load, parse, recipe_parser, run as run_command  # noqa: E402

PROG = "ablation"

# Published, not re-measured: accuracy on VQA-RAD, SLAKE, PathVQA and their average (paper Tables 4, 5).
PUBLISHED_COLUMNS = ("RAD", "SLAKE", "Path", "Ave")
PUBLISHED_TABLE5 = {
    "SFT": (67.3, 77.4, 64.7, 69.8),
    "SFT + RL": (68.1, 78.8, 67.0, 71.3),
    "SFT + RL + Self": (70.4, 79.8, 66.7, 72.3),
}
PUBLISHED_TABLE4 = {
    0.0: (69.9, 78.3, 63.8, 70.7),
    0.15: (70.3, 78.8, 64.4, 71.2),
    0.2: (70.7, 79.1, 64.8, 71.5),
    0.25: (69.8, 78.5, 64.2, 70.8),
}
# Table 5's rows: the quickstart's SFT evaluation, then the arms that are plain GRPO and R-GRPO at alpha 0.2.
TABLE5_ARMS = {"SFT": None, "SFT + RL": "grpo", "SFT + RL + Self": "alpha_0.2"}


@dataclass(frozen=True)
class AblationConfig:
    """recipes/quickstart/ablation.yaml."""

    quickstart: str  # the quickstart recipe whose SFT model, RL data and benchmark every arm starts from
    quickstart_overrides: tuple[str, ...] = ()  # the a.b=value overrides the quickstart ran with
    steps: int = bounded(12, ge=1)
    arms: dict[str, tuple[str, ...]] = field(default_factory=dict)  # arm name -> hydra overrides of the RL recipe


def run_arm(cfg: qs.QuickstartConfig, run: Path, name: str, overrides: list[str]) -> dict[str, Any]:
    out = run / "ablation" / name
    rl = qs.train_rl(cfg, run, out / "rl", out / "model", overrides)
    evaluation = qs.evaluate(cfg, run, out / "model", out / "eval", f"SFT + {name}")
    steps = rl["metrics"]
    late = steps[len(steps) // 2 :] or steps
    return {
        "overrides": overrides,
        "alpha": _alpha(overrides),
        "self_check_rate": sum(s.get("medsage/self_check_rate", 0.0) for s in late) / max(len(late), 1),
        "correction_rate": sum(s.get("medsage/correction_rate", 0.0) for s in late) / max(len(late), 1),
        "steps": rl["steps"],
        **evaluation,
    }


def _alpha(overrides: list[str]) -> float | None:
    values = [o.split("=", 1)[1] for o in overrides if o.startswith("medsage.alpha=")]
    return float(values[-1]) if values else None


def tables(sft: dict[str, Any], arms: dict[str, dict[str, Any]], resamples: int) -> str:
    """Tables 5 and 4 in the paper's layout, ours (phantom, paired change from SFT) beside the published."""
    def ours(row: dict[str, Any]) -> str:
        change = qs._paired_difference(sft["correct"], row["correct"], resamples)
        delta = "" if row is sft else f" | {100 * change['value']:+.1f} [{100 * change['low']:+.1f}, {100 * change['high']:+.1f}]"
        return f"{qs._pct(row['accuracy'])}{delta or ' | —'}"

    head = "| ours: phantom accuracy, 95% CI | ours: change from SFT (paired) | " + " | ".join(
        f"published {c}" for c in PUBLISHED_COLUMNS) + " |"
    rule = "| --- " * (2 + len(PUBLISHED_COLUMNS)) + "|"
    lines = [f"Phantom benchmark: {sft['n']} held-out items; every arm {next(iter(arms.values()))['steps']} R-GRPO steps"
             " from the same SFT model, seed and data. Published columns are the paper's numbers (Qwen2.5-VL-7B,"
             " real benchmarks), not re-measured.", "", "### Table 5: SFT, SFT + RL, SFT + RL + self-check", "",
             "| Method " + head, "| --- " + rule]
    for label, arm in TABLE5_ARMS.items():
        row = sft if arm is None else arms.get(arm)
        if row is not None:
            lines.append(f"| {label} | {ours(row)} | " + " | ".join(f"{v:.1f}" for v in PUBLISHED_TABLE5[label]) + " |")
    lines += ["", "### Table 4: the self-check bonus alpha (base reward = accuracy + format)", "",
              "| Config. | self-check rate (training) " + head, "| --- | --- " + rule]
    for name, row in sorted(((n, r) for n, r in arms.items() if r["alpha"] is not None), key=lambda x: x[1]["alpha"]):
        alpha = row["alpha"]
        label = "Base only (alpha = 0)" if alpha == 0 else f"Base + SC (alpha = {alpha:g})"
        published = PUBLISHED_TABLE4.get(alpha)
        cells = " | ".join(f"{v:.1f}" for v in published) if published else " | ".join("—" for _ in PUBLISHED_COLUMNS)
        lines.append(f"| {label} | {100 * row['self_check_rate']:.1f}% | {ours(row)} | {cells} |")
    return "\n".join(lines) + "\n"


def figure5(arms: dict[str, dict[str, Any]], path: Path) -> None:
    """Accuracy (left axis, with its interval) and self-check rate (right axis) against alpha."""
    rows = sorted((r for r in arms.values() if r["alpha"] is not None), key=lambda r: r["alpha"])
    alphas = [r["alpha"] for r in rows]
    accuracy = [100 * r["accuracy"]["value"] for r in rows]
    errors = [[100 * (r["accuracy"]["value"] - r["accuracy"]["low"]) for r in rows],
              [100 * (r["accuracy"]["high"] - r["accuracy"]["value"]) for r in rows]]
    fig, left = plt.subplots(figsize=(5, 3.2))
    left.errorbar(alphas, accuracy, yerr=errors, marker="o", color="tab:blue", capsize=3)
    left.set(xlabel="self-check bonus alpha", ylabel="phantom accuracy (%)", title="Figure 5 on phantom data")
    right = left.twinx()
    right.plot(alphas, [100 * r["self_check_rate"] for r in rows], marker="s", color="tab:orange")
    right.set_ylabel("self-check rate in training (%)", color="tab:orange")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse(recipe_parser(PROG, __doc__, "recipes/quickstart/ablation.yaml"), argv)
    return run_command(PROG, lambda: _ablate(load(AblationConfig, args.recipe, args.overrides)))


def _ablate(ablation: AblationConfig) -> int:
    cfg = qs.load_config(qs.REPO / ablation.quickstart, [*ablation.quickstart_overrides, f"rl.steps={ablation.steps}"])
    run = (qs.REPO / cfg.run_dir).resolve()
    sft = qs._read_marker(run, "eval_sft")  # the quickstart's SFT model, RL data and benchmark
    arms = {}
    for name, overrides in ablation.arms.items():
        marker = run / "ablation" / name / "arm.json"
        if marker.exists():
            qs.log(f"ablation:{name}", f"done earlier, skipped ({marker})")
        else:
            qs.log(f"ablation:{name}", f"running: {' '.join(overrides)}")
            start = time.time()
            result = {**run_arm(cfg, run, name, list(overrides)), "seconds": time.time() - start}
            marker.write_text(json.dumps(result, indent=1))
            qs.log(f"ablation:{name}", f"finished in {result['seconds']:.0f} s")
        arms[name] = json.loads(marker.read_text())
    report = run / "ablation" / "README.md"
    figure5(arms, run / "ablation" / "figure5.png")
    report.write_text("# MEDSAGE ablations on phantom data\n\n" + tables(sft, arms, cfg.eval.bootstrap_resamples)
                      + "\n![](figure5.png)\n")
    print(report.read_text())
    qs.log("ablation", str(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
