"""The client's HTTP transport (aiohttp) on replies that are not an object, timeouts and a closed port, behind a proxy
from the environment and beside a netrc entry for its host; the cache writes a reply and its
ledger row in one transaction and is never counted per call; the trajectory store commits lines in order with
shared fsyncs off the event loop."""

import asyncio
import os
import sqlite3
import threading

import pytest
from openai_stub import StubReply, StubServer, scripted

from medsage.data_gen.llm_client import LLMClient, LLMConfig, LLMError, ResponseCache
from medsage.data_gen.pipeline import TrajectoryStore


def chat(srv, text="hello", sleeps=None, **cfg):
    """One chat through a fresh client; ``srv`` is a server or the base URL of one."""
    async def go():
        url = srv if isinstance(srv, str) else srv.base_url
        config = LLMConfig(base_url=url, model="stub-model", backoff_base_s=0.01, **cfg)
        async with LLMClient(config) as llm:
            async def record(seconds):
                (sleeps if sleeps is not None else []).append(seconds)
            llm._sleep = record
            result = await llm.chat([{"role": "user", "content": text}])
            return result, llm.usage["stub-model"]

    return asyncio.run(go())


# (500, 503, malformed JSON, 429 and 4xx replies: tests/test_llm_client.py)
@pytest.mark.parametrize("fault", [StubReply(raw="[1, 2]"), StubReply(text="late", delay_s=5.0)],
                         ids=["not-an-object", "timeout"])
def test_transient_faults_are_retried(fault):
    with StubServer(scripted(fault)) as srv:
        result, usage = chat(srv, timeout_s=1.0)
        calls = len(srv.calls)
    assert result.text == "echo: hello"
    # on a loaded machine the retry itself may time out too: then it is retried again
    assert usage.retries == calls - 1 and (usage.retries == 1 or fault.delay_s)


def test_unreachable_server_gives_up_naming_model_and_endpoint():
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


def test_a_proxy_from_the_environment_carries_the_calls(monkeypatch):
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with StubServer(scripted()) as proxy:
        monkeypatch.setenv("http_proxy", proxy.base_url.removesuffix("/v1"))
        result, _ = chat("http://llm.invalid/v1", max_retries=0)  # a host no resolver knows: only the proxy answers
        calls = len(proxy.calls)
    assert result.text == "echo: hello" and calls == 1


def test_a_netrc_entry_for_the_host_neither_breaks_calls_nor_replaces_the_key(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-right-key")
    with StubServer(scripted()) as srv:
        result, _ = chat(srv, max_retries=0)
        sent = srv.headers_seen[0]["authorization"]
    assert result.text == "echo: hello" and sent == "Bearer sk-the-right-key"
