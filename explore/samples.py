"""Samples page: a data build's samples, each with its image, ROIs, question and every trajectory.

``samples.jsonl`` lists this build's samples in export order; ``work/trajectories.jsonl`` holds each
committed sample as one line (the sample with its record and annotated ROIs, and its verified
trajectories). That file is indexed by byte offset (a resumed build may have appended a sample
again; its last line is current; samples of earlier builds that this one no longer asks are not in
the list) and read one sample at a time, so a build of any size streams through in bounded memory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

from medsage.data_gen.instructions import Sample
from medsage.data_gen.trajectories import Trajectory

from .site import Entry, ImageStore, Page, box_shape, shapes, stages

SAMPLES, TRAJECTORIES = "samples.jsonl", "work/trajectories.jsonl"
FACETS = {"source": "source", "task_type": "task type", "modality": "modality", "verdicts": "trajectories"}
# The store writes the id first: read it without parsing the whole line (other layouts: parsed whole)
_ID = re.compile(rb'^\{"sample_id": ("(?:[^"\\]|\\.)*")')


def is_build(folder: Path) -> bool:
    return (folder / SAMPLES).is_file() and (folder / TRAJECTORIES).is_file()


def offsets(path: Path) -> dict[str, int]:
    """Byte offset of each sample's last complete line; a torn last line (a build killed mid-write,
    or one still running) is skipped."""
    found: dict[str, int] = {}
    position = 0
    with path.open("rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                m = _ID.match(line)
                found[json.loads(m.group(1)) if m else json.loads(line)["sample_id"]] = position
            position += len(line)
    return found


def verdicts(trajectories: list[Trajectory]) -> str:
    accepted = sum(bool(t.accepted) for t in trajectories)
    if accepted == len(trajectories):
        return "all accepted"
    return "all rejected" if accepted == 0 else "some rejected"


def sample_entry(sample: Sample, trajectories: list[Trajectory], image: str) -> Entry:
    """One sample: the annotated boxes and every trajectory's ``<LOC>`` objects in pixels of its image."""
    record = sample.record
    rois = [box_shape(r.box, r.label, r.kind, "annotation") for r in record.rois if r.strong]
    shown = []
    for k, t in enumerate(trajectories, 1):
        view = stages(t.text)
        rois += shapes(dict(view["segments"]).get("LOC"), sample.width, sample.height, t.roi_kind, f"T{k}")
        shown.append({"n": k, "roi_kind": t.roi_kind, "template": t.template, "generator": t.generator,
                      "accepted": bool(t.accepted), "reasons": list(t.reasons), **view})
    body = {
        "id": sample.sample_id, "image": image, "width": sample.width, "height": sample.height,
        "source": record.source, "task_type": sample.task_type, "modality": record.modality,
        "question": sample.question, "options": sample.options, "answer": sample.answer,
        "answer_text": sample.answer_text, "rois": rois, "trajectories": shown,
        "text_rois": [r.text for r in record.rois if r.text],
    }
    facets = {"source": record.source, "task_type": sample.task_type, "modality": record.modality,
              "verdicts": verdicts(trajectories)}
    return Entry(body, facets)


def entries(build: Path, images: ImageStore) -> Iterator[Entry]:
    where = offsets(build / TRAJECTORIES)
    with (build / SAMPLES).open(encoding="utf-8") as listing, (build / TRAJECTORIES).open("rb") as f:
        for line in filter(str.strip, listing):
            f.seek(where[json.loads(line)["sample_id"]])
            data = json.loads(f.readline())
            sample = Sample.from_json(data["sample"])
            image, _, _ = images.add(build / "sft" / sample.image, sample.image.removeprefix("images/"),
                                     (sample.width, sample.height))
            yield sample_entry(sample, [Trajectory.from_json(t) for t in data["trajectories"]], image)


def page(build: Path, images: ImageStore) -> Page:
    return Page("samples", "Samples", FACETS, {}, entries(build, images), (str(build),))
