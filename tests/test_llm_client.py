"""The shared LLM client against an OpenAI-compatible server on 127.0.0.1 with injected faults."""

import asyncio
import base64
import threading

import pytest
from openai_stub import StubReply, StubServer, scripted

from medsage.data_gen.llm_client import LLMAuthError, LLMClient, LLMConfig, LLMError, image_content


def ask(text):
    return [{"role": "user", "content": text}]


def run(coro):
    return asyncio.run(coro)


async def chat_once(config, text="hello", sleeps=None, **kw):
    async with LLMClient(config) as llm:
        if sleeps is not None:
            async def record(seconds):
                sleeps.append(seconds)
            llm._sleep = record
        result = await llm.chat(ask(text), **kw)
        return result, llm.usage[config.model]


def config(srv, **kw):
    return LLMConfig(base_url=srv.base_url, model="stub-model", backoff_base_s=0.01, **kw)


def test_completion_usage_and_cost_are_accounted():
    with StubServer(scripted()) as srv:
        result, usage = run(chat_once(config(srv, price_input_per_m=2.0, price_output_per_m=10.0), "what is seen"))
    assert result.text == "echo: what is seen" and not result.cached
    assert usage.calls == 1 and usage.completion_tokens == 4 and usage.prompt_tokens == result.prompt_tokens > 0
    assert usage.cost_usd == pytest.approx((result.prompt_tokens * 2 + 4 * 10) / 1e6)


@pytest.mark.parametrize(
    "fault",
    [
        StubReply(status=500, raw='{"error": {"message": "boom"}}'),
        StubReply(status=503, raw="service unavailable"),
        StubReply(raw="{not json"),
        StubReply(raw='{"id": "x", "object": "chat.completion", "choices": []}'),
        StubReply(text=""),
    ],
    ids=["500", "503-text", "malformed-json", "no-choices", "empty-text"],
)
def test_transient_faults_are_retried_with_backoff(fault):
    sleeps = []
    with StubServer(scripted(fault, fault)) as srv:
        result, usage = run(chat_once(config(srv), sleeps=sleeps))
        assert len(srv.calls) == 3
    assert result.text == "echo: hello"
    assert usage.retries == 2 and len(sleeps) == 2
    assert 0 < sleeps[0] <= 0.01 and sleeps[1] <= 0.02  # exponential, jittered, capped


def test_429_honours_retry_after():
    sleeps = []
    with StubServer(scripted(StubReply(status=429, headers={"Retry-After": "7"}, raw="{}"))) as srv:
        result, _ = run(chat_once(config(srv), sleeps=sleeps))
    assert sleeps == [7.0] and result.text == "echo: hello"


def test_timeouts_are_retried():
    with StubServer(scripted(StubReply(text="late", delay_s=1.0))) as srv:
        result, usage = run(chat_once(config(srv, timeout_s=0.3)))
    assert result.text == "echo: hello" and usage.retries == 1


def test_validator_rejection_is_retried():
    with StubServer(scripted("no tags here", "<LOC>x</LOC>")) as srv:
        result, usage = run(chat_once(config(srv), validate=lambda t: "<LOC>" in t))
    assert result.text == "<LOC>x</LOC>" and usage.retries == 1


def test_client_errors_fail_fast_with_the_server_message():
    reply = StubReply(status=400, raw='{"error": {"message": "bad image"}}')
    with StubServer(scripted(reply, reply)) as srv:
        with pytest.raises(LLMError, match="HTTP 400.*bad image"):
            run(chat_once(config(srv)))
        assert len(srv.calls) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_its_own_error_and_never_repeats_the_servers_text(monkeypatch, status):
    """OpenAI's 401 echoes part of the key it got; the error names the variable, not the server's text."""
    monkeypatch.setenv("MEDSAGE_TEST_KEY", "sk-proj-abcdef123456")
    reply = StubReply(status=status, raw='{"error": {"message": "Incorrect API key provided: sk-proj-abc***3456"}}')
    with StubServer(scripted(reply, reply)) as srv:
        with pytest.raises(LLMAuthError, match=rf"HTTP {status}.*MEDSAGE_TEST_KEY") as err:
            run(chat_once(config(srv, api_key_env="MEDSAGE_TEST_KEY")))
        assert len(srv.calls) == 1
    assert "sk-" not in str(err.value) and err.value.__cause__ is None


