"""data_gen at scale: peak memory and time per sample of whole builds, and the LLM path against its concurrency bound.

Run: ``.venv/bin/python tests/perf/bench_data_gen.py [memory|llm|scale|paper|all] [--records 300] [--samples 1000]``.

* ``memory``: an offline phantom build (DeepLesion, COCO and PubMedVision formats) at ``--records``
  and at 8x that, each in a fresh process; prints each one's peak RSS, the ratio (goal <= 1.3:
  memory does not grow with the input) and the wall time per sample at both sizes (goal: linear).
* ``llm``: the whole build (reading, images and exports included; the phantom DeepLesion files are
  written before the clock starts) through the tests' stub server in its own process with 100 ms
  per call, ``--samples`` samples, ``--repeat`` times (the median ratio is the figure: a shared
  machine's load moves single runs); prints wall time over the concurrency bound (the busier model's
  calls x latency / concurrency: the generator and the judge have their own slots; goal <= 1.1 on
  a 2-core machine) and the build's CPU time per call, and the server's, so a ratio above 1 can be
  attributed (on 2 cores they share).
* ``scale``: the paper's shape through the stub with no latency: ``--records`` phantom records at
  the paper's task mix (SFT recipe: 3 trajectories per sample, judge on); prints peak memory,
  calls, cache size and the time per 1,000 samples, from which a 60K-record run is extrapolated
  (``--records 60000`` runs it whole).
* ``paper``: a PubMedVision VQA json of ``--json-records`` records (647,031 by default, ~600 MB, the
  real format, written record by record) of which the build takes ``--records`` (``max_records``,
  seeded by id; each taken record has an image of its own), and ``--small`` as well, through the
  stub with no latency, 3 trajectories per sample and the judge; prints each build's peak RSS (the
  json is read twice, annotations only, record by record), calls, cache and time, and the ratio.

Measured on a 2-core machine shared with other jobs (times per sample vary with the load):
memory 300 -> 2,400 records (525 -> 4,200 samples): peak RSS 258 -> 261 MB, ratio 1.01 (100 -> 800:
1.09; 200 -> 1,600: 1.02 with the record log, 13.9 -> 13.0 ms per sample).

llm 1,000 samples, 3,328 calls (2,328 generator, 1,000 judge; bound 14.6 s), run at fair CPU (the bench
in a session of its own, its autogroup at nice -5; load 1-2 from other jobs), the code before 1ab7e19
(base) and after (new) alternating, ``--repeat 3`` each, twice: median ratio 1.154 and 1.186 (base)
-> 1.090 and 1.100 (new); build CPU per call 2.4-2.9 -> 1.9-2.4 ms; stub CPU 0.44-0.49 ms per call.
Per-call traces (slot taken, request written, server received, server replied, reply read, slot
released; one monotonic clock for both processes) said where a call's extra time went. Base: a
generator call held its slot 110.6 ms mean for the stub's 100; 7.8 ms of it before the request was
written, because aiohttp's ``trust_env`` looked up ``~/.netrc`` and the proxy in the default executor
on every request (two thread trips, queued behind image decoding; 0.6 s median for the first 16
calls); 1.9 ms from the stub's reply to its read (a busy loop); the rest the stub. The stub's listen
backlog of 5 also dropped SYNs of a pool opening 16 connections at once (1 s each). New: 102.1 ms
mean, of which the stub's own 100.4 (its service time besides the 100 ms sleep ~0.5 ms, 0.1 ms to
parse a request), the client's turnaround ~1.3 ms; the generator's slots are busy 97.9% from its
first call to its last. The rest of the wall is fixed per build: 0.08 s to the first call, ~0.3 s
of ramp and drain (a sample's four generator calls and its judge call are sequential), 0.1 s for
the last judge calls, 0.56 s of exports (card plots 0.32 s, RL parquet 0.17 s). Tested and not
kept: encoding the body before taking a slot (0.07 ms; a waiting call would hold a copy of its
images). Rechecked after 5d9fda3 (the stub keeps no requests), fair CPU, ``--repeat 3``: 1.087,
1.088, 1.089, median 1.088; build CPU 1.97-2.17 ms per call, stub 0.38 ms.

scale 2,000 records: 3,000 samples, 27,901 calls, peak RSS 288 MB, cache 6.9 MB, 76.5 s per 1,000
samples at zero latency (before 8494cfd). paper, a 647,031-record 599 MB PubMedVision json:
2,500 -> 20,000 records built (14,231 -> 101,764 calls, 45,794 accepted trajectories at 20,000):
peak RSS 258 -> 280 MB, ratio 1.087; 161 s and 477 s (23.8 s per 1,000 samples at 20,000, both
reads of the json included); cache 24.6 MB at 20,000 (the stub's replies are short: GPT-4o's
run to a few hundred tokens, so a real cache is larger). 60,000 records built whole (after 5d9fda3,
under nice 19 beside other jobs): 60,000 samples, 301,764 calls, 137,142 accepted trajectories; peak
RSS 279 MB (the stub server's process: 142 MB at 2.5 min; before 5d9fda3 it kept every request with
its image and held 7.3 GB after six minutes, on course to exhaust the machine's 23 GB); cache
73.1 MB; 506 s, 8.4 s per 1,000 samples (both reads of the json included; writing the json took
365 s). At 5,000 of 20,000 records, fair CPU, one build each: 9.6 s per 1,000 samples with the code
and stub before 1ab7e19, 7.4 s after 5d9fda3.

The server is the tests' stub (``tests/openai_stub.py``). It sets TCP_NODELAY like a production
server: Python's ``http.server`` sends a reply's headers and body in two writes; with Nagle's
algorithm on, the body waits for the client's delayed ACK (about 40 ms on Linux loopback).
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing as mp
import os
import resource
import statistics
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
from medsage.data_gen.pipeline import _rank, build  # noqa: E402

LATENCY_S = 0.1
PUBMEDVISION_RECORDS = 647_031  # each of the two PubMedVision VQA files


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
    wall, cpu = time.perf_counter(), time.process_time()
    stats = build(config, progress=False)
    return {"wall_s": time.perf_counter() - wall, "samples": stats.samples, "accepted": stats.accepted,
            "calls": sum(u["calls"] for u in stats.usage.values()), "cpu_s": time.process_time() - cpu,
            "read": {k: {"seen": v["seen"], "kept": v["kept"], "reasons": dict(v["reasons"])} for k, v in stats.read.items()},
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
    with StubServer(reply if latency else stage_reply, record=False) as srv:
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


def llm(samples: int, concurrency: int, repeat: int = 1) -> None:
    """``repeat`` builds (each in a fresh process, the phantom files written once), one stub server; the median ratio."""
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        root = phantom.write_deeplesion(Path(tmp) / "dataset", (samples + 1) // 2, seed=0)

        def runs(url):
            return [in_fresh_process("llm", str(Path(tmp) / f"c{i}"), url, str(root), str(concurrency)) for i in range(repeat)]

        results, serve_cpu = with_server(True, runs)
    for r in results:
        # The generator and the judge each have their own ``concurrency`` slots: the busier one bounds the wall time.
        bound = max(r["calls_by_model"].values()) * LATENCY_S / concurrency
        ratios.append(r["wall_s"] / bound)
        print(f"{r['samples']} samples, {r['calls']} calls {r['calls_by_model']}, {LATENCY_S * 1000:.0f} ms latency, "
              f"concurrency {concurrency} per model; wall {r['wall_s']:.1f} s (reading, images and exports included), "
              f"bound {bound:.1f} s, ratio {ratios[-1]:.3f}; build CPU {r['cpu_s'] / r['calls'] * 1000:.2f} ms per call")
    print(f"median ratio over {repeat} builds: {statistics.median(ratios):.3f} (goal <= 1.1); "
          f"stub server CPU {serve_cpu / sum(r['calls'] for r in results) * 1000:.2f} ms per call")


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


_FINDINGS = ("The image demonstrates a well-circumscribed lesion with heterogeneous enhancement, and the surrounding "
             "parenchyma appears otherwise unremarkable. There is no evidence of adjacent structural invasion, the "
             "margins are smooth, and the density pattern is consistent with the described modality. Clinical "
             "correlation is advised, together with comparison to prior imaging where available, to establish the "
             "chronicity of the finding and to guide further management. ")


def write_paper_json(root: Path, total: int, built: int, seed: int = 0, pool: int = 300) -> tuple[Path, Path]:
    """A PubMedVision VQA json of ``total`` records in the real format (~1.1 KB each, like the 722 MB file of
    647,031), written record by record; returns (json, image root).

    The build takes ``built`` of them (``max_records``, seeded by id): those get an image of their own (a
    phantom image from a pool of ``pool``, a few pixels stamped with the record's number, so no two requests
    repeat); the others' image paths are symlinks into the pool (read as annotations only, never decoded).
    """
    import numpy as np
    from PIL import Image

    pool_json = phantom.write_pubmedvision(root / "pool", pool, seed)
    base = json.loads(pool_json.read_text(encoding="utf-8"))
    ids = [f"PMC{7000000 + i}_fig{i % 5 + 1}" for i in range(total)]
    chosen = set(heapq.nsmallest(built, ids, key=lambda i: _rank(0, f"pubmedvision/{i}")))
    path = root / "PubMedVision_InstructionTuning_VQA.json"
    with path.open("w", encoding="utf-8") as f:
        f.write("[\n")
        for i, record_id in enumerate(ids):
            src = base[i % pool]
            image = f"images/{i // 1000:04d}/{record_id}.png"
            target = root / image
            target.parent.mkdir(parents=True, exist_ok=True)
            if record_id in chosen:
                with Image.open(root / "pool" / src["image"][0]) as im:
                    pixels = np.array(im)
                pixels.reshape(-1)[:8] = np.frombuffer(i.to_bytes(8, "little"), np.uint8)
                Image.fromarray(pixels).save(target)
            else:
                os.symlink(root / "pool" / src["image"][0], target)
            question, answer = (turn["value"] for turn in src["conversations"])
            record = {"id": record_id, "image": [image],
                      "conversations": [{"from": "human", "value": question},
                                        {"from": "gpt", "value": f"{answer} {_FINDINGS}{_FINDINGS[: 80 + i % 200]}"}],
                      "modality": src["modality"], "body_part": src["body_part"]}
            f.write(json.dumps(record, ensure_ascii=False) + (",\n" if i + 1 < total else "\n"))
        f.write("]\n")
    return path, root


def paper(records: int, small: int, json_records: int) -> None:
    """``records`` (and ``small``) records of a paper-sized PubMedVision json through the stub, no latency."""
    sizes = [n for n in (small, records) if n]
    with tempfile.TemporaryDirectory() as tmp:
        wall = time.perf_counter()
        path, image_root = write_paper_json(Path(tmp) / "pmv", max(json_records, records), records)
        print(f"wrote {path.name}: {json_records:,} records, {path.stat().st_size / 2**20:,.0f} MB "
              f"({time.perf_counter() - wall:.0f} s)", flush=True)
        results = {}
        for n in sizes:
            (results[n], _) = with_server(False, lambda url, n=n: in_fresh_process(
                "paper", str(Path(tmp) / f"out{n}"), url, str(path), str(image_root), str(n)))
            r = results[n]
            cache_mb = sum(p.stat().st_size for p in (Path(tmp) / f"out{n}" / "work").glob("*.sqlite*")) / 2**20
            print(f"{n:,} records built of {json_records:,}: {r['samples']:,} samples, {r['accepted']:,} accepted "
                  f"trajectories, {r['calls']:,} calls; peak RSS {r['peak_rss_mb']:.0f} MB; cache {cache_mb:.1f} MB; "
                  f"wall {r['wall_s']:.0f} s, {r['wall_s'] / max(r['samples'], 1) * 1000:.1f} s per 1,000 samples; "
                  f"read {r['read']}", flush=True)
    if len(sizes) == 2:
        a, b = (results[n] for n in sizes)
        print(f"peak RSS {sizes[0]:,} -> {sizes[1]:,} records: {a['peak_rss_mb']:.0f} -> {b['peak_rss_mb']:.0f} MB, "
              f"ratio {b['peak_rss_mb'] / a['peak_rss_mb']:.3f}")


def child(mode: str, out: str, *args: str) -> None:
    if mode == "offline":
        config = offline_config(Path(out), int(args[0]))
    elif mode == "llm":  # the phantom files were written by the parent: they stand in for a dataset on disk
        config = llm_config(Path(out), args[0], (SourceConfig(kind="deeplesion", root=args[1]),), int(args[2]), 1)
    elif mode == "paper":  # json, image root, records to build
        config = replace(llm_config(Path(out), args[0], (SourceConfig(kind="pubmedvision", json=args[1], image_root=args[2]),),
                                    64, 3), max_records=int(args[3]))
        config = replace(config, instructions=replace(config.instructions, keep_source_qa=True))
    else:
        config = llm_config(Path(out), args[0], phantom_sources(int(args[1])), 64, 3)
    print(json.dumps(measured_build(config)))


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        return child(*sys.argv[2:])
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="?", default="all", choices=("memory", "llm", "scale", "paper", "all"))
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1, help="llm: builds to take the median ratio of")
    parser.add_argument("--json-records", type=int, default=PUBMEDVISION_RECORDS,
                        help="paper: records in the PubMedVision json (the build takes --records of them)")
    parser.add_argument("--small", type=int, default=0, help="paper: also build this many, for the memory ratio")
    args = parser.parse_args()
    if args.what in ("memory", "all"):
        memory(args.records)
    if args.what in ("llm", "all"):
        llm(args.samples, args.concurrency, args.repeat)
    if args.what in ("scale", "all"):
        scale(args.records)
    if args.what == "paper":
        paper(args.records, args.small, args.json_records)


if __name__ == "__main__":
    main()
