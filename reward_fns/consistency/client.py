"""Reward-side client of the consistency scoring service (paper appendix A.4).

Configured from verl's ``reward_kwargs.consistency``::

    consistency: {url: http://scorer-host:8765, timeout_s: 30, on_unreachable: zero}

Each reward call sends one trajectory; the service batches concurrent calls. When the service is
unreachable (connection refused, timeout, HTTP error, malformed reply) the configured policy
applies: ``fail`` raises :class:`ScorerUnreachable` (a configuration problem, never model output),
``zero`` scores 0.0 and marks the result ``reachable=False`` so the reward counts it in the
metrics. After a failure the client skips the service for ``cooldown_s`` so a dead scorer costs one
timeout, not one per sample. Stdlib only: imported by every reward worker.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from medsage.config import bounded, build

from .pairs import ScoreItem


class ScorerUnreachable(RuntimeError):
    """The scoring service could not answer and the policy is ``fail``."""


@dataclass(frozen=True)
class ConsistencyConfig:
    """Where the scorer lives and what to do when it does not answer."""

    url: str
    timeout_s: float = bounded(30.0, gt=0)
    on_unreachable: Literal["fail", "zero"] = "fail"
    cooldown_s: float = bounded(10.0, ge=0)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected an http(s) URL, got {self.url!r}")

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> "ConsistencyConfig":
        """Read verl's ``reward_kwargs.consistency`` with the one recipe loader (:mod:`medsage.config`)."""
        return build(cls, config, "reward_kwargs", "consistency")


@dataclass(frozen=True)
class ConsistencyResult:
    """One score in [0, 1]; ``reachable`` is False when the ``zero`` policy supplied it."""

    score: float
    reachable: bool


class ConsistencyClient:
    """Thread-safe; one per process is enough (see :func:`consistency_client`)."""

    def __init__(self, config: ConsistencyConfig):
        self.config = config
        self.endpoint = config.url.rstrip("/") + "/score"
        self._lock = threading.Lock()
        self._skip_until = 0.0
        self.unreachable = 0  # results supplied by the ``zero`` policy

    def score(self, question: str, trajectory: str) -> ConsistencyResult:
        return self.score_many([ScoreItem(question, trajectory)])[0]

    def score_many(self, items: Sequence[ScoreItem]) -> list[ConsistencyResult]:
        """Scores of ``items`` in one request, or the unreachable policy's results."""
        if time.monotonic() < self._skip_until:
            return self._unreachable(items, "skipped: it failed within the last cooldown_s")
        body = json.dumps({"items": [{"question": i.question, "trajectory": i.trajectory} for i in items]}).encode()
        request = urllib.request.Request(self.endpoint, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as reply:
                scores = json.loads(reply.read())["scores"]
            if len(scores) != len(items) or not all(isinstance(s, (int, float)) for s in scores):
                raise ValueError(f"expected {len(items)} numeric scores, got {str(scores)[:80]}")
        except (OSError, ValueError, KeyError, TypeError) as err:
            with self._lock:
                self._skip_until = time.monotonic() + self.config.cooldown_s
            return self._unreachable(items, f"{type(err).__name__}: {err}")
        return [ConsistencyResult(min(1.0, max(0.0, float(s))), True) for s in scores]

    def _unreachable(self, items: Sequence[ScoreItem], reason: str) -> list[ConsistencyResult]:
        if self.config.on_unreachable == "fail":
            raise ScorerUnreachable(
                f"consistency scorer at {self.endpoint} unreachable ({reason}); "
                "start medsage-scorer-serve or set reward_kwargs.consistency.on_unreachable=zero"
            )
        with self._lock:
            self.unreachable += len(items)
        return [ConsistencyResult(0.0, False) for _ in items]


_CLIENTS: dict[ConsistencyConfig, ConsistencyClient] = {}
_CLIENTS_LOCK = threading.Lock()


def consistency_client(config: Mapping[str, Any] | ConsistencyConfig) -> ConsistencyClient:
    """The process-wide client for ``config`` (reward workers call this once per sample)."""
    if not isinstance(config, ConsistencyConfig):
        config = ConsistencyConfig.from_mapping(config)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(config)
        if client is None:
            client = _CLIENTS[config] = ConsistencyClient(config)
        return client