def test_other_error_texts_are_redacted(monkeypatch):
    monkeypatch.setenv("MEDSAGE_TEST_KEY", "sk-proj-abcdef123456")
    reply = StubReply(status=400, raw='{"error": {"message": "bad request from sk-proj-abcdef123456"}}')
    with StubServer(scripted(reply)) as srv:
        with pytest.raises(LLMError) as err:
            run(chat_once(config(srv, api_key_env="MEDSAGE_TEST_KEY")))
    assert "abcdef123456" not in str(err.value) and "[key]" in str(err.value)


def test_reply_cut_by_the_token_limit_is_retried_billed_and_never_returned(tmp_path):
    cut = StubReply(raw='{"choices": [{"finish_reason": "length", "message": {"content": "<LOC>half a sent"}}], '
                        '"usage": {"prompt_tokens": 10, "completion_tokens": 4}}')
    with StubServer(scripted(cut, cut)) as srv:
        result, usage = run(chat_once(config(srv, cache_path=tmp_path / "c.sqlite"), "x"))
    assert result.text == "echo: x" and usage.truncated == 2 and usage.calls == 3
    with StubServer(lambda request: cut) as srv:
        with pytest.raises(LLMError, match="token limit"):
            run(chat_once(config(srv, max_retries=1)))


def test_the_ledger_keeps_every_billed_reply_across_clients(tmp_path):
    cache = tmp_path / "c.sqlite"
    with StubServer(scripted()) as srv:
        cfg = config(srv, cache_path=cache, price_input_per_m=1.0, price_output_per_m=1.0)
        run(chat_once(cfg, "one"))

        async def again():
            async with LLMClient(cfg) as llm:
                await llm.chat(ask("one"))
                await llm.chat(ask("two"))
                return llm.totals()["stub-model"]

        totals = run(again())
    assert totals.calls == 2 and totals.cache_hits == 1 and totals.completion_tokens == 4


def test_gives_up_after_max_retries_naming_model_and_endpoint():
    with StubServer(lambda r: StubReply(status=500, raw="{}")) as srv:
        with pytest.raises(LLMError, match=r"stub-model at http://127\.0\.0\.1:\d+/v1: gave up after 3 attempts"):
            run(chat_once(config(srv, max_retries=2)))
        assert len(srv.calls) == 3


def test_cache_resumes_a_killed_run_without_repeating_calls(tmp_path):
    cache = tmp_path / "cache.sqlite"

    async def batch(srv):
        async with LLMClient(config(srv, cache_path=cache)) as llm:
            results = await asyncio.gather(*(llm.chat(ask(f"q{i}")) for i in range(6)))
            return results, llm.usage["stub-model"]

    with StubServer(scripted()) as srv:
        first, _ = run(batch(srv))
        again, usage = run(batch(srv))
        assert len(srv.calls) == 6
    assert [r.text for r in again] == [r.text for r in first]
    assert all(r.cached for r in again) and usage.cache_hits == 6 and usage.calls == 0


