"""Reports: the paper's Table 1 (accuracy) and Table 2 (reasoning GPT-score) with our measurement
beside the published rows, a per-slice breakdown, and a PNG chart.

Published numbers are copied from the paper and labelled "published, not re-measured" in every
file; ours carry 95% bootstrap intervals, the parse-failure rate, how many answers were read by a
fallback (no ``<ANSWER>`` stage: ``\\boxed{}``, "the answer is ...", an answer-first line, the final line), and how open
questions were scored (matcher or judge), since open-question figures differ several-fold between
the two.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .published import PUBLISHED_LABEL, TABLE1, TABLE1_BENCHMARKS, TABLE1_TITLES, TABLE2, TABLE2_DIMENSIONS
from .scoring import Estimate, GroupSummary


@dataclass(frozen=True)
class ReportFiles:
    table1_md: Path
    table1_csv: Path
    breakdown_md: Path
    breakdown_csv: Path
    chart_png: Path
    table2_md: Path | None = None
    table2_csv: Path | None = None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _pct_ci(estimate: Estimate | None) -> list[str]:
    return [_pct(None)] * 3 if estimate is None else [_pct(estimate.value), _pct(estimate.low), _pct(estimate.high)]


def _title(benchmark: str) -> str:
    return TABLE1_TITLES.get(benchmark, benchmark)


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def overall(summaries: Sequence[GroupSummary]) -> dict[str, GroupSummary]:
    """The whole-benchmark summary of each benchmark."""
    return {s.benchmark: s for s in summaries if s.by == "all"}


def _table1_rows(ours: Mapping[str, GroupSummary], label: str) -> tuple[list[str], list[list[object]], list[list[object]]]:
    columns = list(TABLE1_BENCHMARKS) + [b for b in ours if b not in TABLE1_BENCHMARKS]
    measured_avg = (
        sum(ours[b].accuracy.value for b in TABLE1_BENCHMARKS) / len(TABLE1_BENCHMARKS)
        if all(b in ours for b in TABLE1_BENCHMARKS)
        else None
    )
    scored_by = sorted({ours[b].open_scored_by for b in ours})
    source = "measured here (open questions: " + "/".join(scored_by) + ")"
    md_rows: list[list[object]] = [
        [f"**{label}**", "ours", source]
        + [
            f"{_pct(ours[b].accuracy.value)} [{_pct(ours[b].accuracy.low)}, {_pct(ours[b].accuracy.high)}]" if b in ours else "—"
            for b in columns
        ]
        + [_pct(measured_avg)]
    ]
    csv_rows: list[list[object]] = []
    for b in columns:
        if b in ours:
            s = ours[b]
            csv_rows.append([label, "ours", source, b, round(100 * s.accuracy.value, 2), round(100 * s.accuracy.low, 2),
                             round(100 * s.accuracy.high, 2), s.n, round(100 * s.parse_failure_rate, 2), s.fallback_n])
    for (group, method), values in TABLE1.items():
        by_bench = dict(zip(TABLE1_BENCHMARKS, values))
        md_rows.append([method, group, PUBLISHED_LABEL] + [_pub(by_bench.get(b)) for b in columns] + [_pub(values[-1])])
        for b in TABLE1_BENCHMARKS:
            csv_rows.append([method, group, PUBLISHED_LABEL, b, by_bench[b], "", "", "", "", ""])
        csv_rows.append([method, group, PUBLISHED_LABEL, "average", values[-1], "", "", "", "", ""])
    header = ["Method", "Group", "Source"] + [_title(b) for b in columns] + ["Average (5 Table 1 benchmarks)"]
    return header, md_rows, csv_rows


def _pub(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _fallback_note(ours: Mapping[str, GroupSummary]) -> str:
    """Per benchmark, how many answers came from a fallback rather than the ``<ANSWER>`` stage."""
    counts = ", ".join(f"{_title(b)} {s.fallback_n}" for b, s in ours.items())
    note = f"\nAnswers read by a fallback (no answer where the prompt asks for it): {counts}.\n"
    for b, s in ours.items():
        if s.circular:
            note += f"\n{_title(b)}: multiple choice scored by CircularEval (right only if right in every option rotation).\n"
        if s.pass_at_k is not None:
            p = s.pass_at_k
            note += (f"\n{_title(b)}: accuracy is the mean over {s.samples} samples per question; pass@{s.samples} "
                     f"{_pct(p.value)} [{_pct(p.low)}, {_pct(p.high)}].\n")
    return note


# medsage-explore writes its site into the folder it shows (explore/) unless told otherwise
EXPLORER_NOTE = ("\nEach question with the model's stages, extracted answer, reference and verdict: "
                 "[`explore/predictions.html`](explore/predictions.html), once `medsage-explore` has run on this folder.\n")


def write_table1(summaries: Sequence[GroupSummary], label: str, out_dir: Path) -> tuple[Path, Path]:
    ours = overall(summaries)
    header, md_rows, csv_rows = _table1_rows(ours, label)
    md = out_dir / "table1.md"
    md.write_text(
        "# Table 1: accuracy (%)\n\n"
        "Ours: accuracy with a 95% bootstrap interval; a response without a readable answer counts as wrong. "
        f"Rows marked '{PUBLISHED_LABEL}' are copied from the MEDSAGE paper's Table 1 and were not run here.\n\n"
        + md_table(header, md_rows) + _fallback_note(ours) + EXPLORER_NOTE,
        encoding="utf-8",
    )
    path = out_dir / "table1.csv"
    header = ["method", "group", "source", "benchmark", "accuracy", "ci_low", "ci_high", "n", "parse_failure_pct",
              "fallback_n"]
    _write_csv(path, header, csv_rows)
    return md, path


_BREAKDOWN_HEADER = [
    "benchmark", "by", "key", "n", "accuracy", "ci_low", "ci_high", "parse_failure_pct", "closed_n", "closed_accuracy",
    "open_n", "open_accuracy", "open_exact", "open_recall", "open_f1", "open_scored_by", "fallback_n", "fallback_pct",
    "circular", "samples", "pass_at_k", "pass_at_k_low", "pass_at_k_high",
]


def _breakdown_row(s: GroupSummary) -> list[object]:
    return [
        s.benchmark, s.by, s.key, s.n, _pct(s.accuracy.value), _pct(s.accuracy.low), _pct(s.accuracy.high),
        _pct(s.parse_failure_rate), s.closed_n, _pct(s.closed_accuracy), s.open_n, _pct(s.open_accuracy),
        _pct(s.open_exact), _pct(s.open_recall), _pct(s.open_f1), s.open_scored_by, s.fallback_n, _pct(s.fallback_rate),
        s.circular, s.samples, *_pct_ci(s.pass_at_k),
    ]


def write_breakdown(summaries: Sequence[GroupSummary], out_dir: Path) -> tuple[Path, Path]:
    rows = [_breakdown_row(s) for s in summaries]
    md = out_dir / "breakdown.md"
    md.write_text(
        "# Per benchmark, modality, question type, answer kind, subject and subfield (%, measured here)\n\n"
        + md_table(_BREAKDOWN_HEADER, rows),
        encoding="utf-8",
    )
    path = out_dir / "breakdown.csv"
    _write_csv(path, _BREAKDOWN_HEADER, rows)
    return md, path


def write_table2(reasoning: Mapping[str, Mapping[str, float]], label: str, out_dir: Path) -> tuple[Path, Path]:
    """``reasoning``: benchmark -> mean score per dimension (keys of TABLE2_DIMENSIONS)."""
    header = ["Model", "Dataset", "Source", "Localization", "Visual Analysis", "Knowledge", "Reasoning", "Average"]
    rows: list[list[object]] = []
    for bench, means in sorted(reasoning.items()):
        values = [means[d] for d in TABLE2_DIMENSIONS]
        rows.append([label, _title(bench), "measured here"] + [f"{v:.3f}" for v in values] + [f"{sum(values) / 4:.3f}"])
    for (stage, bench), values in TABLE2.items():
        rows.append([stage, _title(bench), PUBLISHED_LABEL] + [f"{v:.3f}" for v in values])
    md = out_dir / "table2.md"
    md.write_text(
        "# Table 2: reasoning quality, judge score 1-5\n\n"
        "Ours: mean judge score; Average is the mean of the four dimensions. Published rows are copied from the paper "
        "(their Average column as printed).\n\n" + md_table(header, rows),
        encoding="utf-8",
    )
    path = out_dir / "table2.csv"
    _write_csv(path, header, rows)
    return md, path


def write_chart(summaries: Sequence[GroupSummary], label: str, out_dir: Path) -> Path:
    """Bars: ours (with 95% CI) beside the paper's MEDSAGE and Qwen2.5-VL-7B rows (hatched = published)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = overall(summaries)
    benches = [b for b in TABLE1_BENCHMARKS if b in ours] + [b for b in ours if b not in TABLE1_BENCHMARKS]
    published = {m: dict(zip(TABLE1_BENCHMARKS, v)) for (_, m), v in TABLE1.items() if m in ("MEDSAGE (paper)", "Qwen2.5-VL-7B")}
    width = 0.8 / (1 + len(published))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(benches) + 2), 4))
    xs = range(len(benches))
    acc = [100 * ours[b].accuracy.value for b in benches]
    err = [
        [a - 100 * ours[b].accuracy.low for a, b in zip(acc, benches)],
        [100 * ours[b].accuracy.high - a for a, b in zip(acc, benches)],
    ]
    ax.bar([x - 0.4 + width / 2 for x in xs], acc, width, yerr=err, capsize=3, label=f"{label} (measured)")
    for k, (method, values) in enumerate(published.items(), 1):
        heights = [values.get(b) or 0.0 for b in benches]
        xs_k = [x - 0.4 + width * (k + 0.5) for x in xs]
        ax.bar(xs_k, heights, width, hatch="//", alpha=0.6, label=f"{method} ({PUBLISHED_LABEL})")
    ax.set_xticks(list(xs), [_title(b) for b in benches])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = out_dir / "table1.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_reports(
    summaries: Sequence[GroupSummary], label: str, out_dir: Path, reasoning: Mapping[str, Mapping[str, float]] | None = None
) -> ReportFiles:
    out_dir.mkdir(parents=True, exist_ok=True)
    t1_md, t1_csv = write_table1(summaries, label, out_dir)
    b_md, b_csv = write_breakdown(summaries, out_dir)
    chart = write_chart(summaries, label, out_dir)
    t2 = write_table2(reasoning, label, out_dir) if reasoning else (None, None)
    return ReportFiles(t1_md, t1_csv, b_md, b_csv, chart, *t2)
