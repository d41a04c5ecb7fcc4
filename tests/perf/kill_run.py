"""Fault and kill run: a build through the stub with a quarter of first attempts faulty and repeated kill -9s.

Run: ``.venv/bin/python tests/perf/kill_run.py [--kills 7] [--records 12]``. Faults: 429, 500, a
timeout, malformed JSON, a reply without its stage tag, a reply cut by the token limit and a
reply whose stage never closes. The build runs in a subprocess that is killed with SIGKILL after
every ``--every`` billed replies (replies are served one at a time, and the kill waits a second,
so every billed reply has reached the client), then runs to completion. It prints samples lost
and duplicated (against a clean reference build), the card's cost against what the server billed,
and whether any cut text reached an export. A timed-out request (5.5 s against the client's 5 s)
is answered with 504 and not billed: a real endpoint may bill a reply the client gave up on, which
no client can count (with a short client timeout and a busy machine, replies queued behind the
serialised stub show up that way).

Measured (2 shared cores): 24 samples, 43 faults of all seven kinds, 7 kills: lost 0, duplicated 0,
failed 0; 231 billed calls, $0.114450 billed and on the card; 8 cut replies counted, none exported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_gen"))

from openai_stub import StubReply, StubServer, completion_body  # noqa: E402
from test_pipeline_llm import llm_recipe, stage_reply  # noqa: E402

from medsage.data_gen.config import load_config  # noqa: E402
from medsage.data_gen.pipeline import build  # noqa: E402

FAULTS = ("429", "500", "timeout", "malformed", "missing_tag", "length", "unclosed")
PRICES = (2.5, 10.0)
CUT = "CUT-OFF-HERE"


class Server:
    """Stage replies with faults on a quarter of first attempts; bills every reply that carries usage."""

    def __init__(self, every: int, kills: int):
        self.lock = threading.Lock()
        self.attempts: Counter = Counter()
        self.injected: Counter = Counter()
        self.billed_calls, self.billed_cost = 0, 0.0
        self.every, self.kills_left, self.since_kill = every, kills, 0
        self.proc: subprocess.Popen | None = None

    def __call__(self, request: dict):
        with self.lock:
            if self.proc is not None and self.proc.poll() is not None:
                return StubReply(status=503, raw="{}")
            key = hashlib.sha1(json.dumps(request["messages"], sort_keys=True).encode()).hexdigest()
            self.attempts[key] += 1
            fault = FAULTS[int(key[:8], 16) % len(FAULTS)] if self.attempts[key] == 1 and int(key[8:10], 16) < 64 else None
            if self.proc is not None and self.kills_left and self.since_kill >= self.every:
                time.sleep(1.0)  # replies already billed reach the client and its ledger
                self.proc.kill()
                self.proc.wait()
                self.kills_left -= 1
                self.since_kill = 0
                return StubReply(status=503, raw="{}")
            if fault:
                self.injected[fault] += 1
            return self._reply(request, fault)

    def _reply(self, request: dict, fault: str | None):
        if fault in ("429", "500"):
            return StubReply(status=int(fault), raw='{"error": {"message": "injected"}}', headers={"Retry-After": "0.01"})
        if fault == "timeout":
            return StubReply(status=504, raw="{}", delay_s=5.5)
        if fault == "malformed":
            return StubReply(raw='{"choices": [')
        text = stage_reply(request)
        if not isinstance(text, str):
            return text
        finish = "stop"
        if fault == "missing_tag":
            text = "Here is what you asked for, without tags."
        elif fault == "length":
            text, finish = text[: len(text) // 2] + CUT, "length"
        elif fault == "unclosed" and text.startswith("<") and "</" in text:
            text = text[: text.rindex("</")] + CUT
        body = completion_body(text, request)
        body["choices"][0]["finish_reason"] = finish
        usage = body["usage"]
        self.billed_calls += 1
        self.billed_cost += (usage["prompt_tokens"] * PRICES[0] + usage["completion_tokens"] * PRICES[1]) / 1e6
        self.since_kill += 1
        return StubReply(raw=json.dumps(body))


def sources(records: int) -> list[dict]:
    return [{"kind": "phantom_deeplesion", "n": records - records // 3, "seed": 0},
            {"kind": "phantom_coco", "n": records // 3, "seed": 1}]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=7)
    parser.add_argument("--records", type=int, default=12)
    parser.add_argument("--every", type=int, default=25, help="billed replies between kills")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with StubServer(stage_reply) as srv:
            reference = build(load_config(llm_recipe(tmp / "ref.yaml", srv.base_url, str(tmp / "ref"),
                                                     sources(args.records), timeout_s=30)), progress=False)
        server = Server(args.every, args.kills)
        runs = 0
        with StubServer(server) as srv:
            recipe = llm_recipe(tmp / "r.yaml", srv.base_url, str(tmp / "out"), sources(args.records), timeout_s=5)
            while server.kills_left:
                runs += 1
                server.proc = subprocess.Popen([sys.executable, "-m", "medsage.data_gen.cli", "build", str(recipe),
                                                "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if server.proc.wait(timeout=600) == 0:
                    break
            server.proc = None
            stats = build(load_config(recipe), progress=False)
        ids = [json.loads(line)["sample_id"] for line in (tmp / "out" / "work" / "trajectories.jsonl").read_text().splitlines()]
        expected = {json.loads(line)["sample_id"] for line in (tmp / "ref" / "samples.jsonl").read_text().splitlines()}
        exported = "".join((tmp / "out" / p).read_text() for p in ("sft/sage_sft.json", "scorer/pairs.jsonl", "samples.jsonl"))
        cost = sum(u["cost_usd"] for u in stats.usage.values())
        calls = sum(u["calls"] for u in stats.usage.values())
    print(f"{reference.samples} samples; faults injected {dict(server.injected)}; {args.kills - server.kills_left} kills "
          f"over {runs} killed runs, then a final run")
    print(f"lost {len(expected - set(ids))}, duplicated {len(ids) - len(set(ids))}, failed {stats.failed_samples}")
    print(f"billed by the server: {server.billed_calls} calls, ${server.billed_cost:.6f}; card: {calls} calls, ${cost:.6f}")
    print(f"truncated replies counted: {sum(u.get('truncated', 0) for u in stats.usage.values())}; "
          f"cut text in the exports: {CUT in exported}")


if __name__ == "__main__":
    main()
