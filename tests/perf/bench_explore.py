"""The explorer at scale: site build time and page-load time in headless chromium, 100K entries per page.

Run: ``python tests/perf/bench_explore.py [--n 100000]``. Writes, in the toolkit's own formats, a
data build of N samples (4 trajectories each, one rejected, over 200 shared 256 px images), N R-GRPO
session records (groups of 6, a quarter retried) and two evaluation runs of an N-item SLAKE-format
benchmark; then times ``medsage-explore`` over them and opens each page in Debian's chromium:

* build: wall time of the whole site (every page, chunks, images), and its size on disk;
* load: from navigation start to the first page of entries rendered (``MEDSAGE.last.at``), median
  of 3 fresh loads: meta file parsed, counts and controls built, the page's chunks loaded;
* filter: one facet change over all N entries (``MEDSAGE.last.ms``) and a sparse filter whose 20
  matches sit in 20 different chunks (the most chunks one page can need).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "explore"))

from chromium import Chromium  # noqa: E402

from medsage.data_gen.exports import SamplesWriter, Verified  # noqa: E402
from medsage.data_gen.instructions import Sample  # noqa: E402
from medsage.data_gen.records import ROI, Record  # noqa: E402
from medsage.data_gen.trajectories import Trajectory  # noqa: E402
from medsage.explore.cli import build_site  # noqa: E402
from medsage.plugins.verl.sessions import FIRST_ATTEMPT, INJECTED, RETRY, SELF_CHECK, SessionRecord, Span, write_step  # noqa: E402
from medsage.reward_fns.scaffold import Grounding, Scaffold  # noqa: E402

SOURCES = [("deeplesion", "CT"), ("roboflow", "X-ray"), ("pubmedvision", "MRI"), ("llava", "Pathology")]
TASKS = ("multiple_choice", "yes_no", "open", "localization")
WORDS = ("lesion focus rounded margin hypodense parenchyma adjacent cortex enhancing homogeneous lobe renal hepatic "
         "pulmonary cyst mass nodule region border contrast density criteria differential supports conclusion").split()
IMAGES = 200


def prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def lvkc(rng: random.Random, answer: str) -> str:
    y, x = rng.randrange(0, 700), rng.randrange(0, 700)
    box = Grounding("region of interest", box_2d=(y, x, y + rng.randrange(50, 300), x + rng.randrange(50, 300)))
    return Scaffold(prose(rng, 20), prose(rng, 60), prose(rng, 40), prose(rng, 25), answer,
                    preamble=prose(rng, 20), groundings=(box,)).render()


def write_build(out: Path, n: int, rng: random.Random) -> None:
    for k in range(IMAGES):
        path = out / "sft" / "images" / "bench" / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.effect_noise((256, 256), 40 + k % 50).save(path)
    (out / "work").mkdir(parents=True)
    listing = SamplesWriter(out / "samples.jsonl")
    # the line TrajectoryStore.add writes, without its fsync per sample
    with (out / "work" / "trajectories.jsonl").open("w", encoding="utf-8") as f:
        for i in range(n):
            source, modality = SOURCES[i % len(SOURCES)]
            record = Record(f"{source}/{i}", source, Path(f"/raw/{i}.png"), modality,
                            rois=(ROI("lesion", (40.0, 60.0, 120.0, 150.0)),))
            sample = Sample(f"{source}/{i}::{TASKS[i % 4]}:0", record, f"images/bench/{i % IMAGES}.png", 256, 256,
                            TASKS[i % 4], prose(rng, 12), "Yes", "Yes", "lesion")
            found = [Trajectory(sample.sample_id, kind, "anatomic", lvkc(rng, "Yes"), "offline-rule-based", k < 3,
                                () if k < 3 else ("wrong_answer",))
                     for k, kind in enumerate(("annotated", "perturbed", "expanded", "global"))]
            f.write(json.dumps({"sample_id": sample.sample_id, "sample": sample.to_json(),
                                "trajectories": [t.to_json() for t in found]}) + "\n")
            listing.add(Verified(sample, tuple(found)))
    listing.close()


def write_sessions(out: Path, n: int, rng: random.Random, steps: int = 20) -> None:
    per_step = n // steps
    for step in range(1, steps + 1):
        records = []
        for i in range(per_step):
            retried = i % 4 == 0
            kinds = [FIRST_ATTEMPT, INJECTED, SELF_CHECK, INJECTED, RETRY] if retried else [FIRST_ATTEMPT]
            spans = [Span(k, prose(rng, 30 if k != INJECTED else 10), 40, round(rng.uniform(-2, 2), 3)) for k in kinds]
            records.append(SessionRecord(step, f"p{i // 6}", prose(rng, 12), "Yes", rng.random(), float(retried and i % 8 == 0),
                                         not retried, rng.random() < 0.5, "retried" if retried else "accepted",
                                         {"accuracy": 1.0, "format": 0.5}, spans))
        write_step(out, step, records)


def write_evals(root: Path, n: int, rng: random.Random) -> list[Path]:
    bench = root / "benchmark"
    (bench / "imgs").mkdir(parents=True)
    for k in range(IMAGES):
        Image.effect_noise((256, 256), 40).save(bench / "imgs" / f"{k}.png")
    items = [{"img_id": i, "img_name": f"{i % IMAGES}.png", "question": prose(rng, 10), "answer": "Yes" if i % 2 else "No",
              "answer_type": "CLOSED", "q_lang": "en", "modality": SOURCES[i % 4][1], "content_type": "Abnormality",
              "location": "Abdomen", "qid": i} for i in range(n)]
    (bench / "test.json").write_text(json.dumps(items))
    runs = []
    for label in ("base", "trained"):
        out = root / f"eval_{label}"
        (out / "predictions").mkdir(parents=True)
        (out / "scored").mkdir()
        with (out / "predictions" / "phantom.jsonl").open("w") as p, (out / "scored" / "phantom.jsonl").open("w") as s:
            for item in items:
                answer = rng.choice(("Yes", "No"))
                p.write(json.dumps({"id": f"phantom-{item['qid']}", "benchmark": "phantom", "run_key": label,
                                    "responses": [lvkc(rng, answer)]}) + "\n")
                s.write(json.dumps({"id": f"phantom-{item['qid']}", "answered": True, "correct": answer == item["answer"],
                                    "fallback": False, "extracted_by": "answer_tag"}) + "\n")
        (out / "summary.json").write_text(json.dumps({"label": label, "prompt_style": "lvkc",
                                                      "benchmarks": [{"name": "phantom", "path": str(bench)}]}))
        runs.append(out)
    return runs


def measure(browser: Chromium, page: Path) -> dict[str, float]:
    loads = []
    for _ in range(3):
        browser.open(page)
        loads.append(browser.evaluate("MEDSAGE.last.at"))
    assert browser.exceptions == [] and browser.evaluate("MEDSAGE.errors") == [], browser.evaluate("MEDSAGE.errors")
    before = browser.evaluate("MEDSAGE.renders")
    browser.evaluate("(() => { const s = [...document.querySelectorAll('select[data-facet]')].find(s => s.options.length > 2);"
                     " s.value = s.options[2].value; s.dispatchEvent(new Event('change')); })()")
    browser.wait_for(f"MEDSAGE.renders > {before}")
    facet = browser.evaluate("MEDSAGE.last.ms")
    # 20 matches spread over 20 chunks: a seeded random order over every entry
    before = browser.evaluate("MEDSAGE.renders")
    browser.evaluate("location.hash = 'seed=1'")
    browser.wait_for(f"MEDSAGE.renders > {before}")
    return {"load_ms": statistics.median(loads), "facet_ms": facet, "random_page_ms": browser.evaluate("MEDSAGE.last.ms")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    n = parser.parse_args().n
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="bench_explore_") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_build(root / "data", n, rng)
        write_sessions(root / "rl" / "sessions", n, rng)
        evals = write_evals(root, n, rng)
        print(f"inputs written in {time.perf_counter() - start:.0f} s ({n} samples, {n} sessions, 2 x {n} predictions)")
        timings = {}
        for name, folders in (("samples", [root / "data"]), ("sessions", [root / "rl" / "sessions"]), ("predictions", evals)):
            start = time.perf_counter()
            build_site(folders, root / f"site_{name}")
            timings[name] = time.perf_counter() - start
        with Chromium(timeout=120) as browser:
            for name, seconds in timings.items():
                site = root / f"site_{name}"
                size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) / 2**20
                meta = (site / "data" / name / "meta.js").stat().st_size / 2**10
                m = measure(browser, site / f"{name}.html")
                print(f"{name}: build {seconds:.1f} s ({n / seconds:,.0f} entries/s), site {size:.0f} MiB, meta {meta:.0f} KiB;"
                      f" page load {m['load_ms']:.0f} ms, facet change {m['facet_ms']:.0f} ms,"
                      f" random page over 20 chunks {m['random_page_ms']:.0f} ms")


if __name__ == "__main__":
    main()
