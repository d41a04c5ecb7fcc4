"""The dataset card: a markdown page and PNG plots of what was built and what was thrown away.

Counts by source, modality and task type; trajectory acceptance rate; rejection reasons; read
and filter skips; leakage matches; tokens and cost per model. The generator is named, so data
written by the rule-based offline generator is never mistaken for model-written data.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class BuildStats:
    generator: str
    judge: str
    imputer: str = "off"
    read: dict[str, dict] = field(default_factory=dict)
    filtered: Counter = field(default_factory=Counter)
    imputation: Counter = field(default_factory=Counter)  # outcome -> records (medsage.data_gen.imputation.OUTCOMES)
    leaks: list[dict] = field(default_factory=list)
    by_source: Counter = field(default_factory=Counter)
    by_modality: Counter = field(default_factory=Counter)
    by_task: Counter = field(default_factory=Counter)
    trajectories: int = 0
    accepted: int = 0
    rejection_reasons: Counter = field(default_factory=Counter)
    failed_samples: int = 0
    samples: int = 0  # questions built from this build's records (committed now or in an earlier run)
    filter_examples: list[str] = field(default_factory=list)  # where a filtered record's file is, and why
    outputs: dict[str, int] = field(default_factory=dict)
    usage: dict[str, dict] = field(default_factory=dict)
    rl_prompts: dict = field(default_factory=dict)  # medsage.data_gen.exports.PromptBudget; empty: not measured

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.trajectories if self.trajectories else 0.0


def _bar(counts: Counter, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 0.4 * max(len(counts), 2) + 1.2))
    names = [k for k, _ in counts.most_common()][::-1]
    ax.barh(names, [counts[k] for k in names], color="#4a7ab5")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(counts: Counter | dict, header: str) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(counts.items(), key=lambda kv: -kv[1] if isinstance(kv[1], int) else 0))
    return f"| {header} | count |\n| --- | --- |\n{rows}\n" if counts else "none\n"


def _imputation(stats: BuildStats) -> str:
    if stats.imputer == "off":
        return "Off: records without a label were not sent to a model (those without a question either are counted as `unlabeled` below).\n"
    return (f"Labels proposed by **{stats.imputer}** for records without one; an unusable reply leaves the record "
            f"unlabeled.\n\n{_table(stats.imputation, 'outcome')}")


def _multi_image(stats: BuildStats) -> str:
    n = sum(r["reasons"].get("multi_image", 0) for r in stats.read.values())
    return (f"{n} record(s) with several images were skipped (`multi_image`): every sample here has exactly one image.\n"
            if n else "")


def _deeplesion(stats: BuildStats) -> str:
    if not any(name.endswith("deeplesion") for name in stats.read):
        return ""
    return ("DeepLesion's `Coarse_lesion_type` is annotated only on its val and test lesions; train lesions carry -1, "
            "so they are labelled by imputation when `imputation.enabled`, and otherwise counted as `unlabeled` below. "
            "Test-split records are held out (`test_split`). One record is one slice with all its lesions.\n")


def _examples(stats: BuildStats) -> str:
    """Where skipped rows and filtered images are (file, row, image path), a few per source."""
    lines = [e for r in stats.read.values() for e in r["examples"][:10]] + stats.filter_examples[:20]
    return "Examples of skipped rows and filtered images:\n\n" + "".join(f"- {e}\n" for e in lines) if lines else ""


def _rl_prompts(stats: BuildStats) -> str:
    budget = stats.rl_prompts
    if not budget:
        return ("Not measured. verl's `filter_overlong_prompts` drops RL prompts longer than `data.max_prompt_length` "
                "tokens (image tokens included) when it loads the parquet, without a count; set `exports.rl_processor` "
                "(e.g. the SFT checkpoint) to count them here.\n")
    return (f"{budget['over']} of {budget['rows']} RL prompts exceed {budget['max_prompt_length']} tokens "
            f"(`exports.rl_max_prompt_length`; image tokens included, counted with {budget['processor']}; longest "
            f"{budget['longest']}). verl's `filter_overlong_prompts` drops them when it loads the parquet, without a count.\n")


def write_card(stats: BuildStats, card_dir: Path) -> Path:
    card_dir.mkdir(parents=True, exist_ok=True)
    plots = {"by_source": "Samples by source", "by_modality": "Samples by modality", "by_task": "Samples by task type",
             "rejection_reasons": "Rejection reasons"}
    for key, title in plots.items():
        if getattr(stats, key):
            _bar(getattr(stats, key), title, card_dir / f"{key}.png")
    _bar(Counter({"accepted": stats.accepted, "rejected": stats.trajectories - stats.accepted}),
         f"Trajectories (acceptance {stats.acceptance_rate:.1%})", card_dir / "acceptance.png")
    usage = "\n".join(f"| {m} | {u['calls']} | {u['cache_hits']} | {u['retries']} | {u.get('truncated', 0)} | "
                      f"{u['prompt_tokens']} | {u['completion_tokens']} | {u['cost_usd']:.4f} |" for m, u in stats.usage.items())
    read = "\n".join(f"| {name} | {r['seen']} | {r['kept']} | {dict(r['reasons'])} | {dict(r['dropped'])} |"
                     for name, r in stats.read.items())
    text = f"""# Dataset card

Stage text generator: **{stats.generator}**. Judge: **{stats.judge}**.
{"The stage text was written by the rule-based offline generator from the annotations and pixel statistics (the embedded default), not by a language model." if stats.generator.startswith("offline") else ""}

## Reading
| source | seen | kept | skipped (reason: count) | dropped boxes |
| --- | --- | --- | --- | --- |
{read}

{_multi_image(stats)}
{_deeplesion(stats)}
{_examples(stats)}
## Label imputation (A.3.1)
{_imputation(stats)}
## Filtering (A.3.1)
{_table(stats.filtered, "reason")}
## Benchmark leakage
{len(stats.leaks)} training image(s) matched an evaluation image and were dropped.
{"".join(f"- {m['train_image']} ~ {m['eval_image']} (distance {m['distance']})" + chr(10) for m in stats.leaks[:50])}
## Samples
![](by_source.png) ![](by_modality.png) ![](by_task.png)

Each sample with its image, ROIs and accepted and rejected trajectories: [`../explore/samples.html`](../explore/samples.html), once `medsage-explore` has run on the build's output_dir.

{_table(stats.by_source, "source")}
{_table(stats.by_modality, "modality")}
{_table(stats.by_task, "task type")}
## Verification (A.3.5)
{stats.accepted} of {stats.trajectories} trajectories accepted ({stats.acceptance_rate:.1%}) over {stats.samples} sample(s); {stats.failed_samples} sample(s) failed generation (`work/failures.jsonl` says why; a rerun asks them again).

![](acceptance.png) ![](rejection_reasons.png)

{_table(stats.rejection_reasons, "rejection reason")}
## Outputs
{_table(stats.outputs, "file")}
## RL prompt budget
{_rl_prompts(stats)}
## Tokens and cost
Billed calls, tokens and cost cover every run that wrote this output directory (each billed reply is
recorded as it arrives, so killed runs count too); cache hits and retries are this run's. `truncated`
replies were cut by the token limit: billed, asked again, never used.

| model | billed calls | cache hits | retries | truncated | prompt tokens | completion tokens | cost (USD) |
| --- | --- | --- | --- | --- | --- | --- | --- |
{usage}
"""
    (card_dir / "README.md").write_text(text, encoding="utf-8")
    (card_dir / "stats.json").write_text(json.dumps(stats.__dict__, indent=2, default=dict), encoding="utf-8")
    return card_dir / "README.md"
