"""The one async client for every LLM call (stage generation, verification, evaluation judges).

Data building makes tens of thousands of calls to GPT-4o or a ``vllm serve`` endpoint (paper
appendix A.3), so the client is built for long, interruptible runs:

* bounded concurrency (a semaphore around the HTTP call only; back-off sleeps hold no slot);
* lean HTTP: the request is POSTed as plain JSON through aiohttp (a fraction of the openai SDK's
  CPU per call, which decides a build's speed on a small machine);
* retries with exponential back-off and jitter on 429, 5xx, timeouts, connection errors and
  malformed replies (including a caller's ``validate`` rejecting the text), honouring
  ``Retry-After``; other 4xx fail at once with the server's message; 401/403 raise
  :class:`LLMAuthError`, which a build treats as fatal (every further call would fail the same way);
* a reply cut by the token limit (``finish_reason == "length"``) is malformed: retried, counted as
  ``truncated``, never returned, so a cut stage can never pass as a finished one;
* a persistent SQLite cache keyed by the request (model, messages, sampling parameters), so a
  killed run resumes without paying twice, and identical requests in flight are sent once;
* token and cost accounting per model, persisted with each billed reply in the cache's ``ledger``
  table, so a build's cost is exact across kills (:meth:`LLMClient.totals`);
* the API key is read from the environment variable named in the config and lives only in the
  HTTP client object: it is never part of the cache key, a file, or a log line, and error texts
  (a server may echo the key it was sent) pass through :func:`redact` before anyone sees them.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import logging
import mimetypes
import os
import random
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiohttp
import yarl
from aiohttp.helpers import get_env_proxy_for_url

log = logging.getLogger(__name__)  # retries and failures; their texts are redacted, never the key

_RETRY_STATUS = frozenset({408, 409, 429})
_AUTH_STATUS = frozenset({401, 403})
_KEY_LIKE = re.compile(r"\b(?:sk|key|api)[-_][A-Za-z0-9_*.\-]{6,}", re.IGNORECASE)


@dataclass(frozen=True)
class LLMConfig:
    """One endpoint and model; prices are USD per million tokens (0 for a local server)."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    max_retries: int = 6
    timeout_s: float = 60.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    cache_path: Path | None = None
    price_input_per_m: float = 0.0
    price_output_per_m: float = 0.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0:
            raise ValueError(f"LLMConfig for {self.model!r}: concurrency >= 1, max_retries >= 0, timeout_s > 0")


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool


@dataclass
class ModelUsage:
    """What one model cost so far; ``cache_hits`` were answered without a call."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    truncated: int = 0  # replies cut by the token limit (billed, never returned)


@dataclass(frozen=True)
class _Request:
    key: str  # the cache key
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    validate: Callable[[str], bool] | None
    allow_empty: bool


class LLMError(RuntimeError):
    """A request that could not be completed: retries exhausted, or a non-retryable 4xx."""


class LLMAuthError(LLMError):
    """401/403: the key is missing, wrong or not allowed this model; no later call can succeed."""


def redact(text: str, key_env: str = "OPENAI_API_KEY") -> str:
    """``text`` without the key from ``key_env`` or anything shaped like a key (servers echo part of it)."""
    key = os.environ.get(key_env)
    if key and len(key) >= 4:
        text = text.replace(key, "[key]")
    return _KEY_LIKE.sub("[key]", text)


class MalformedReply(ValueError):
    """The server answered 200 but with no usable text, or the caller's validator refused it."""


class ResponseCache:
    """Request-keyed replies in SQLite; safe to reopen after a kill (WAL, one row per request)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL survives a killed process (only a machine crash loses the last
        # writes, which are then simply asked again); FULL would fsync on every reply.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT, prompt_tokens INT, completion_tokens INT)"
        )
        # One row per billed reply (cached, truncated or refused by a validator alike), written before
        # the reply is used: a kill can lose at most the replies whose bytes were still in flight.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS ledger (model TEXT, prompt_tokens INT, completion_tokens INT, cost_usd REAL, truncated INT)"
        )

    def get(self, key: str) -> ChatResult | None:
        row = self._db.execute("SELECT text, prompt_tokens, completion_tokens FROM replies WHERE key = ?", (key,)).fetchone()
        return ChatResult(row[0], row[1], row[2], cached=True) if row else None

    def put(self, key: str, result: ChatResult, bill: tuple[str, float] | None = None) -> None:
        """Keep a reply; with ``bill`` (model, cost) its ledger row too, in the same transaction
        (one commit per answered call: each commit is a write to the WAL)."""
        row = (key, result.text, result.prompt_tokens, result.completion_tokens)
        if bill is None:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)", row)
            return
        self._db.execute("BEGIN")
        try:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)", row)
            self.bill(bill[0], result.prompt_tokens, result.completion_tokens, bill[1], False)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def bill(self, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float, truncated: bool) -> None:
        self._db.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?)",
                         (model, prompt_tokens, completion_tokens, cost_usd, int(truncated)))

    def billed(self) -> dict[str, ModelUsage]:
        """Per model, every reply billed through this cache, over all runs that used it."""
        rows = self._db.execute("SELECT model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd), "
                                "SUM(truncated) FROM ledger GROUP BY model")
        return {m: ModelUsage(calls=n, prompt_tokens=p, completion_tokens=c, cost_usd=cost, truncated=t)
                for m, n, p, c, cost, t in rows}

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class DataURL(str):
    """A data URL that carries the SHA-256 of its text, so a request's cache key never rehashes the image."""

    sha256: str

    def __new__(cls, url: str) -> "DataURL":
        obj = super().__new__(cls, url)
        obj.sha256 = _sha256(url)
        return obj


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_ENCODED: OrderedDict[tuple, DataURL] = OrderedDict()  # the images encoded last, by path, size, mtime and inode
_ENCODED_MAX_CHARS = 32 * 2**20
_encoded_chars = 0
_ENCODED_LOCK = threading.Lock()  # builds encode in worker threads (image_content_async); the cache is shared


