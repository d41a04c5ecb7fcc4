"""The build against an OpenAI-compatible server on 127.0.0.1: injected faults, judge rejections, kill and resume."""

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pandas as pd
from openai_stub import StubReply, StubServer, last_user_text, slow_first_read

from medsage.data_gen.config import load_config
from medsage.data_gen.llm_client import request_key
from medsage.data_gen.pipeline import build

from build_recipes import write_recipe

FAULTS = ("429", "500", "timeout", "malformed_json", "missing_tag")


def stage_reply(request: dict) -> str:
    """What a well-behaved model says at each stage; the judge rejects one trajectory in four."""
    text = last_user_text(request)
    if "experienced radiologist" in text:
        return "<LOC>The region of interest lies in the marked part of the image.</LOC>"
    if "medical imaging observer" in text:
        return "<VISUAL>(A) The background is unremarkable. (B) A rounded focus with smooth margins.</VISUAL>"
    if "Ground-truth answer label" in text:
        return "<KNOWLEDGE>- The focus must meet the defining imaging criteria of the answer.</KNOWLEDGE>"
    if "Integrate the localization" in text:
        return "<CON>The evidence in the region supports the answer.</CON>"
    if "meticulous reviewer" in text:
        digest = int(hashlib.sha1(text.encode()).hexdigest(), 16)
        ok = digest % 4 != 0
        return json.dumps({"consistent": ok, "issues": [] if ok else ["unsupported step"]})
    return StubReply(status=400, raw='{"error": {"message": "unexpected prompt"}}')


class Faulty:
    """Fails the first attempt of one request in three, cycling through the fault kinds."""

    def __init__(self):
        self.attempts: Counter = Counter()
        self.injected: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: dict):
        key = hashlib.sha1(json.dumps(request["messages"], sort_keys=True).encode()).hexdigest()
        with self.lock:
            self.attempts[key] += 1
            first = self.attempts[key] == 1
            kind = FAULTS[sum(self.injected.values()) % len(FAULTS)] if first and int(key, 16) % 3 == 0 else None
            if kind:
                self.injected[kind] += 1
        if kind == "429":
            return StubReply(status=429, raw='{"error": {"message": "rate limited"}}', headers={"Retry-After": "0.01"})
        if kind == "500":
            return StubReply(status=500, raw='{"error": {"message": "boom"}}')
        if kind == "timeout":
            return StubReply(text=stage_reply(request), delay_s=1.0)
        if kind == "malformed_json":
            return StubReply(raw='{"id": "x", "choices": [')
        if kind == "missing_tag":
            return "Sure! Here is the description you asked for, without any tags."
        return stage_reply(request)


def llm_recipe(path: Path, base_url: str, out: str, sources: list | None = None, **endpoint_keys) -> Path:
    endpoint = {"base_url": base_url, "model": "stub-gpt", "concurrency": 8, "timeout_s": 0.5,
                "backoff_base_s": 0.01, "backoff_max_s": 0.05, "max_retries": 6,
                "price_input_per_m": 2.5, "price_output_per_m": 10.0, **endpoint_keys}
    return write_recipe(
        path, output_dir=out,
        sources=sources or [{"kind": "phantom_deeplesion", "n": 4, "seed": 0}, {"kind": "phantom_coco", "n": 2, "seed": 1}],
        generation={"backend": "openai", "trajectories_per_sample": 2, "endpoint": endpoint},
        verification={"judge": True, "endpoint": {**endpoint, "model": "stub-judge"}},
        exports={"rl_size": 100, "val_fraction": 0.2},
    )


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "work" / "trajectories.jsonl").read_text().splitlines()]


