"""The scorer service's guards, run for real on 127.0.0.1: the optional API key (as ``vllm serve
--api-key``), the request size limit (413), and logs that never carry the key; also the command
itself, started as a user starts it."""

import http.client
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from medsage.reward_fns.consistency import ConsistencyClient, ConsistencyConfig, ScoreItem, ScorerAuthError
from medsage.reward_fns.consistency import cli
from medsage.reward_fns.consistency.serve import Batcher, BindError, ScorerServer, ServeConfig
from scorer_data import case

KEY = "sk-scorer-" + "7f3c" * 8  # a string no log line could contain by accident
ENV = "MEDSAGE_SCORER_API_KEY"
LIMIT = 4096
REPO = Path(__file__).resolve().parents[2]
CASES = [case(i, random.Random(11)) for i in range(4)]
ITEMS = [ScoreItem(c["question"], c["positive"]) for c in CASES]


@pytest.fixture(scope="module")
def guarded(scorer, trained_scorer):
    config = ServeConfig(str(trained_scorer[0]), port=0, max_wait_ms=1, max_request_bytes=LIMIT)
    with ScorerServer(scorer, config, api_key=KEY) as server:
        yield server


def _post(url: str, body: bytes | list[bytes], headers: dict[str, str]) -> tuple[int, dict, dict]:
    """(status, JSON reply, reply headers) of one raw POST /score; a list body goes chunked."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", "/score", body=iter(body) if isinstance(body, list) else body,
                     headers={"Content-Type": "application/json", **headers}, encode_chunked=isinstance(body, list))
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read()), dict(reply.getheaders())
    finally:
        conn.close()


def _body(items: list[ScoreItem]) -> bytes:
    return json.dumps({"items": [{"question": i.question, "trajectory": i.trajectory} for i in items]}).encode()


def test_with_a_key_only_the_bearer_of_it_is_scored(guarded, scorer, caplog):
    caplog.set_level(logging.DEBUG)
    body = _body(ITEMS[:1])
    status, reply, headers = _post(guarded.url, body, {})
    assert (status, headers.get("www-authenticate")) == (401, "Bearer") and "Authorization: Bearer" in reply["error"]
    assert _post(guarded.url, body, {"Authorization": f"Bearer {KEY}x"})[0] == 401
    assert _post(guarded.url, body, {"Authorization": f"Basic {KEY}"})[0] == 401
    status, reply, _ = _post(guarded.url, body, {"Authorization": f"Bearer {KEY}"})
    assert status == 200 and reply["scores"] == pytest.approx(scorer.score(ITEMS[:1]), abs=1e-5)
    parts = urllib.parse.urlsplit(guarded.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", "/health")  # open without the key, as vLLM's /health (load balancers probe it)
    assert conn.getresponse().status == 200
    conn.close()
    assert caplog.text.count("missing or wrong API key") == 3 and KEY not in caplog.text


def test_the_client_sends_the_key_from_its_variable_and_a_refusal_is_never_zero(guarded, scorer, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    client = ConsistencyClient(ConsistencyConfig(guarded.url, timeout_s=30, on_unreachable="zero", api_key_env="MY_SCORER_KEY"))
    monkeypatch.delenv("MY_SCORER_KEY", raising=False)
    with pytest.raises(ScorerAuthError, match=r"\$MY_SCORER_KEY is not set"):
        client.score_many(ITEMS)
    monkeypatch.setenv("MY_SCORER_KEY", "wrong-key")
    with pytest.raises(ScorerAuthError, match=r"\$MY_SCORER_KEY is not the service's key") as err:
        client.score_many(ITEMS)
    assert "wrong-key" not in str(err.value)
    monkeypatch.setenv("MY_SCORER_KEY", KEY)
    results = client.score_many(ITEMS)
    assert [r.score for r in results] == pytest.approx(scorer.score(ITEMS), abs=1e-5)
    assert all(r.reachable for r in results) and client.unreachable == 0
    assert KEY not in caplog.text and "wrong-key" not in caplog.text


def test_without_a_key_no_header_is_needed_and_none_is_sent(scorer, trained_scorer, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with ScorerServer(scorer, ServeConfig(str(trained_scorer[0]), port=0, max_wait_ms=1)) as server:
        assert _post(server.url, _body(ITEMS[:2]), {})[0] == 200
        assert ConsistencyClient(ConsistencyConfig(server.url, timeout_s=30)).score_many(ITEMS[:2])[0].reachable


def test_a_body_over_the_limit_is_refused_with_413_before_scoring(guarded, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    auth = {"Authorization": f"Bearer {KEY}"}
    big = _body([ScoreItem("q", "t" * LIMIT)])
    before = guarded.batcher.batches
    status, reply, _ = _post(guarded.url, big, auth)
    assert status == 413 and f"{len(big)} bytes exceeds max_request_bytes={LIMIT}" in reply["error"]
    status, reply, _ = _post(guarded.url, [big[:3000], big[3000:]], auth)  # chunked: no Content-Length to trust
    assert status == 413 and f"exceeds max_request_bytes={LIMIT}" in reply["error"]
    assert guarded.batcher.batches == before  # nothing was scored
    assert _post(guarded.url, _body(ITEMS[:1]), auth)[0] == 200 and len(_body(ITEMS[:1])) < LIMIT
    # the reward client's view: an HTTP error like any other, under the policy, logged once
    monkeypatch.setenv(ENV, KEY)
    client = ConsistencyClient(ConsistencyConfig(guarded.url, timeout_s=30, on_unreachable="zero"))
    result = client.score("q", "t" * LIMIT)
    assert (result.score, result.reachable, client.unreachable) == (0.0, False, 1)
    assert "HTTP 413: request body of" in caplog.text and KEY not in caplog.text


def test_an_address_in_use_is_a_one_line_recipe_error(scorer, trained_scorer, guarded):
    port = int(guarded.url.rsplit(":", 1)[1])
    with pytest.raises(BindError, match=f"host, port: cannot listen on 127.0.0.1:{port}"):
        ScorerServer(scorer, ServeConfig(str(trained_scorer[0]), port=port))


def test_the_command_reports_a_busy_port_before_loading_the_model(trained_scorer, guarded, monkeypatch, capsys):
    from medsage.reward_fns.consistency.model import ConsistencyScorer

    loads = []
    monkeypatch.setattr(ConsistencyScorer, "load", classmethod(lambda cls, *a, **k: loads.append(a)))
    port = guarded.url.rsplit(":", 1)[1]
    assert cli.serve_main(["recipes/scorer/serve.yaml", f"checkpoint={trained_scorer[0]}", f"port={port}"]) == 2
    assert f"medsage-scorer-serve: host, port: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert loads == []  # a minute of loading a 7B scorer is not spent before the one-line error


def test_the_api_key_option_wins_over_the_variable(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_serve", lambda recipe, overrides, api_key: seen.append(api_key) or 0)
    monkeypatch.setenv(ENV, "from-env")
    assert cli.serve_main(["recipes/scorer/serve.yaml", "--api-key", "from-option"]) == 0
    assert cli.serve_main(["recipes/scorer/serve.yaml"]) == 0
    monkeypatch.setenv(ENV, "")
    assert cli.serve_main(["recipes/scorer/serve.yaml"]) == 0
    assert seen == ["from-option", "from-env", None]


def test_the_command_serves_with_the_key_from_the_environment_and_never_prints_it(trained_scorer):
    env = {**os.environ, ENV: KEY, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", "from medsage.reward_fns.consistency.cli import serve_main; raise SystemExit(serve_main())",
               "recipes/scorer/serve.yaml", f"checkpoint={trained_scorer[0]}", "port=0", "max_wait_ms=1"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not lines or " at http://" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = lines[-1].split(" at ")[1].split(";")[0]
        assert "needs the API key" in lines[-1]
        assert _post(url, _body(ITEMS[:1]), {})[0] == 401
        assert _post(url, _body(ITEMS[:1]), {"Authorization": f"Bearer {KEY}"})[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output = "".join(lines) + proc.communicate(timeout=60)[0]
    # uvicorn shuts down gracefully, then lets SIGTERM end the process as it would have
    assert proc.returncode == -signal.SIGTERM and "Finished server process" in output, output
    assert "refused /score from 127.0.0.1: missing or wrong API key" in output and KEY not in output


class GatedScorer:
    """Holds the batcher on its first batch until the test opens the gate; "boom" fails a batch."""

    def __init__(self) -> None:
        self.gate, self.calls = threading.Event(), []

    def score(self, items: list[ScoreItem], batch_size: int) -> list[float]:
        self.gate.wait(10)
        self.calls.append([i.trajectory for i in items])
        if any(i.trajectory == "boom" for i in items):
            raise RuntimeError("boom")
        return [0.5] * len(items)


def test_a_cancelled_caller_or_a_failed_batch_leaves_the_batcher_serving(caplog):
    scorer, item = GatedScorer(), lambda t: [ScoreItem("q", t)]
    batcher = Batcher(scorer, max_batch_size=1, max_wait_ms=0)
    try:
        first = batcher.submit(item("a"))
        while not first.running():  # the batcher holds it at the gate
            time.sleep(0.01)
        dropped, failed = batcher.submit(item("b")), batcher.submit(item("boom"))
        assert dropped.cancel()  # the event loop gave up on that request
        scorer.gate.set()
        assert first.result(10) == [0.5]
        with pytest.raises(RuntimeError, match="boom"):
            failed.result(10)
        assert batcher.score(item("c")) == [0.5]
    finally:
        batcher.close()
    assert scorer.calls == [["a"], ["boom"], ["c"]]  # the cancelled request never reached the model
    assert "scoring a batch of 1 items from 1 requests failed" in caplog.text and "RuntimeError: boom" in caplog.text
