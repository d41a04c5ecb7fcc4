"""Session records of R-GRPO training: what each session generated and the advantage each span got.

A researcher judges an RL run by reading sessions: the first attempt, the injected instruction, the
self-check, the retry, and what the update did with each (paper section 3.3: the outcome advantage
lands on the final trajectory, ``alpha * r_sc`` on the self-check, nothing on a rejected attempt or
injected text). With ``medsage.sessions_dir`` set, the R-GRPO trainer writes one JSONL file per step
there (``step_<k>.jsonl``), each line a :class:`SessionRecord` whose spans are cut from the very
masks and advantages the update used.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

# Span kinds, in the order they can appear in one session.
FIRST_ATTEMPT, INJECTED, SELF_CHECK, RETRY = "first_attempt", "injected", "self_check", "retry"


@dataclass(frozen=True)
class Span:
    """A run of response tokens of one kind; ``advantage`` is per token (constant within a span)."""

    kind: str
    text: str
    tokens: int
    advantage: float


@dataclass(frozen=True)
class SessionRecord:
    step: int
    uid: str
    question: str | None
    ground_truth: str | None
    reward: float
    r_sc: float
    first_correct: bool
    final_correct: bool
    stop_reason: str
    reward_parts: dict[str, float]
    spans: list[Span]

    @classmethod
    def from_json(cls, line: str) -> "SessionRecord":
        row = json.loads(line)
        return cls(**{**row, "spans": [Span(**s) for s in row["spans"]]})


def session_spans(
    response_ids: Sequence[int],
    response_mask: Sequence[float],
    outcome_mask: Sequence[float],
    self_check_mask: Sequence[float],
    advantages: Sequence[float],
    retried: bool,
    decode: Callable[[list[int]], str],
) -> list[Span]:
    """Cut one session's response into spans by the masks the update used."""

    def kind(t: int) -> str:
        if not response_mask[t]:
            return INJECTED
        if self_check_mask[t]:
            return SELF_CHECK
        return RETRY if outcome_mask[t] and retried else FIRST_ATTEMPT

    spans, start = [], 0
    for end in range(1, len(response_ids) + 1):
        if end == len(response_ids) or kind(end) != kind(start):
            ids = list(response_ids[start:end])
            mean = sum(advantages[start:end]) / (end - start)
            spans.append(Span(kind(start), decode(ids), end - start, round(float(mean), 6)))
            start = end
    return spans


def write_step(sessions_dir: str | Path, step: int, records: Sequence[SessionRecord]) -> Path:
    path = Path(sessions_dir) / f"step_{step}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in records), encoding="utf-8")
    return path


def read_sessions(sessions_dir: str | Path) -> list[SessionRecord]:
    """Every step's records, in step order."""
    files = sorted(Path(sessions_dir).glob("step_*.jsonl"), key=lambda p: int(p.stem.split("_")[1]))
    return [SessionRecord.from_json(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line]
