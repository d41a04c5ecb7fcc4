"""The client's two HTTP transports (aiohttp, else the openai SDK) behave alike; the cache writes a reply and its
ledger row in one transaction and is never counted per call; the trajectory store commits lines in order with
shared fsyncs off the event loop."""

import asyncio
import os
import sqlite3
import threading

import pytest
from openai_stub import StubReply, StubServer, scripted

import medsage.data_gen.llm_client as llm_client
from medsage.data_gen.llm_client import LLMAuthError, LLMClient, LLMConfig, LLMError, ResponseCache
from medsage.data_gen.pipeline import TrajectoryStore

TRANSPORTS = ["aiohttp", "openai"]


@pytest.fixture(params=TRANSPORTS)
def transport(request, monkeypatch):
    if request.param == "aiohttp":
        pytest.importorskip("aiohttp")
    else:
        monkeypatch.setattr(llm_client, "_aiohttp", None)
    return request.param


def chat(srv, text="hello", sleeps=None, **cfg):
    """One chat through a fresh client; ``srv`` is a server or the base URL of one."""
    async def go():
        url = srv if isinstance(srv, str) else srv.base_url
        config = LLMConfig(base_url=url, model="stub-model", backoff_base_s=0.01, **cfg)
        async with LLMClient(config) as llm:
            assert type(llm._http).__name__ == ("_OpenAITransport" if llm_client._aiohttp is None else "_AiohttpTransport")

            async def record(seconds):
                (sleeps if sleeps is not None else []).append(seconds)
            llm._sleep = record
            result = await llm.chat([{"role": "user", "content": text}])
            return result, llm.usage["stub-model"]

    return asyncio.run(go())


def test_a_reply_and_its_usage(transport):
    with StubServer(scripted()) as srv:
        result, usage = chat(srv, "what is seen")
    assert result.text == "echo: what is seen" and usage.calls == 1 and usage.completion_tokens == 4


@pytest.mark.parametrize("fault", [StubReply(status=500, raw='{"error": {"message": "boom"}}'),
                                   StubReply(status=503, raw="service unavailable"), StubReply(raw="{not json"),
                                   StubReply(raw="[1, 2]"), StubReply(text="late", delay_s=5.0)],
                         ids=["500", "503-text", "malformed-json", "not-an-object", "timeout"])
def test_transient_faults_are_retried(transport, fault):
    with StubServer(scripted(fault)) as srv:
        result, usage = chat(srv, timeout_s=1.0)
        calls = len(srv.calls)
    assert result.text == "echo: hello"
    # on a loaded machine the retry itself may time out too: then it is retried again
    assert usage.retries == calls - 1 and (usage.retries == 1 or fault.delay_s)


def test_retry_after_is_honoured(transport):
    sleeps = []
    with StubServer(scripted(StubReply(status=429, headers={"Retry-After": "7"}, raw="{}"))) as srv:
        result, _ = chat(srv, sleeps=sleeps)
    assert sleeps == [7.0] and result.text == "echo: hello"


def test_client_errors_carry_the_server_message(transport):
    with StubServer(scripted(StubReply(status=400, raw='{"error": {"message": "bad image"}}'))) as srv:
        with pytest.raises(LLMError, match=r"stub-model at http://127\.0\.0\.1:\d+/v1: HTTP 400: bad image"):
            chat(srv)
        assert len(srv.calls) == 1


def test_auth_failure_names_the_key_variable_not_the_key(transport, monkeypatch):
    monkeypatch.setenv("MEDSAGE_TEST_KEY", "sk-secret-123456789")
    reply = StubReply(status=401, raw='{"error": {"message": "Incorrect API key provided: sk-secret-123456789"}}')
    with StubServer(scripted(reply)) as srv:
        with pytest.raises(LLMAuthError, match=r"HTTP 401.*MEDSAGE_TEST_KEY") as err:
            chat(srv, api_key_env="MEDSAGE_TEST_KEY")
        assert srv.headers_seen[0]["authorization"] == "Bearer sk-secret-123456789"
    assert "sk-secret" not in str(err.value) and err.value.__cause__ is None


def test_unreachable_server_gives_up_naming_model_and_endpoint(transport):
    with StubServer(scripted()) as srv:
        url = srv.base_url  # closed below: nothing listens there any more
    with pytest.raises(LLMError, match=r"stub-model at http://127\.0\.0\.1:\d+/v1: gave up after 2 attempts"):
        chat(url, max_retries=1)


def test_a_reply_and_its_ledger_row_are_one_transaction_and_the_cache_is_never_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(ResponseCache, "__len__", lambda self: pytest.fail("a call counted the cache's rows"))
    commits = []
    real = ResponseCache.put

    def put(self, key, result, bill=None):
        self._db.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
        real(self, key, result, bill)
        self._db.set_trace_callback(None)

    monkeypatch.setattr(ResponseCache, "put", put)
    with StubServer(scripted()) as srv:
        for text in ("a", "b", "a"):
            chat(srv, text, cache_path=tmp_path / "c.sqlite", price_input_per_m=1.0)
    assert len(commits) == 2  # two answered calls, one commit each; the third was a cache hit
    db = sqlite3.connect(tmp_path / "c.sqlite")
    assert db.execute("SELECT COUNT(*) FROM replies").fetchone()[0] == 2
    assert db.execute("SELECT COUNT(*), SUM(cost_usd) > 0 FROM ledger").fetchone() == (2, 1)


def test_store_commits_concurrent_samples_in_order_with_shared_fsyncs(tmp_path, monkeypatch):
    from medsage.data_gen.exports import Verified
    from medsage.data_gen.instructions import Sample

    class Fake:
        def __init__(self, i):
            self.sample_id = f"s{i}"

        def to_json(self):
            return {"id": self.sample_id}

    monkeypatch.setattr(Sample, "from_json", staticmethod(lambda data: data))
    loop_thread, fsyncs = threading.get_ident(), []
    real_fsync = os.fsync

    def fsync(fd):
        assert threading.get_ident() != loop_thread  # never on the event loop
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = TrajectoryStore(tmp_path / "t.jsonl")

    async def go():
        await asyncio.gather(*(store.add(Verified(Fake(i), ())) for i in range(50)))

    asyncio.run(go())
    store.close()
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert [line.split('"')[3] for line in lines] == [f"s{i}" for i in range(50)]
    assert 1 <= len(fsyncs) < 50  # samples that finish together share an fsync
    again = TrajectoryStore(tmp_path / "t.jsonl")
    assert sorted(again.index, key=lambda s: int(s[1:])) == [f"s{i}" for i in range(50)]
    assert [again.get(f"s{i}").sample["id"] for i in (0, 49)] == ["s0", "s49"]
    again.close()