def test_faults_are_retried_and_no_sample_is_lost_or_duplicated(tmp_path):
    faulty = Faulty()
    with StubServer(faulty) as srv:
        config = load_config(llm_recipe(tmp_path / "r.yaml", srv.base_url, str(tmp_path / "out")))
        stats = build(config, progress=False)
    assert set(faulty.injected) == set(FAULTS)
    lines = _lines(tmp_path / "out")
    assert len({line["sample_id"] for line in lines}) == len(lines) == stats.samples > 0 and stats.failed_samples == 0
    trajectories = [t for line in lines for t in line["trajectories"]]
    assert all(len(line["trajectories"]) == 2 for line in lines)
    assert {t["generator"] for t in trajectories} == {"stub-gpt"}
    rejected = [t for t in trajectories if not t["accepted"]]
    assert rejected and all(t["reasons"] == ["judge:unsupported step"] for t in rejected)
    assert any('"box_2d"' in t["text"] for t in trajectories)
    assert stats.usage["stub-gpt"]["retries"] > 0 and stats.usage["stub-gpt"]["cost_usd"] > 0
    assert stats.usage["stub-judge"]["calls"] >= len(trajectories)
    pairs = (tmp_path / "out" / "scorer" / "pairs.jsonl").read_text().splitlines()
    assert pairs and all(json.loads(p)["negative_reason"] == "judge:unsupported step" for p in pairs)


def _cached_keys(out: Path) -> set[str]:
    keys = set()
    for name in ("generation_cache.sqlite", "judge_cache.sqlite"):
        path = out / "work" / name
        if path.is_file():
            with sqlite3.connect(path) as db:
                keys |= {row[0] for row in db.execute("SELECT key FROM replies")}
    return keys


def _key(request: dict) -> str:
    params = {"temperature": request["temperature"], "max_tokens": request["max_tokens"]}
    return request_key(request["model"], request["messages"], params)


def _outputs(out: Path) -> tuple:
    return ((out / "sft" / "sage_sft.json").read_text(), (out / "scorer" / "pairs.jsonl").read_text(),
            pd.read_parquet(out / "rl" / "train.parquet").drop(columns=["images"]).to_json())


def test_killed_run_resumes_to_identical_outputs_without_repeating_completed_calls(tmp_path):
    with StubServer(stage_reply) as srv:
        build(load_config(llm_recipe(tmp_path / "ref.yaml", srv.base_url, str(tmp_path / "ref"))), progress=False)
        reference_calls = len(srv.calls)

    state = {"served": 0, "proc": None}

    def killer(request):
        state["served"] += 1
        if state["served"] == 40:
            state["proc"].kill()  # SIGKILL mid-run: no cleanup, no flush beyond what was written
        return stage_reply(request)

    with StubServer(killer) as srv:
        recipe = llm_recipe(tmp_path / "b.yaml", srv.base_url, str(tmp_path / "b"))
        state["proc"] = subprocess.Popen([sys.executable, "-m", "medsage.data_gen.cli", "build", str(recipe), "--no-progress"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert state["proc"].wait(timeout=300) != 0
    completed = _cached_keys(tmp_path / "b")
    assert completed and not (tmp_path / "b" / "sft").joinpath("sage_sft.json").exists()

    with StubServer(stage_reply) as srv:
        build(load_config(llm_recipe(tmp_path / "b.yaml", srv.base_url, str(tmp_path / "b"))), progress=False)
        resumed = [_key(request) for request in srv.calls]
    assert not completed & set(resumed)
    assert len(resumed) + len(completed) == reference_calls
    assert _outputs(tmp_path / "b") == _outputs(tmp_path / "ref")


def test_a_slow_image_read_does_not_hold_back_other_samples_requests(tmp_path, monkeypatch):
    """Images on network storage take a while to read: the build reads them in threads, so the first image
    read under the build's own folder waits until the server has received a request (which can only go
    out while the event loop runs on; a read on the loop waits out its 10 s and the build fails)."""
    received = threading.Event()
    blocked = slow_first_read(monkeypatch, lambda path: "out/sft" in path.as_posix(), until=received)

    def responder(request: dict):
        received.set()
        return stage_reply(request)

    with StubServer(responder) as srv:
        config = load_config(llm_recipe(tmp_path / "r.yaml", srv.base_url, str(tmp_path / "out"), timeout_s=30))
        stats = build(config, progress=False)
    assert blocked and received.is_set()
    assert stats.failed_samples == 0 and stats.samples == len(_lines(tmp_path / "out")) > 0
