"""RL sessions page: R-GRPO session records per step, grouped by prompt.

Each entry is one prompt of one step with its ``rollout.n`` sessions, because GRPO judges a session
against its group: the spans (first attempt, injected instruction, self-check, retry) are shown
with the per-token advantage the update gave them, coloured on one scale for the whole run.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from medsage.plugins.verl.sessions import RETRY, SessionRecord, read_sessions

from .site import Entry, Page

FLAGS = {"retried": "retried", "corrected": "corrected (r_sc = 1)", "budget_stopped": "budget-stopped"}


def sessions_dir(folder: Path) -> Path | None:
    """The folder of ``step_<k>.jsonl`` files: ``folder`` itself or its ``sessions/`` (an RL run's output)."""
    for candidate in (folder, folder / "sessions"):
        if any(candidate.glob("step_*.jsonl")):
            return candidate
    return None


def retried(record: SessionRecord) -> bool:
    return any(s.kind == RETRY for s in record.spans)


def budget_stopped(record: SessionRecord) -> bool:
    return record.stop_reason.startswith("budget")


def group_entry(records: list[SessionRecord]) -> Entry:
    first = records[0]
    rewards = [r.reward for r in records]
    body = {
        "step": first.step, "uid": first.uid, "question": first.question, "ground_truth": first.ground_truth,
        "mean_reward": sum(rewards) / len(rewards),
        "sessions": [{k: v for k, v in asdict(r).items() if k not in ("step", "uid", "question", "ground_truth")}
                     for r in records],
    }
    flags = {"retried": any(map(retried, records)), "corrected": any(r.r_sc == 1 for r in records),
             "budget_stopped": any(map(budget_stopped, records))}
    return Entry(body, {"step": str(first.step)}, flags)


def groups(records: list[SessionRecord]) -> list[list[SessionRecord]]:
    """Records of one (step, prompt uid), in the order they were written."""
    by_key: dict[tuple[int, str], list[SessionRecord]] = {}
    for r in records:
        by_key.setdefault((r.step, r.uid), []).append(r)
    return list(by_key.values())


def page(folder: Path) -> Page:
    records = read_sessions(folder)
    scale = max((abs(s.advantage) for r in records for s in r.spans), default=0.0) or 1.0
    return Page("sessions", "RL sessions", {"step": "step"}, FLAGS, [group_entry(g) for g in groups(records)],
                (str(folder),), {"advantage_scale": scale})
