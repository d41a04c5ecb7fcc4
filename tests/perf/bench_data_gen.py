"""data_gen at scale: peak memory and time per sample of whole builds, and the LLM path against its concurrency bound.

Run: ``.venv/bin/python tests/perf/bench_data_gen.py [memory|llm|scale|all] [--records 300] [--samples 1000]``.

* ``memory``: an offline phantom build (DeepLesion, COCO and PubMedVision formats) at ``--records``
  and at 8x that, each in a fresh process; prints each one's peak RSS, the ratio (goal <= 1.3:
  memory does not grow with the input) and the wall time per sample at both sizes (goal: linear).
* ``llm``: the whole build (reading, images and exports included; the phantom DeepLesion files are
  written before the clock starts) through the tests' stub server in its own process with 100 ms
  per call, ``--samples`` samples; prints wall time over the concurrency bound (the busier model's
  calls x latency / concurrency: the generator and the judge have their own slots; goal <= 1.1 on
  a 2-core machine) and the CPU time per call of the client process and of the server, so a ratio
  above 1 can be attributed (on 2 cores they share).
* ``scale``: the paper's shape through the stub with no latency: ``--records`` phantom records at
  the paper's task mix (SFT recipe: 3 trajectories per sample, judge on); prints peak memory,
  calls, cache size and the time per 1,000 samples, from which a 60K-record run is extrapolated
  (``--records 60000`` runs it whole).

Measured on a 2-core machine shared with other jobs (times per sample vary with the load):
memory 300 -> 2,400 records (525 -> 4,200 samples): peak RSS 258 -> 261 MB, ratio 1.01 (100 -> 800:
1.09; 200 -> 1,600: 1.02 with the record log, 13.9 -> 13.0 ms per sample); llm 1,000 samples,
3,328 calls (2,328 generator, 1,000 judge): 17.4 s against the generator's 14.6 s bound, ratio 1.19
(0.82 against all calls / 16, the formula this benchmark used before): the client's event loop is
CPU-bound there, ~4-5 ms per call in the HTTP stack, on 2 cores shared with the stub and other jobs;
scale 2,000 records: 3,000 samples, 27,901 calls, peak RSS 288 MB, cache 6.9 MB, 76.5 s per 1,000
samples at zero latency; extrapolated to 60K records: ~840K calls (the stub's replies are short:
GPT-4o's run to a few hundred tokens, so a real cache is larger).

The server is the tests' stub (``tests/openai_stub.py``). It sets TCP_NODELAY like a production
server: Python's ``http.server`` sends a reply's headers and body in two writes; with Nagle's
algorithm on, the body waits for the client's delayed ACK (about 40 ms on Linux loopback).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_gen"))

from openai_stub import StubReply, StubServer  # noqa: E402
from test_pipeline_llm import stage_reply  # noqa: E402

from medsage.data_gen import phantom  # noqa: E402
from medsage.data_gen.config import BuildConfig, ExportConfig, GenerationConfig, SourceConfig, VerificationConfig  # noqa: E402
from medsage.data_gen.instructions import InstructionConfig  # noqa: E402
from medsage.data_gen.llm_client import LLMConfig  # noqa: E402
from medsage.data_gen.pipeline import build  # noqa: E402

LATENCY_S = 0.1


def phantom_sources(n: int) -> tuple[SourceConfig, ...]:
    """``n`` records: half DeepLesion, a quarter each COCO and PubMedVision."""
    return (SourceConfig(kind="phantom_deeplesion", n=n // 2), SourceConfig(kind="phantom_coco", n=n // 4, seed=1),
            SourceConfig(kind="phantom_pubmedvision", n=n - n // 2 - n // 4, seed=2))


def offline_config(out: Path, n: int) -> BuildConfig:
    return BuildConfig(output_dir=str(out), sources=phantom_sources(n), exports=ExportConfig(rl_size=200))


def llm_config(out: Path, base_url: str, sources, concurrency: int, trajectories: int) -> BuildConfig:
    endpoint = LLMConfig(base_url=base_url, model="bench-gpt", concurrency=concurrency, timeout_s=60)
    return BuildConfig(
        output_dir=str(out), sources=sources, exports=ExportConfig(rl_size=200),
        instructions=InstructionConfig(per_record=2, keep_source_qa=False),
        generation=GenerationConfig(backend="openai", trajectories_per_sample=trajectories, endpoint=endpoint,
                                    records_in_flight=max(32, concurrency * 2)),
        verification=VerificationConfig(judge=True, endpoint=replace(endpoint, model="bench-judge")),
    )


def measured_build(config: BuildConfig) -> dict:
    """Build in this process; wall time, samples, calls and peak RSS (this process is fresh)."""
    wall = time.perf_counter()
    stats = build(config, progress=False)
    return {"wall_s": time.perf_counter() - wall, "samples": stats.samples, "accepted": stats.accepted,
            "calls": sum(u["calls"] for u in stats.usage.values()), "cpu_s": time.process_time(),
            "calls_by_model": {m: u["calls"] for m, u in stats.usage.items()},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_fresh_process(mode: str, *args: str) -> dict:
    """Run ``child`` in a new interpreter, so each peak RSS is one build's own."""
    out = subprocess.run([sys.executable, __file__, "child", mode, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(records: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        small = in_fresh_process("offline", str(Path(tmp) / "a"), str(records))
        large = in_fresh_process("offline", str(Path(tmp) / "b"), str(8 * records))
    for name, r in (("1x", small), ("8x", large)):
        print(f"{name}: {r['samples']} samples, peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"{r['wall_s'] / r['samples'] * 1000:.1f} ms per sample (wall {r['wall_s']:.1f} s)")
    print(f"peak RSS ratio 8x/1x: {large['peak_rss_mb'] / small['peak_rss_mb']:.3f} (goal <= 1.3); "
          f"time per sample ratio {large['wall_s'] / large['samples'] / (small['wall_s'] / small['samples']):.2f} (linear: ~1)")


def reply(request: dict) -> StubReply:
    return StubReply(text=stage_reply(request), delay_s=LATENCY_S)


def serve(latency: bool, urls: mp.Queue, cpu: mp.Queue, stop: mp.Event) -> None:
    with StubServer(reply if latency else stage_reply) as srv:
        urls.put(srv.base_url)
        stop.wait()
        cpu.put(sum(os.times()[:2]))


def with_server(latency: bool, run):
    urls, cpu, stop = mp.Queue(), mp.Queue(), mp.Event()
    server = mp.Process(target=serve, args=(latency, urls, cpu, stop), daemon=True)
    server.start()
    try:
        result = run(urls.get(timeout=60))
    finally:
        stop.set()
    server_cpu = cpu.get(timeout=60)
    server.join(timeout=10)
    return result, server_cpu


def llm(samples: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        r, serve_cpu = with_server(True, lambda url: in_fresh_process(
            "llm", str(Path(tmp) / "c"), url, str((samples + 1) // 2), str(concurrency)))
    # The generator and the judge each have their own ``concurrency`` slots: the busier one bounds the wall time.
    bound = max(r["calls_by_model"].values()) * LATENCY_S / concurrency
    print(f"{r['samples']} samples, {r['calls']} calls {r['calls_by_model']}, {LATENCY_S * 1000:.0f} ms latency, "
          f"concurrency {concurrency} per model")
    print(f"wall {r['wall_s']:.1f} s (reading, images and exports included); concurrency bound {bound:.1f} s; "
          f"ratio {r['wall_s'] / bound:.3f} (goal <= 1.1)")
    print(f"CPU per call: client {r['cpu_s'] / r['calls'] * 1000:.2f} ms (whole process), "
          f"stub server {serve_cpu / r['calls'] * 1000:.2f} ms")


def scale(records: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        r, _ = with_server(False, lambda url: in_fresh_process("scale", str(Path(tmp) / "p"), url, str(records)))
        cache_mb = sum(p.stat().st_size for p in (Path(tmp) / "p" / "work").glob("*.sqlite*")) / 2**20
    per_k = r["wall_s"] / r["samples"] * 1000
    print(f"{records} records -> {r['samples']} samples, {r['accepted']} accepted trajectories, {r['calls']} calls; "
          f"peak RSS {r['peak_rss_mb']:.0f} MB; cache {cache_mb:.1f} MB; {per_k:.1f} s per 1,000 samples")
    print(f"extrapolated to 60,000 records: {r['calls'] / records * 60000:,.0f} calls, "
          f"{cache_mb / records * 60000 / 1024:.1f} GB of cache, {per_k * r['samples'] / records * 60:.0f} s of client time "
          "at zero latency (a real endpoint adds latency / concurrency per call)")


def child(mode: str, out: str, *args: str) -> None:
    if mode == "offline":
        config = offline_config(Path(out), int(args[0]))
    elif mode == "llm":  # the phantom files are written before the clock starts: they stand in for a dataset on disk
        root = phantom.write_deeplesion(Path(out) / "dataset", int(args[1]), seed=0)
        config = llm_config(Path(out) / "build", args[0], (SourceConfig(kind="deeplesion", root=str(root)),), int(args[2]), 1)
    else:
        config = llm_config(Path(out), args[0], phantom_sources(int(args[1])), 64, 3)
    print(json.dumps(measured_build(config)))


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        return child(*sys.argv[2:])
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="?", default="all", choices=("memory", "llm", "scale", "all"))
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.what in ("memory", "all"):
        memory(args.records)
    if args.what in ("llm", "all"):
        llm(args.samples, args.concurrency)
    if args.what in ("scale", "all"):
        scale(args.records)


if __name__ == "__main__":
    main()