def test_cached_reply_failing_validation_is_asked_again(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with StubServer(scripted("old format", "<ANSWER>new</ANSWER>")) as srv:
        run(chat_once(config(srv, cache_path=cache)))
        result, _ = run(chat_once(config(srv, cache_path=cache), validate=lambda t: "<ANSWER>" in t))
        assert len(srv.calls) == 2
    assert result.text == "<ANSWER>new</ANSWER>"


def test_identical_requests_in_flight_are_sent_once():
    async def many(srv):
        async with LLMClient(config(srv)) as llm:
            return await asyncio.gather(*(llm.chat(ask("same")) for _ in range(5)))

    with StubServer(lambda r: StubReply(text="one", delay_s=0.2)) as srv:
        results = run(many(srv))
        assert len(srv.calls) == 1
    assert [r.text for r in results] == ["one"] * 5


def test_concurrency_is_bounded():
    active, peak, lock = [0], [0], threading.Lock()

    def responder(request):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        threading.Event().wait(0.1)
        with lock:
            active[0] -= 1
        return "ok"

    async def many(srv):
        async with LLMClient(config(srv, concurrency=3)) as llm:
            await asyncio.gather(*(llm.chat(ask(f"q{i}")) for i in range(12)))

    with StubServer(responder) as srv:
        run(many(srv))
        assert len(srv.calls) == 12
    assert peak[0] == 3


def test_api_key_is_sent_but_never_written(tmp_path, monkeypatch, caplog):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("MEDSAGE_TEST_KEY", secret)
    cache = tmp_path / "cache.sqlite"
    with StubServer(scripted()) as srv:
        run(chat_once(config(srv, api_key_env="MEDSAGE_TEST_KEY", cache_path=cache)))
        assert srv.headers_seen[0].get("authorization") == f"Bearer {secret}"
    for f in tmp_path.iterdir():
        assert secret.encode() not in f.read_bytes()
    assert secret not in caplog.text
    assert secret not in repr(config(srv, api_key_env="MEDSAGE_TEST_KEY"))


def test_image_content_is_a_base64_data_url(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    part = image_content(png)
    assert part["type"] == "image_url"
    header, data = part["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64" and base64.b64decode(data) == png.read_bytes()


def test_image_content_types_image_bytes_by_their_format(tmp_path):
    """Embedded benchmark images arrive as bytes: the same helper encodes them, typed by content."""
    import io

    from PIL import Image

    for fmt, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("BMP", "image/bmp")):
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), (200, 10, 10)).save(buffer, format=fmt)
        url = image_content(buffer.getvalue())["image_url"]["url"]
        header, data = url.split(",", 1)
        assert header == f"data:{mime};base64" and base64.b64decode(data) == buffer.getvalue()
        assert url.sha256  # keyed by digest in a request's cache key, like a file's URL


def test_bad_config_is_rejected_up_front():
    with pytest.raises(ValueError, match="concurrency"):
        LLMConfig(base_url="http://127.0.0.1:1/v1", model="m", concurrency=0)


def test_empty_reply_is_accepted_when_allowed():
    with StubServer(scripted(StubReply(text=""))) as srv:
        result, usage = run(chat_once(config(srv), allow_empty=True))
        assert len(srv.calls) == 1
    assert result.text == "" and usage.retries == 0


def test_retries_and_failures_are_logged_without_the_key(monkeypatch, caplog):
    secret = "sk-proj-abcdef123456"
    monkeypatch.setenv("MEDSAGE_TEST_KEY", secret)
    fault = StubReply(status=500, raw=f'{{"error": {{"message": "overloaded, key {secret}"}}}}')
    caplog.set_level("INFO", logger="medsage.data_gen.llm_client")
    with StubServer(scripted(fault)) as srv:
        result, _ = run(chat_once(config(srv, api_key_env="MEDSAGE_TEST_KEY")))
    assert result.text == "echo: hello"
    (retry,) = caplog.records
    assert retry.levelname == "INFO" and "stub-model" in retry.getMessage()
    assert "attempt 1 of 7 failed" in retry.getMessage() and "retrying in" in retry.getMessage()
    caplog.clear()
    with StubServer(lambda r: fault) as srv:
        with pytest.raises(LLMError):
            run(chat_once(config(srv, api_key_env="MEDSAGE_TEST_KEY", max_retries=1)))
    assert [r.levelname for r in caplog.records] == ["INFO", "ERROR"]
    assert "gave up after 2 attempts" in caplog.records[-1].getMessage()
    assert secret not in caplog.text and "[key]" in caplog.text


def test_image_content_from_many_threads_keeps_the_encoded_cache_consistent(tmp_path, monkeypatch):
    """Builds encode images in worker threads: concurrent hits, misses and evictions of the shared cache
    must neither raise nor let its size accounting drift from what it holds."""
    from concurrent.futures import ThreadPoolExecutor

    from medsage.data_gen import llm_client

    paths = []
    for i in range(12):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([i]) * (4000 + 150 * i))
    monkeypatch.setattr(llm_client, "_ENCODED", llm_client.OrderedDict())
    monkeypatch.setattr(llm_client, "_encoded_chars", 0)
    monkeypatch.setattr(llm_client, "_ENCODED_MAX_CHARS", 64000)  # 8 to 10 of the 12 images: calls evict
    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(image_content, [paths[i % 12] for i in range(600)]))
    for i, part in enumerate(parts):
        assert base64.b64decode(part["image_url"]["url"].split(",", 1)[1]) == paths[i % 12].read_bytes()
    assert 0 < llm_client._encoded_chars == sum(map(len, llm_client._ENCODED.values())) <= 64000
