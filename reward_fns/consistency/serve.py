"""Batched HTTP scoring service for the consistency reward inside RL (paper appendix A.4).

verl computes rewards in many threads of several Ray workers at once; loading a scorer per sample
or per worker would not fit. One service holds the model, and a batcher thread merges whatever
requests arrive within ``max_wait_ms`` (up to ``max_batch_size`` trajectories) into one forward
pass: dynamic batching across every worker's concurrent reward calls. The HTTP side is FastAPI on
uvicorn (as ``vllm serve``): one event loop waits on the batcher, so a
thousand open reward calls cost a thousand futures, not a thousand threads.

API (JSON over HTTP):
    POST /score  {"items": [{"question": str, "trajectory": str}, ...]} -> {"scores": [float, ...]}
                 400: a malformed body (the reply names the item and field); 401: the API key is
                 missing or wrong; 413: the body exceeds ``max_request_bytes``; 500: the forward failed.
    GET  /health -> {"status": "ok", "checkpoint": str, "batches": int}  (open, as vLLM's /health)

With an API key (``--api-key`` or ``$MEDSAGE_SCORER_API_KEY``, as ``vllm serve --api-key`` /
``$VLLM_API_KEY``) ``/score`` needs ``Authorization: Bearer <key>``. The key lives in this process's
memory only: it is no recipe field, so it never lands in a recipe, a log or an output folder.

Usage: ``medsage-scorer-serve recipes/scorer/serve.yaml [checkpoint=DIR port=8765 ...]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from medsage.config import ConfigError, bounded

from .model import ConsistencyScorer
from .pairs import ScoreItem

MAX_ITEMS_PER_REQUEST = 4096
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """The serving recipe (recipes/scorer/serve.yaml); ``max_wait_ms`` trades a little latency for
    larger batches. ``device`` and ``dtype`` ``auto``: the GPU in bfloat16 when there is one."""

    checkpoint: str  # a folder written by medsage-scorer-train (its output_dir)
    host: str = "127.0.0.1"
    port: int = bounded(8765, ge=0, le=65535)
    max_batch_size: int = bounded(64, ge=1)
    max_wait_ms: float = bounded(5.0, ge=0)
    max_request_bytes: int = bounded(16 * 2**20, ge=1)  # a larger body is refused with 413 before it is read whole
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

    def submit(self, items: Sequence[ScoreItem]) -> Future:
        """A future of the scores of ``items``; the event loop awaits it without holding a thread."""
        future: Future = Future()
        self._queue.put((list(items), future))
        return future

    def score(self, items: Sequence[ScoreItem]) -> list[float]:
        """Blocking: the scores of ``items``, computed together with other callers' items."""
        return self.submit(items).result()

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
            # a caller that gave up (a request cancelled on the event loop) is dropped; the rest can no
            # longer be cancelled, so setting their results below cannot fail and kill this thread
            pending = [(request, future) for request, future in pending if future.set_running_or_notify_cancel()]
            if not pending:
                continue
            items = [item for request_items, _ in pending for item in request_items]
            try:
                scores = self.scorer.score(items, batch_size=self.max_batch_size)
                self.batches += -(-len(items) // self.max_batch_size)
            except Exception as err:  # the callers get the error; the service keeps running
                logger.exception("scoring a batch of %d items from %d requests failed", len(items), len(pending))
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


class RequestTooLarge(ValueError):
    """A request body over ``max_request_bytes`` (HTTP 413)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit``: from Content-Length before a
    byte is read, or while a chunked body streams in, so no oversized body is ever held whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {declared} bytes exceeds max_request_bytes={limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge(f"request body exceeds max_request_bytes={limit}")
    return bytes(body)


def authorized(request: Request, api_key: str | None) -> bool:
    """``Authorization: Bearer <api_key>``, compared in constant time; anything goes without a key."""
    if api_key is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), api_key.encode())


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(batcher: Batcher, checkpoint: str, max_request_bytes: int, api_key: str | None = None) -> FastAPI:
    """The FastAPI application around ``batcher``; the request body is read by hand so that its
    size is bounded and a bad item gets a 400 naming it (as the stdlib service did)."""
    app = FastAPI(title="MEDSAGE consistency scorer", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "checkpoint": checkpoint, "batches": batcher.batches}

    @app.post("/score")
    async def score(request: Request) -> JSONResponse:
        if not authorized(request, api_key):
            logger.warning("refused /score from %s: missing or wrong API key", request.client.host if request.client else "?")
            return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
        try:
            items = parse_items(json.loads(await read_body(request, max_request_bytes) or b"null"))
        except RequestTooLarge as err:
            logger.warning("refused /score: %s", err)
            return _error(413, str(err))
        except ValueError as err:  # also malformed JSON and text that is not UTF-8
            return _error(400, str(err))
        try:
            return JSONResponse({"scores": await asyncio.wrap_future(batcher.submit(items))})
        except Exception as err:  # noqa: BLE001 - logged by the batcher, reported to the client
            return _error(500, f"{type(err).__name__}: {err}")

    return app


class BindError(ConfigError):
    """The recipe's host and port cannot be served (in use, not this machine's): the user's to fix,
    so the command reports it in one line like any other recipe mistake."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound before the service starts so ``port=0`` knows its port at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as err:
        raise BindError(f"host, port: cannot listen on {host}:{port} ({err.strerror or err})") from None


class ScorerServer:
    """The service around a :class:`Batcher`: ``serve_forever`` in the foreground (the command),
    or a context manager serving on a thread (tests, benchmarks)."""

    def __init__(self, scorer: ConsistencyScorer, config: ServeConfig, api_key: str | None = None,
                 listener: socket.socket | None = None):
        """``listener``: the socket :func:`bind` made for ``config``'s address, when the caller bound it before
        loading the scorer (the command does, so a busy port is reported before a minute of loading)."""
        self.batcher = Batcher(scorer, config.max_batch_size, config.max_wait_ms)
        app = create_app(self.batcher, config.checkpoint, config.max_request_bytes, api_key or None)
        # log_config=None: uvicorn's messages go through the caller's logging; no access log, as the
        # reward workers send one request per sample.
        self._uvicorn = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
        self._socket = listener or bind(config.host, config.port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve until SIGINT/SIGTERM (uvicorn's graceful shutdown), then stop the batcher."""
        try:
            self._uvicorn.run(sockets=[self._socket])
        finally:
            self.batcher.close()
            self._socket.close()

    def __enter__(self) -> "ScorerServer":
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the scorer service at {self.url} did not start (see the log)")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join()
        self.batcher.close()
        self._socket.close()
