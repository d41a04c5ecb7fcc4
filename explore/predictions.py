"""Predictions page: evaluation runs question by question, several runs side by side.

An evaluation folder holds each model turn (``predictions/``), each verdict (``scored/``) and, in
``summary.json``, the benchmarks it ran and its prompt style; the questions are loaded again with
the evaluation's own loaders and each answer is read with the scorer's own extraction, so what is
shown is what was scored. Given the same benchmarks, runs line up by question id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from medsage.eval.benchmarks import Item, load_benchmark
from medsage.eval.scoring import response_answer

from .site import Entry, ImageStore, Page, shapes, stages

TURNS = {1: ("answer",), 3: ("first attempt", "self-check", "retry")}  # by the number of turns a prediction has


@dataclass(frozen=True)
class EvalRun:
    folder: Path
    label: str
    prompt_style: str
    benchmarks: tuple[dict, ...]  # medsage.eval.config.BenchmarkSpec fields


def is_eval_run(folder: Path) -> bool:
    return (folder / "summary.json").is_file() and (folder / "predictions").is_dir()


def read_run(folder: Path) -> EvalRun:
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    if "benchmarks" not in summary:
        raise ValueError(f"{folder}/summary.json does not name its benchmarks (written before the explorer existed); "
                         "rerun the evaluation (its predictions are resumed, not regenerated)")
    return EvalRun(folder, summary.get("label") or folder.name, summary.get("prompt_style", "lvkc"),
                   tuple(summary["benchmarks"]))


def _jsonl(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    return {row["id"]: row for row in map(json.loads, filter(str.strip, path.read_text(encoding="utf-8").splitlines()))}


def verdict(scored: dict) -> str:
    if scored["correct"]:
        return "right"
    return "wrong" if scored["answered"] else "parse failure"


def run_view(run: EvalRun, prediction: dict | None, scored: dict | None, width: int, height: int, who: str) -> dict:
    """One run's answer to one question: every turn's stages, the extracted answer and the verdict."""
    if prediction is None or scored is None:
        return {"label": run.label, "missing": True}
    responses = prediction["responses"]
    names = TURNS.get(len(responses)) or [f"turn {k}" for k in range(1, len(responses) + 1)]
    final = responses[-1]
    answer = response_answer(final, run.prompt_style)
    # a plain-style answer has no stages to check: shown as written
    turns = [{"name": name, **(stages(text) if run.prompt_style == "lvkc" else {"segments": [["", text]]})}
             for name, text in zip(names, responses)]
    loc = dict(turns[-1]["segments"]).get("LOC")
    return {
        "label": run.label, "turns": turns, "answer": answer, "verdict": verdict(scored),
        # the scorer's own record of where the answer was read (older scored files do not say)
        "fallback": bool(scored.get("fallback")), "extracted_by": scored.get("extracted_by", ""),
        "rois": shapes(loc, width, height, "prediction", who) if width else [],
    }


def change(first: str | None, last: str | None) -> str:
    """How the verdict moved from the first run to the last (None: the question is not in that run)."""
    if first is None or last is None:
        return "not in both"
    if first == "right":
        return "stayed right" if last == "right" else "broken"
    return "fixed" if last == "right" else "stayed wrong"


def item_entry(item: Item, runs: list[EvalRun], views: list[dict], image: tuple[str, int, int] | None) -> Entry:
    src, width, height = image or ("", 0, 0)
    rois = [roi for v in views for roi in v.get("rois", [])]
    body = {"benchmark": item.benchmark, "id": item.id, "question": item.question, "options": item.options,
            "reference": item.answer, "modality": item.modality, "question_type": item.question_type,
            "image": src, "width": width, "height": height, "rois": rois, "runs": views}
    present = [v for v in views if not v.get("missing")]
    facets = {"benchmark": item.benchmark, "modality": item.modality or "unknown"}
    facets.update({f"verdict{k}": v.get("verdict", "not run") for k, v in enumerate(views)})
    if len(runs) > 1:
        facets["change"] = change(views[0].get("verdict"), views[-1].get("verdict"))
    flags = {"wrong": any(v["verdict"] != "right" for v in present),
             "parse_failure": any(v["verdict"] == "parse failure" for v in present),
             "fallback": any(v["fallback"] for v in present)}
    return Entry(body, facets, flags)


def _image(item: Item, images: ImageStore) -> tuple[str, int, int] | None:
    """The question's first image; a content hash names it, so ids with odd characters are safe."""
    if not item.images:
        return None
    ref = item.images[0]
    data = ref if isinstance(ref, bytes) else str(ref).encode()
    suffix = "" if isinstance(ref, bytes) else Path(ref).suffix
    name = f"{item.benchmark}/{hashlib.sha1(data).hexdigest()[:16]}{suffix or '.png'}"
    return images.add(ref if isinstance(ref, bytes) else Path(ref), name)


def entries(runs: list[EvalRun], images: ImageStore) -> Iterator[Entry]:
    for spec in runs[0].benchmarks:
        name = spec["name"]
        files = [(_jsonl(r.folder / "predictions" / f"{name}.jsonl"), _jsonl(r.folder / "scored" / f"{name}.jsonl"))
                 for r in runs]
        for item in load_benchmark(name, spec["path"], spec.get("limit"), **(spec.get("options") or {})):
            if not any(item.id in predictions for predictions, _ in files):
                continue
            image = _image(item, images)
            width, height = image[1:] if image else (0, 0)
            views = [run_view(r, p.get(item.id), s.get(item.id), width, height, f"R{k}")
                     for k, (r, (p, s)) in enumerate(zip(runs, files), 1)]
            yield item_entry(item, runs, views, image)


def page(runs: list[EvalRun], images: ImageStore) -> Page:
    facets = {"benchmark": "benchmark", "modality": "modality"}
    facets.update({f"verdict{k}": f"verdict of {r.label}" for k, r in enumerate(runs)})
    if len(runs) > 1:
        facets["change"] = f"{runs[0].label} -> {runs[-1].label}"
    flags = {"wrong": "wrong only", "parse_failure": "parse failures", "fallback": "fallback-extracted answers"}
    return Page("predictions", "Predictions", facets, flags, entries(runs, images), tuple(str(r.folder) for r in runs),
                {"runs": [r.label for r in runs]})
