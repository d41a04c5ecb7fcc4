"""Stage generation + judge for 1,000 samples against a local OpenAI-compatible server with 100 ms per call.

Run: ``.venv/bin/python tests/perf/bench_data_gen.py [--samples 1000] [--concurrency 16]``. Prints
the wall time over the concurrency bound (calls x latency / concurrency; goal <= 1.15) and the
speed-up over a sequential loop (concurrency 1, measured in the same run on a slice of the
samples and scaled per call). Only the LLM phase is timed; reading and materialising the
phantom images is done before the clock starts. The server runs in its own process, as a real
endpoint would, so it does not compete with the client for the interpreter lock.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
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


def serve(urls: mp.Queue, stop: mp.Event) -> None:
    with StubServer(reply) as srv:
        urls.put(srv.base_url)
        stop.wait()


def timed(builder: Builder, samples) -> tuple[float, int]:
    start = time.perf_counter()
    asyncio.run(builder.generate(samples))
    return time.perf_counter() - start, sum(u["calls"] for u in builder.stats.usage.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sequential-samples", type=int, default=20)
    args = parser.parse_args()
    urls, stop = mp.Queue(), mp.Event()
    server = mp.Process(target=serve, args=(urls, stop), daemon=True)
    server.start()
    base_url = urls.get(timeout=60)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            concurrent = Builder(config(Path(tmp) / "c", base_url, (args.samples + 1) // 2, args.concurrency), progress=False)
            samples = concurrent.samples(concurrent.records())[: args.samples]
            wall, calls = timed(concurrent, samples)
            sequential = Builder(config(Path(tmp) / "s", base_url, (args.samples + 1) // 2, 1), progress=False)
            seq_samples = sequential.samples(sequential.records())[: args.sequential_samples]
            seq_wall, seq_calls = timed(sequential, seq_samples)
    finally:
        stop.set()
        server.join(timeout=10)
    bound = calls * LATENCY_S / args.concurrency
    sequential_estimate = seq_wall / seq_calls * calls
    print(f"{len(samples)} samples, {calls} calls, {LATENCY_S * 1000:.0f} ms latency, concurrency {args.concurrency}")
    print(f"wall {wall:.1f} s; concurrency bound {bound:.1f} s; ratio {wall / bound:.3f} (goal <= 1.15)")
    print(f"sequential loop: {seq_wall / seq_calls * 1000:.0f} ms per call over {seq_calls} calls -> "
          f"{sequential_estimate:.0f} s for {calls} calls; speed-up {sequential_estimate / wall:.1f}x")


if __name__ == "__main__":
    main()
