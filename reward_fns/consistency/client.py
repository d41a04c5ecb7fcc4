"""Reward-side client of the consistency scoring service (paper appendix A.4).

Configured from verl's ``reward_kwargs.consistency``::

    consistency: {url: http://scorer-host:8765, timeout_s: 30, on_unreachable: zero}

Each reward call sends one trajectory; the service batches concurrent calls. When the service is
unreachable (connection refused, timeout, HTTP error, malformed reply) the configured policy
applies: ``fail`` raises :class:`ScorerUnreachable` (a configuration problem, never model output),
``zero`` scores 0.0 and marks the result ``reachable=False`` so the reward counts it in the
metrics. After a failure the client skips the service for ``cooldown_s`` so a dead scorer costs one
timeout, not one per sample; each failure is logged once through :mod:`logging`. A service started
with an API key gets it from ``$MEDSAGE_SCORER_API_KEY`` (``api_key_env`` names another variable)
as ``Authorization: Bearer``; a refused key raises :class:`ScorerAuthError` under either policy, as
zeros would silently train without the reward. The key is read from the environment per request
and never logged or kept in an error. Stdlib only: imported by every reward worker.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from medsage.config import bounded, build

from .pairs import ScoreItem

API_KEY_ENV = "MEDSAGE_SCORER_API_KEY"  # medsage-scorer-serve's key when no --api-key is given
logger = logging.getLogger(__name__)


class ScorerUnreachable(RuntimeError):
    """The scoring service could not answer and the policy is ``fail``."""


class ScorerAuthError(RuntimeError):
    """The service refused the API key (HTTP 401/403): a configuration problem under either policy."""


@dataclass(frozen=True)
class ConsistencyConfig:
    """Where the scorer lives and what to do when it does not answer."""

    url: str
    timeout_s: float = bounded(30.0, gt=0)
    on_unreachable: Literal["fail", "zero"] = "fail"
    cooldown_s: float = bounded(10.0, ge=0)
    api_key_env: str = API_KEY_ENV  # the variable holding the service's API key; unset or empty: no key sent

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
        try:
            scores = self._post(items)
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                raise self._auth_error(err.code) from None
            return self._failed(items, f"HTTP {err.code}: {_error_text(err)}")
        except (OSError, ValueError, KeyError, TypeError) as err:
            return self._failed(items, f"{type(err).__name__}: {err}")
        return [ConsistencyResult(min(1.0, max(0.0, float(s))), True) for s in scores]

    def _post(self, items: Sequence[ScoreItem]) -> list[float]:
        """One ``/score`` request; the key goes in a header only, read from the environment now."""
        body = json.dumps({"items": [{"question": i.question, "trajectory": i.trajectory} for i in items]}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=self.config.timeout_s) as reply:
            scores = json.loads(reply.read())["scores"]
        if len(scores) != len(items) or not all(isinstance(s, (int, float)) for s in scores):
            raise ValueError(f"expected {len(items)} numeric scores, got {str(scores)[:80]}")
        return scores

    def _auth_error(self, code: int) -> ScorerAuthError:
        variable = f"${self.config.api_key_env}"
        problem = "is not the service's key" if os.environ.get(self.config.api_key_env) else "is not set"
        return ScorerAuthError(f"consistency scorer at {self.endpoint} refused the request (HTTP {code}): {variable} "
                               f"{problem}; set it to the key medsage-scorer-serve was started with")

    def _failed(self, items: Sequence[ScoreItem], reason: str) -> list[ConsistencyResult]:
        """Start the cooldown, log the failure once, then apply the policy."""
        with self._lock:
            self._skip_until = time.monotonic() + self.config.cooldown_s
        logger.warning("consistency scorer at %s failed (%s); on_unreachable=%s, not asked again for %g s",
                       self.endpoint, reason, self.config.on_unreachable, self.config.cooldown_s)
        return self._unreachable(items, reason)

    def _unreachable(self, items: Sequence[ScoreItem], reason: str) -> list[ConsistencyResult]:
        if self.config.on_unreachable == "fail":
            raise ScorerUnreachable(
                f"consistency scorer at {self.endpoint} unreachable ({reason}); "
                "start medsage-scorer-serve or set reward_kwargs.consistency.on_unreachable=zero"
            )
        with self._lock:
            self.unreachable += len(items)
        return [ConsistencyResult(0.0, False) for _ in items]


def _error_text(err: urllib.error.HTTPError) -> str:
    """The service's ``{"error": ...}`` reply, shortened (a 413 says the limit it applied)."""
    try:
        return str(json.loads(err.read())["error"])[:200]
    except (OSError, ValueError, KeyError, TypeError):
        return str(err.reason)


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