# Leading bytes of the image formats a chat server decodes, for images handed over as bytes.
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
                (b"BM", "image/bmp"))


def _mime_of_bytes(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _IMAGE_MAGIC if data.startswith(magic)), "image/png")


def image_content(image: str | Path | bytes) -> dict[str, Any]:
    """An OpenAI chat content part carrying an image, a local file or its bytes, as a base64 data
    URL: the one place a request's image is encoded (data building, its judge, evaluation).

    A sample's stages and its judge send the same image several times: the data URLs of the files
    encoded last (32 MB of text at most) are kept, keyed by the file's path, size, mtime and inode,
    so an image is read, encoded and hashed once while its record is in flight, and a rewritten
    file is read again. Bytes (a benchmark's embedded images) are typed by their leading bytes.
    Safe to call from several threads; async code calls :func:`image_content_async`.
    """
    if isinstance(image, bytes):
        url = DataURL(f"data:{_mime_of_bytes(image)};base64,{base64.b64encode(image).decode('ascii')}")
        return {"type": "image_url", "image_url": {"url": url}}
    path = Path(image)
    info = path.stat()
    key = (str(path), info.st_size, info.st_mtime_ns, info.st_ino)
    with _ENCODED_LOCK:
        url = _ENCODED.get(key)
        if url is not None:
            _ENCODED.move_to_end(key)
    if url is None:  # read, encoded and hashed outside the lock: other threads' images go on meanwhile
        mime = mimetypes.guess_type(path.name)[0] or "image/png"
        url = DataURL(f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}")
        if len(url) <= _ENCODED_MAX_CHARS // 8:
            _remember(key, url)
    return {"type": "image_url", "image_url": {"url": url}}


def _remember(key: tuple, url: DataURL) -> None:
    global _encoded_chars
    with _ENCODED_LOCK:
        if key in _ENCODED:  # another thread encoded the same file meanwhile
            return
        _ENCODED[key] = url
        _encoded_chars += len(url)
        while _encoded_chars > _ENCODED_MAX_CHARS:
            _encoded_chars -= len(_ENCODED.popitem(last=False)[1])


async def image_content_async(image: str | Path | bytes) -> dict[str, Any]:
    """:func:`image_content` in a worker thread: reading an image from network storage, encoding and
    hashing it (milliseconds to seconds) would otherwise stall every request the event loop drives."""
    return await asyncio.to_thread(image_content, image)


def _keyed_part(part: Any) -> Any:
    """A content part as the cache key sees it: an image by the digest of its URL, not its bytes."""
    if not isinstance(part, dict) or part.get("type") != "image_url" or not isinstance(part.get("image_url"), dict):
        return part
    image = dict(part["image_url"])
    url = image.pop("url", None)
    if isinstance(url, str):
        image["url_sha256"] = url.sha256 if isinstance(url, DataURL) else _sha256(url)
    return {**part, "image_url": image}


def request_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """Cache key of a request: everything that determines the reply, nothing secret.

    Image URLs enter by their SHA-256 (computed once per image by :func:`image_content`), so
    keying a request costs the same whether it carries a 10 KB or a 10 MB image.
    """
    keyed = [
        {**m, "content": [_keyed_part(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
        for m in messages
    ]
    blob = json.dumps({"model": model, "messages": keyed, "params": params}, sort_keys=True, ensure_ascii=False)
    return _sha256(blob)


class _HTTPStatus(Exception):
    """A non-2xx reply: its status, the server's message and the headers (Retry-After)."""

    def __init__(self, status: int, message: str, headers: Any):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.headers = status, message, headers


class _Unreachable(Exception):
    """No reply: the connection failed, was dropped, or a read timed out."""


def _error_message(data: bytes) -> str:
    """The server's error text: ``error.message`` of a JSON error body, else the start of the body."""
    text = data.decode("utf-8", "replace")
    try:
        error = json.loads(text).get("error")
        return str(error.get("message") if isinstance(error, dict) else error or text)[:500]
    except (ValueError, AttributeError):
        return text[:500]


def _env_proxy(url: str) -> dict[str, Any]:
    """``proxy`` and ``proxy_auth`` for ``url`` from the environment, as aiohttp's ``trust_env`` finds them; none
    when no proxy is set or ``no_proxy`` exempts the host."""
    try:
        proxy, auth = get_env_proxy_for_url(yarl.URL(url))
    except LookupError:
        return {}
    return {"proxy": proxy, "proxy_auth": auth}


class _Transport:
    """POST a chat request with aiohttp: a persistent connection pool, one write of a prebuilt JSON body,
    the reply read whole. About a tenth of the openai SDK's CPU per call (its request options, header
    merging, anyio/httpcore layers); a build's event loop does everything else between calls, so on
    two cores the client's CPU per call decides how close a build gets to its concurrency bound.

    Proxies from the environment (``https_proxy``, ``no_proxy``, ...) are honoured as the SDK does, looked
    up once here: aiohttp's ``trust_env`` would look up the proxy and ``~/.netrc`` in a worker thread on
    every request (two trips through the default executor, which a build shares with image decoding,
    before the request is written: ~5 ms of a call's slot on a busy loop, 0.6 s on the first calls),
    and a netrc entry for the host would clash with the ``Authorization`` header, which holds the key
    (in this object only).
    """

    def __init__(self, config: LLMConfig, key: str):
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                         "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.timeout_s, sock_read=config.timeout_s)
        self._proxy = _env_proxy(self._url)
        self._session: Any = None  # made on the first call, inside the event loop that uses it

    async def post(self, body: dict[str, Any]) -> Any:
        if self._session is None:
            # the client's semaphore bounds the calls in flight; the pool keeps that many connections open
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=aiohttp.TCPConnector(limit=0))
        # encoded here, inside the caller's slot: 0.07 ms for a 30 KB body, and a waiting call holds no copy of its images
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            async with self._session.post(self._url, data=data, headers=self._headers, **self._proxy) as response:
                status, headers, payload = response.status, response.headers, await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _Unreachable(f"{type(exc).__name__}: {exc}") from None
        if status >= 300:
            raise _HTTPStatus(status, _error_message(payload), headers)
        return json.loads(payload)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class LLMClient:
    """Use inside one event loop: ``async with LLMClient(cfg) as llm: await llm.chat(messages)``."""

    def __init__(self, config: LLMConfig):
        self.config = config
        self.usage: dict[str, ModelUsage] = {}
        key = os.environ.get(config.api_key_env) or "EMPTY"
        self._http = _Transport(config, key)
        self._slots = asyncio.Semaphore(config.concurrency)
        self._cache = ResponseCache(config.cache_path) if config.cache_path else None
        self._in_flight: dict[str, asyncio.Future[ChatResult]] = {}
        self._refused: LLMAuthError | None = None  # set by the first 401/403: every later call fails at once
        self._sleep = asyncio.sleep  # replaced in tests to observe back-off without waiting

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.close()
        if self._cache is not None:
            self._cache.close()

    def totals(self) -> dict[str, ModelUsage]:
        """Usage to report: billed calls, tokens and cost from the ledger (all runs, exact across kills)
        when there is a cache, cache hits and retries of this run; this run's counters otherwise."""
        if self._cache is None:
            return dict(self.usage)
        billed = self._cache.billed()
        for model, usage in self.usage.items():
            total = billed.setdefault(model, ModelUsage())
            total.cache_hits, total.retries = usage.cache_hits, usage.retries
        return billed

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        validate: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> ChatResult:
        """One chat completion, from the cache when this exact request was answered before.

        An empty reply is retried as malformed unless ``allow_empty`` (evaluation wants a policy
        that answers nothing to count as a parse failure, not to stop the run).
        """
        params = {"temperature": temperature, "max_tokens": max_tokens}
        key = request_key(self.config.model, messages, params)
        usage = self.usage.setdefault(self.config.model, ModelUsage())
        hit = self._cache.get(key) if self._cache is not None else None  # (not ``if self._cache``: that counts its rows)
        if hit is not None and (validate is None or validate(hit.text)):
            usage.cache_hits += 1
            return hit
        if key in self._in_flight:
            return await asyncio.shield(self._in_flight[key])
        future: asyncio.Future[ChatResult] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            result = await self._call_with_retries(_Request(key, messages, params, validate, allow_empty), usage)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            del self._in_flight[key]

    async def _call_with_retries(self, request: _Request, usage: ModelUsage) -> ChatResult:
        last_error: Exception | None = None
        for attempt in range(self.config.max_retries + 1):
            try:
                return await self._call_once(request, usage)
            except LLMAuthError:
                raise
            except _HTTPStatus as exc:
                if exc.status < 500 and exc.status not in _RETRY_STATUS:
                    raise self._failed(f"{exc}") from None
                last_error, delay = exc, _retry_after(exc.headers)
            except (_Unreachable, MalformedReply) as exc:
                last_error, delay = exc, None
            except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:  # undecodable reply body
                last_error, delay = MalformedReply(f"undecodable reply: {exc!r}"), None
            if attempt == self.config.max_retries:
                break
            usage.retries += 1
            wait = delay if delay is not None else self._backoff(attempt)
            log.info("%s", self._redact(  # as the openai SDK logs its retries: shown once logging asks for INFO
                f"{self.config.model} at {self.config.base_url}: attempt {attempt + 1} of "
                f"{self.config.max_retries + 1} failed ({last_error}); retrying in {wait:.1f} s"))
            await self._sleep(wait)
        raise self._failed(f"gave up after {self.config.max_retries + 1} attempts: {last_error}") from None

    def _failed(self, reason: str) -> LLMError:
        """The error a request ends with, logged once; its text redacted."""
        error = LLMError(self._redact(f"{self.config.model} at {self.config.base_url}: {reason}"))
        log.error("%s", error)
        return error

    def _redact(self, text: str) -> str:
        return redact(text, self.config.api_key_env)

    async def _call_once(self, request: _Request, usage: ModelUsage) -> ChatResult:
        body = {"model": self.config.model, "messages": request.messages, **request.params}
        async with self._slots:
            if self._refused is not None:  # the key was refused: no further call, whoever was waiting for a slot
                raise self._refused
            try:
                reply = await self._http.post(body)
            except _HTTPStatus as exc:
                if exc.status in _AUTH_STATUS:
                    self._refused = LLMAuthError(
                        f"{self.config.model} at {self.config.base_url}: HTTP {exc.status}: the server refused the "
                        f"credentials; check the key in ${self.config.api_key_env} and that it may use this model")
                    log.error("%s", self._refused)
                    raise self._refused from None
                raise
        if not isinstance(reply, dict):
            usage.calls += 1
            raise MalformedReply(f"reply is not a JSON object: {str(reply)[:200]!r}")
        prompt_tokens, completion_tokens, cost, truncated = self._bill(reply, usage)
        try:
            text = reply["choices"][0]["message"].get("content")
            if text is None and request.allow_empty:
                text = ""
            if not isinstance(text, str) or (not text.strip() and not request.allow_empty):
                raise MalformedReply("reply has no text")
            if truncated:
                raise MalformedReply("reply cut by the token limit (finish_reason=length)")
            if request.validate is not None and not request.validate(text):
                raise MalformedReply("reply rejected by validator")
        except BaseException:  # billed all the same
            if self._cache is not None:
                self._cache.bill(self.config.model, prompt_tokens, completion_tokens, cost, truncated)
            raise
        result = ChatResult(text, prompt_tokens, completion_tokens, cached=False)
        if self._cache is not None:  # the reply and its ledger row, before anyone uses the reply
            self._cache.put(request.key, result, bill=(self.config.model, cost))
        return result

    def _bill(self, reply: dict, usage: ModelUsage) -> tuple[int, int, float, bool]:
        """Account a 200 reply (billed whatever its content) in memory; its token counts, cost and
        whether the token limit cut it (the caller writes the ledger row)."""
        counts = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        prompt_tokens = int(counts.get("prompt_tokens") or 0)
        completion_tokens = int(counts.get("completion_tokens") or 0)
        cost = (prompt_tokens * self.config.price_input_per_m + completion_tokens * self.config.price_output_per_m) / 1e6
        choices = reply.get("choices")
        truncated = bool(choices) and isinstance(choices[0], dict) and choices[0].get("finish_reason") == "length"
        usage.calls += 1
        usage.prompt_tokens += prompt_tokens
        usage.completion_tokens += completion_tokens
        usage.cost_usd += cost
        usage.truncated += truncated
        return prompt_tokens, completion_tokens, cost, truncated

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), capped at 10 min."""
    try:
        if headers.get("retry-after-ms"):
            return min(float(headers["retry-after-ms"]) / 1000, 600.0)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return min(max(float(value), 0.0), 600.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value).timestamp()
            return min(max(when - time.time(), 0.0), 600.0)
    except (TypeError, ValueError, AttributeError):
        return None
