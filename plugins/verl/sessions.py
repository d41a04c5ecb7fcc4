"""What an R-GRPO session hands the trainer, and the session records the trainer writes.

:class:`SessionOutcome` is the one type of what the self-check agent loop hands the trainer
through verl's ``extra_fields``: the loop writes it with :meth:`SessionOutcome.to_extra_fields`,
and the advantage step, the metrics and the session records read it back with
:func:`read_outcomes`, so its keys are spelled in one place. It lives here, beside the records and
away from verl's agent-loop machinery, so that readers (the metrics, the explorer) import no more
than a data class.

A researcher judges an RL run by reading sessions: the first attempt, the injected instruction, the
self-check, the retry, and what the update did with each (paper section 3.3: the outcome advantage
lands on the final trajectory, ``alpha * r_sc`` on the self-check, nothing on a rejected attempt or
injected text). With ``medsage.sessions_dir`` set, the R-GRPO trainer writes one JSONL file per step
there (``step_<k>.jsonl``), each line a :class:`SessionRecord` whose spans are cut from the very
masks and advantages the update used.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence, get_args

# The self-check loop's name in verl's agent-loop registry (agent_loops.yaml), which RL rows name
# in their agent_name column to be run by it.
AGENT_NAME = "medsage_self_check"
# Why a session ended: the first answer was right; it retried; self-check is off; the budget had
# no room for the self-check or the retry instruction; the policy wrote an image placeholder.
StopReason = Literal["accepted", "retried", "no_self_check", "budget_before_check", "budget_before_retry",
                     "placeholder_in_response"]
STOP_REASONS: tuple[str, ...] = get_args(StopReason)
# The self-check loop's generated spans, in session order: first attempt, self-check, retry.
TAU1, CHECK, TAU2 = "tau1", "check", "tau2"
GENERATED_SPANS = (TAU1, CHECK, TAU2)


@dataclass(frozen=True)
class SessionOutcome:
    """What one self-check session hands the trainer through verl's ``extra_fields``.

    The masks are per response token: ``outcome_mask`` covers the tokens that get the outcome
    advantage (tau1 when accepted, tau2 when retried), ``self_check_mask`` the self-check span.
    """

    outcome_mask: list[int]
    self_check_mask: list[int]
    first_correct: bool
    final_correct: bool
    self_checked: bool
    retried: bool
    stop_reason: StopReason
    reward_parts: dict[str, float]  # every part of the final trajectory's reward, e.g. accuracy, format
    first_reward_parts: dict[str, float]
    capped_spans: list[str]  # GENERATED_SPANS cut at their cap or at the session's budget, in order
    question: str | None = None  # what the session was asked, for the session records
    ground_truth: str | None = None

    @property
    def r_sc(self) -> float:
        """Self-check success, eq. 10: the first answer was wrong and the retry is right."""
        return float(self.retried and not self.first_correct and self.final_correct)

    @property
    def self_check_length(self) -> int:
        """Tokens in the self-check span."""
        return sum(self.self_check_mask)

    def to_extra_fields(self) -> dict[str, Any]:
        """The ``extra_fields`` entries; the derived ``r_sc`` and ``self_check_length`` are written
        too, for whoever reads verl's dumps or the rollout data without this class."""
        return {**asdict(self), "r_sc": self.r_sc, "self_check_length": self.self_check_length}

    @classmethod
    def from_extra_fields(cls, extra_fields: Mapping[str, Any]) -> "SessionOutcome":
        """Read back what :meth:`to_extra_fields` wrote, past verl's own keys; values come back as
        verl stored them (numpy scalars, tuples), so each is converted to the field's type.

        Raises:
            KeyError: naming the fields the row lacks (it was not rolled out by the self-check loop).
        """
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in extra_fields]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
        get = extra_fields.get
        return cls(
            outcome_mask=[int(v) for v in get("outcome_mask")],
            self_check_mask=[int(v) for v in get("self_check_mask")],
            first_correct=bool(get("first_correct")),
            final_correct=bool(get("final_correct")),
            self_checked=bool(get("self_checked")),
            retried=bool(get("retried")),
            stop_reason=str(get("stop_reason")),
            reward_parts={str(k): float(v) for k, v in dict(get("reward_parts")).items()},
            first_reward_parts={str(k): float(v) for k, v in dict(get("first_reward_parts")).items()},
            capped_spans=[str(s) for s in get("capped_spans")],
            question=get("question"),
            ground_truth=get("ground_truth"),
        )


def read_outcomes(rows: Sequence[Mapping[str, Any] | SessionOutcome]) -> list[SessionOutcome]:
    """Each row's :class:`SessionOutcome`, from verl's ``extra_fields`` (an outcome passes through).

    Raises:
        ValueError: naming the first row that was not rolled out by the self-check loop.
    """
    outcomes = []
    for row, fields_ in enumerate(rows):
        if isinstance(fields_, SessionOutcome):
            outcomes.append(fields_)
            continue
        try:
            outcomes.append(SessionOutcome.from_extra_fields(fields_))
        except KeyError as err:
            raise ValueError(
                f"row {row} extra_fields has {err.args[0]}: was it rolled out by the self-check loop?"
            ) from None
    return outcomes


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
