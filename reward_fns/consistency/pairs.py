"""Training records of the trajectory-consistency scorer (paper appendix A.4).

The paper trains its scorer contrastively: trajectories that passed consistency verification and
inspection are positives, trajectories filtered out during curation are negatives. data_gen writes
those as ``scorer/pairs.jsonl``, one object per line::

    {"sample_id": ..., "question": ..., "positive": ..., "negative": ..., "negative_reason": ...}

Training groups every negative (filtered ones and synthetic corruptions) under its positive, so one
contrastive step compares a positive against all of its negatives at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

PAIR_FIELDS: tuple[str, ...] = ("sample_id", "question", "positive", "negative", "negative_reason")
FILTERED = "filtered"  # the kind of every negative that came from data_gen's verification


@dataclass(frozen=True)
class ScoreItem:
    """What the scorer reads: the question and one trajectory answering it."""

    question: str
    trajectory: str


@dataclass(frozen=True)
class Pair:
    """One line of ``pairs.jsonl``."""

    sample_id: str
    question: str
    positive: str
    negative: str
    negative_reason: str


@dataclass(frozen=True)
class Negative:
    """A trajectory that must score below its positive; ``kind`` names where it came from."""

    text: str
    kind: str


@dataclass
class Group:
    """One positive trajectory and every negative contrasted with it."""

    sample_id: str
    question: str
    positive: str
    negatives: list[Negative] = field(default_factory=list)


def read_pairs(path: str | Path) -> list[Pair]:
    """Read data_gen's ``pairs.jsonl``; a bad line is an error naming file, line and field."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                pairs.append(_pair(_json(line, path, line_no), path, line_no))
    return pairs


def _json(line: str, path: str | Path, line_no: int) -> dict:
    try:
        obj = json.loads(line)
    except ValueError as err:
        raise ValueError(f"{path}:{line_no}: not valid JSON ({err})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _pair(obj: dict, path: str | Path, line_no: int) -> Pair:
    for name in PAIR_FIELDS:
        value = obj.get(name)
        if name == "sample_id" and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, str) or (name in ("positive", "negative") and not value.strip()):
            raise ValueError(f"{path}:{line_no}: field {name!r} must be a non-empty string, got {value!r:.80}")
    return Pair(**{name: str(obj[name]) for name in PAIR_FIELDS})


def group_pairs(pairs: list[Pair]) -> list[Group]:
    """One group per distinct (sample_id, positive); its filtered negatives deduplicated, in file order."""
    groups: dict[tuple[str, str], Group] = {}
    for p in pairs:
        group = groups.setdefault((p.sample_id, p.positive), Group(p.sample_id, p.question, p.positive))
        negative = Negative(p.negative, FILTERED)
        if negative not in group.negatives and p.negative != p.positive:
            group.negatives.append(negative)
    return list(groups.values())


def is_held_out(sample_id: str, eval_fraction: float) -> bool:
    """Stable split by sample, so every trajectory of one image lands on the same side."""
    digest = hashlib.sha256(sample_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction
