"""An OpenAI-compatible chat-completions server on 127.0.0.1 for tests (stands in for GPT-4o / vLLM).

It speaks the real HTTP protocol, so the code under test runs its real ``openai`` client. A
``responder`` decides each reply from the request JSON: a string becomes a normal completion;
a :class:`StubReply` can return any status, headers, raw body or delay, which is how tests inject
429 with Retry-After, 5xx, timeouts and malformed JSON.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable


@dataclass
class StubReply:
    """A scripted reply: ``text`` for a normal completion, or ``raw`` for a body sent verbatim."""

    text: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: str | None = None
    delay_s: float = 0.0


Responder = Callable[[dict[str, Any]], "str | StubReply"]


def completion_body(text: str, request: dict[str, Any]) -> dict[str, Any]:
    prompt_words = len(json.dumps(request.get("messages", [])).split())
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "stub"),
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_words + len(text.split()),
        },
    }


def last_user_text(request: dict[str, Any]) -> str:
    """The text parts of the last user message (what most responders branch on)."""
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
    return ""


def scripted(*replies: Any) -> Callable[[dict[str, Any]], Any]:
    """A responder that plays ``replies`` in order (texts or :class:`StubReply`), then echoes the prompt."""
    queue, lock = list(replies), threading.Lock()

    def responder(request: dict[str, Any]) -> Any:
        with lock:
            if queue:
                return queue.pop(0)
        return "echo: " + last_user_text(request)

    return responder


class _Server(ThreadingHTTPServer):
    """A listen backlog like a production server's (uvicorn: 2048): socketserver's default of 5 drops the
    SYNs of a client that opens its connection pool at once, and each dropped SYN costs a call 1 s
    (the kernel's first retransmission)."""

    request_queue_size = 2048
    daemon_threads = True


class StubServer:
    """``with StubServer(responder) as srv:`` serves ``srv.base_url`` and records ``srv.calls``.

    ``record=False`` keeps no requests: a benchmark's hundreds of thousands of calls, each with its
    image, would otherwise hold gigabytes in the server.
    """

    def __init__(self, responder: Responder, record: bool = True):
        self.responder, self.record = responder, record
        self.calls: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []  # lower-cased names
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "StubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, request: dict[str, Any], headers: dict[str, str]) -> None:
        if not self.record:
            return
        with self._lock:
            self.calls.append(request)
            self.headers_seen.append(headers)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as production servers (uvicorn under `vllm serve`) set it: http.server writes
            # headers and body separately, and with Nagle on the body waits ~40 ms for a delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # /v1/models, for clients that probe the server
                self._send(200, json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}), {})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = json.loads(body or b"{}")
                stub._record(request, {k.lower(): v for k, v in self.headers.items()})
                reply = stub.responder(request)
                if isinstance(reply, str):
                    reply = StubReply(text=reply)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                payload = reply.raw if reply.raw is not None else json.dumps(completion_body(reply.text or "", request))
                self._send(reply.status, payload, reply.headers)

            def _send(self, status: int, payload: str, headers: dict[str, str]) -> None:
                data = payload.encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left; that is the behaviour under test

        return Handler


def slow_first_read(monkeypatch: Any, matches: Callable[[Path], bool], until: threading.Event) -> list[Path]:
    """``Path.read_bytes`` as on slow network storage: the first read of a file ``matches`` picks waits until
    ``until`` is set, which a test sets when the stub server receives another request. A read on the event
    loop holds every request back, so it waits out 10 s and fails. Returns the paths that waited."""
    real_read, waited = Path.read_bytes, []

    def read_bytes(path: Path) -> bytes:
        if not waited and matches(path):
            waited.append(path)
            assert until.wait(10), f"no other request went out while {path.name} was read"
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return waited
