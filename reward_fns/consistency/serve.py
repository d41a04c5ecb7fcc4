"""Batched HTTP scoring service for the consistency reward inside RL (paper appendix A.4).

verl computes rewards in many threads of several Ray workers at once; loading a scorer per sample
or per worker would not fit. One service holds the model, and a batcher thread merges whatever
requests arrive within ``max_wait_ms`` (up to ``max_batch_size`` trajectories) into one forward
pass: dynamic batching across every worker's concurrent reward calls.

API (JSON over HTTP, stdlib only):
    POST /score  {"items": [{"question": str, "trajectory": str}, ...]} -> {"scores": [float, ...]}
    GET  /health -> {"status": "ok", "checkpoint": str}

Usage: ``medsage-scorer-serve recipes/scorer/serve.yaml [checkpoint=DIR port=8765 ...]``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from medsage.config import bounded

from .model import ConsistencyScorer
from .pairs import ScoreItem

MAX_ITEMS_PER_REQUEST = 4096


@dataclass(frozen=True)
class ServeConfig:
    """The serving recipe (recipes/scorer/serve.yaml); ``max_wait_ms`` trades a little latency for
    larger batches. ``device`` and ``dtype`` ``auto``: the GPU in bfloat16 when there is one."""

    checkpoint: str  # a folder written by medsage-scorer-train (its output_dir)
    host: str = "127.0.0.1"
    port: int = bounded(8765, ge=0, le=65535)
    max_batch_size: int = bounded(64, ge=1)
    max_wait_ms: float = bounded(5.0, ge=0)
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class Batcher:
    """Collects items from concurrent callers and scores them in shared batches on one thread."""

    def __init__(self, scorer: ConsistencyScorer, max_batch_size: int = 64, max_wait_ms: float = 5.0):
        self.scorer, self.max_batch_size, self.max_wait_s = scorer, max_batch_size, max_wait_ms / 1000
        self._queue: queue.Queue[tuple[list[ScoreItem], Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="scorer-batcher", daemon=True)
        self.batches = 0  # forward batches run so far, for tests and the health endpoint
        self._thread.start()

    def score(self, items: Sequence[ScoreItem]) -> list[float]:
        """Blocking: the scores of ``items``, computed together with other callers' items."""
        future: Future = Future()
        self._queue.put((list(items), future))
        return future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _collect(self, first: tuple[list[ScoreItem], Future]) -> tuple[list[tuple[list[ScoreItem], Future]], bool]:
        pending, size = [first], len(first[0])
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch_size:
            try:
                request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if request is None:
                return pending, True
            pending.append(request)
            size += len(request[0])
        return pending, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            pending, stop = self._collect(first)
            items = [item for request_items, _ in pending for item in request_items]
            try:
                scores = self.scorer.score(items, batch_size=self.max_batch_size)
                self.batches += -(-len(items) // self.max_batch_size)
            except Exception as err:  # the callers get the error; the service keeps running
                for _, future in pending:
                    future.set_exception(err)
                continue
            start = 0
            for request_items, future in pending:
                future.set_result(scores[start : start + len(request_items)])
                start += len(request_items)


def parse_items(body: Any) -> list[ScoreItem]:
    """Validate a ``/score`` request body; errors name the item index and field."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ValueError('body must be {"items": [{"question": str, "trajectory": str}, ...]}')
    if len(items) > MAX_ITEMS_PER_REQUEST:
        raise ValueError(f"at most {MAX_ITEMS_PER_REQUEST} items per request, got {len(items)}")
    parsed = []
    for i, item in enumerate(items):
        for name in ("question", "trajectory"):
            if not isinstance(item, dict) or not isinstance(item.get(name), str):
                raise ValueError(f"items[{i}].{name} must be a string")
        parsed.append(ScoreItem(item["question"], item["trajectory"]))
    return parsed


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # every reward thread of every worker may connect at once
    daemon_threads = True


class ScorerServer:
    """The HTTP service around a :class:`Batcher`; a context manager that serves on a thread."""

    def __init__(self, scorer: ConsistencyScorer, config: ServeConfig):
        self.batcher = Batcher(scorer, config.max_batch_size, config.max_wait_ms)
        self.httpd = _Server((config.host, config.port), _handler(self.batcher, config.checkpoint))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def __enter__(self) -> "ScorerServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.batcher.close()


def _handler(batcher: Batcher, checkpoint: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {"status": "ok", "checkpoint": checkpoint, "batches": batcher.batches})
            else:
                self._reply(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            if self.path != "/score":
                self._reply(404, {"error": f"no route {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length", 0))
                items = parse_items(json.loads(self.rfile.read(length) or b"null"))
            except ValueError as err:
                self._reply(400, {"error": str(err)})
                return
            try:
                self._reply(200, {"scores": batcher.score(items)})
            except Exception as err:  # noqa: BLE001 - reported to the client as a server error
                self._reply(500, {"error": f"{type(err).__name__}: {err}"})

        def log_message(self, format: str, *args: object) -> None:  # requests are too many to log
            return

    return Handler
