"""Stage generation + judge for 1,000 samples against a local OpenAI-compatible server with 100 ms per call.

Run: ``.venv/bin/python tests/perf/bench_data_gen.py [--samples 1000] [--concurrency 16]``. Prints
the wall time over the concurrency bound (calls x latency / concurrency; goal <= 1.15) and the
speed-up over a sequential loop (concurrency 1, measured in the same run on a slice of the samples
and scaled per call; the generator and the judge each have their one slot, so up to two calls
overlap and the speed-up is a lower bound). Only the LLM phase is timed; reading and
materialising the phantom images is done before the clock starts. It also prints the CPU time per
call of the client process (the product) and of the server process, so a ratio above 1 can be
attributed: on a 2-core machine the two share the cores.

The server is the tests' stub (``tests/openai_stub.py``) in its own process, as a real endpoint
would be. It sets TCP_NODELAY like a production server: Python's ``http.server``
sends a reply's headers and body in two writes; with Nagle's algorithm on, the body waits for the
client's delayed ACK (about 40 ms on Linux loopback), which added ~40 ms to every 100 ms call and
measured the stub rather than the client. Servers in front of real models (uvicorn under
``vllm serve``) set TCP_NODELAY.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai_stub import StubReply, StubServer  # noqa: E402

from medsage.data_gen.config import BuildConfig, GenerationConfig, SourceConfig, VerificationConfig  # noqa: E402
from medsage.data_gen.llm_client import LLMConfig  # noqa: E402
from medsage.data_gen.instructions import InstructionConfig  # noqa: E402
from medsage.data_gen.pipeline import Builder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_gen"))
from test_pipeline_llm import stage_reply  # noqa: E402

LATENCY_S = 0.1


def config(out: Path, base_url: str, n_records: int, concurrency: int) -> BuildConfig:
    endpoint = LLMConfig(base_url=base_url, model="bench-gpt", concurrency=concurrency, timeout_s=30)
    return BuildConfig(
        output_dir=str(out), sources=(SourceConfig(kind="phantom_deeplesion", n=n_records),),
        instructions=InstructionConfig(per_record=2, keep_source_qa=False),
        generation=GenerationConfig(backend="openai", trajectories_per_sample=1, endpoint=endpoint),
        verification=VerificationConfig(judge=True, endpoint=replace(endpoint, model="bench-judge")),
    )


def reply(request: dict) -> StubReply:
    return StubReply(text=stage_reply(request), delay_s=LATENCY_S)


def serve(urls: mp.Queue, cpu: mp.Queue, window: tuple[mp.Event, mp.Event], stop: mp.Event) -> None:
    """Serve until ``stop``; report the CPU seconds spent between the two events of ``window``."""
    with StubServer(reply) as srv:
        urls.put(srv.base_url)
        window[0].wait()
        start = sum(os.times()[:2])
        window[1].wait()
        cpu.put(sum(os.times()[:2]) - start)
        stop.wait()


def calls_of(builder: Builder) -> int:
    return sum(u["calls"] for u in builder.stats.usage.values())


def timed(builder: Builder, samples) -> tuple[float, float, int]:
    """Wall seconds, client CPU seconds and HTTP calls of the LLM phase."""
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(builder.generate(samples))
    return time.perf_counter() - wall, time.process_time() - cpu, calls_of(builder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sequential-samples", type=int, default=20)
    args = parser.parse_args()
    urls, server_cpu, window, stop = mp.Queue(), mp.Queue(), (mp.Event(), mp.Event()), mp.Event()
    server = mp.Process(target=serve, args=(urls, server_cpu, window, stop), daemon=True)
    server.start()
    base_url = urls.get(timeout=60)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            concurrent = Builder(config(Path(tmp) / "c", base_url, (args.samples + 1) // 2, args.concurrency), progress=False)
            samples = concurrent.samples(concurrent.records())[: args.samples]
            window[0].set()
            wall, client_cpu, calls = timed(concurrent, samples)
            window[1].set()
            serve_cpu = server_cpu.get(timeout=60)
            sequential = Builder(config(Path(tmp) / "s", base_url, (args.samples + 1) // 2, 1), progress=False)
            seq_samples = sequential.samples(sequential.records())[: args.sequential_samples]
            seq_wall, _, seq_calls = timed(sequential, seq_samples)
    finally:
        stop.set()
        server.join(timeout=10)
    bound = calls * LATENCY_S / args.concurrency
    sequential_estimate = seq_wall / seq_calls * calls
    print(f"{len(samples)} samples, {calls} calls, {LATENCY_S * 1000:.0f} ms latency, concurrency {args.concurrency}")
    print(f"wall {wall:.1f} s; concurrency bound {bound:.1f} s; ratio {wall / bound:.3f} (goal <= 1.15)")
    print(f"CPU per call: client {client_cpu / calls * 1000:.2f} ms, stub server {serve_cpu / calls * 1000:.2f} ms")
    print(f"sequential loop: {seq_wall / seq_calls * 1000:.0f} ms per call over {seq_calls} calls -> "
          f"{sequential_estimate:.0f} s for {calls} calls; speed-up {sequential_estimate / wall:.1f}x")


if __name__ == "__main__":
    main()
