"""Filtering and the multi-task instruction set (paper A.3.1-A.3.2).

Records pass image-quality checks (readable, large enough, not blank) and label checks (not
flagged noisy, a usable label or question) with every rejection counted by reason. Each kept
record then yields questions of several task types from templates: multiple choice with
distractors drawn from the source's label space, yes/no balanced between yes and no,
open-ended, and localization.

Everything about a sample derives from its record's content (:func:`content_digest`): its id, the
task types it gets and its random choices. So the same input row always yields the same samples
wherever it sits in the input, and editing one row changes only that row's samples (a resumed or
edited build re-asks nothing else). Task types are dealt from the configured list at a
content-chosen offset, ``per_record`` consecutive entries, so each record gets distinct types and
the list's proportions hold on average (a list naming yes_no every other entry gives every record
exactly one yes/no question).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from medsage.data_gen.leakage import dhash
from medsage.data_gen.prompts import TEMPLATE_DIR
from medsage.data_gen.records import Record
from medsage.data_gen.readers.deeplesion import window_hu
from medsage.reward_fns.answers import LETTERS, AnswerType, answer_type
from medsage.reward_fns.scaffold import pixels_to_box_2d

TASK_TYPES = ("multiple_choice", "yes_no", "open", "localization")
SOURCE_QA = "source_qa"  # a question and answer that came with the record (PubMedVision, LLaVA)


@dataclass(frozen=True)
class FilterConfig:
    min_side_px: int = 32
    min_std: float = 3.0  # grey-level standard deviation below which an image is blank
    drop_noisy: bool = True


@dataclass(frozen=True)
class InstructionConfig:
    task_types: tuple[str, ...] = TASK_TYPES
    per_record: int = 2
    n_options: int = 4
    keep_source_qa: bool = True


@dataclass(frozen=True)
class Sample:
    """One question about one image, with everything the generators and exports need."""

    sample_id: str
    record: Record
    image: str  # relative to the SFT dataset_dir
    width: int
    height: int
    task_type: str
    question: str
    answer: str  # what the matcher compares with: option letter, yes/no, or the answer text
    answer_text: str  # the answer in words (the option text for multiple choice)
    target: str  # the finding the question is about
    options: dict[str, str] = field(default_factory=dict)
    leak_terms: tuple[str, ...] = ()  # must not appear in the preamble, LOC, VISUAL or KNOWLEDGE
    finding: str = ""  # the annotated label the question was built from (a "No" question asks about another)

    def to_json(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "record"}, "record": self.record.to_json(),
                "leak_terms": list(self.leak_terms)}

    @classmethod
    def from_json(cls, data: dict) -> "Sample":
        return cls(**{**data, "record": Record.from_json(data["record"]), "leak_terms": tuple(data["leak_terms"])})

    @property
    def answer_type(self) -> str:
        """``multiple_choice`` | ``yes_no`` | ``open``: the matcher's own decision (one place decides it)."""
        return answer_type(self.answer, self.options).value


@dataclass(frozen=True)
class Materialised:
    """An image written as PNG under the dataset's images folder; its pixels are not kept (a build
    holds only the images of the records in flight). ``fingerprint`` is its perceptual hash when
    the leakage check asked for one."""

    path: str
    width: int
    height: int
    fingerprint: bytes | None = None


_HIGH_BIT = ("I;16", "I;16B", "I", "I;16L")


def _pixels(record: Record, im: Image.Image) -> np.ndarray:
    """8-bit pixels: windowed grayscale for 16-bit CT, colour kept for colour sources (microscopy,
    endoscopy, fundus photographs are read by their colour), grayscale otherwise."""
    if record.window is not None and im.mode in _HIGH_BIT:
        return window_hu(np.asarray(im), record.window)
    if im.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        rgb = np.asarray(im.convert("RGB"))
        if np.ptp(rgb.astype(np.int16), axis=2).max(initial=0) > 0:  # a grey image stored as RGB stays grey
            return rgb
    return np.asarray(im.convert("L"))


def materialise(record: Record, dataset_dir: Path, config: FilterConfig, fingerprint: bool = False) -> Materialised | str:
    """Write the record's image as an 8-bit PNG (DeepLesion windowed, colour kept); a reason string if unusable.

    Unreadable, too small and blank images are the image-quality filter of A.3.1. The pixels are
    released on return.
    """
    try:
        key = hashlib.sha1(record.image.read_bytes() + f"|{record.window}".encode()).hexdigest()[:16]
        with Image.open(record.image) as im:
            im.load()
            pixels = _pixels(record, im)
    except (OSError, UnidentifiedImageError, ValueError):
        return "unreadable_image"
    height, width = pixels.shape[:2]
    rel = f"images/{record.source}/{key}.png"  # content-addressed: the same across machines and reruns
    if min(width, height) < config.min_side_px:
        return "image_too_small"
    if float(pixels.std()) < config.min_std:
        return "blank_image"
    out = dataset_dir / rel
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(out)
    return Materialised(rel, width, height, dhash(pixels) if fingerprint else None)


def label_problem(record: Record, config: FilterConfig) -> str | None:
    """Why a record's labels are unusable, or None."""
    if record.noisy and config.drop_noisy:
        return "possibly_noisy"
    if not record.labels and not (record.question and record.answer):
        return "unlabeled"
    return None


def load_question_templates(path: Path | None = None) -> dict[str, dict[str, list[str]]]:
    data = yaml.safe_load(Path(path or TEMPLATE_DIR / "questions.yaml").read_text(encoding="utf-8"))
    if "default" not in data:
        raise ValueError(f"{path or 'questions.yaml'}: needs a 'default' label space")
    return data


def content_digest(record: Record) -> str:
    """SHA-1 of what a record says (source, image, annotations, question, answer, split, window, metadata): the
    root of its samples' ids and choices, independent of where the record sits in its input."""
    content = {"id": record.record_id, "source": record.source, "image": record.image.name,
               "rois": [[r.label, r.box, r.text, r.kind] for r in record.rois], "labels": record.labels,
               "question": record.question, "answer": record.answer, "split": record.split,
               "window": record.window, "modality": record.modality, "body_part": record.body_part,
               "meta": record.meta}
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def region_phrase(box: tuple[float, float, float, float], width: int, height: int) -> str:
    """Image-relative position of a box centre: 'upper left', 'central', 'lower right', ..."""
    cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    vertical = "upper" if cy < 1 / 3 else ("lower" if cy > 2 / 3 else "middle")
    horizontal = "left" if cx < 1 / 3 else ("right" if cx > 2 / 3 else "central")
    if vertical == "middle" and horizontal == "central":
        return "central"
    return f"{vertical} {horizontal}" if vertical != "middle" else f"middle {horizontal}"


class QuestionBuilder:
    """Turns kept records into :class:`Sample` values (A.3.2), deterministic in ``seed``."""

    def __init__(self, config: InstructionConfig, spaces: dict[str, list[str]], templates: dict, seed: int):
        unknown = set(config.task_types) - set(TASK_TYPES)
        if unknown:
            raise ValueError(f"unknown task types {sorted(unknown)}; choose from {TASK_TYPES}")
        self.config, self.spaces, self.templates, self.seed = config, spaces, templates, seed
        self.skipped: Counter = Counter()

    def samples(self, record: Record, image: Materialised) -> list[Sample]:
        digest = content_digest(record)
        rng = random.Random(f"{self.seed}|{digest}")
        out = []
        if record.question and record.answer and self.config.keep_source_qa:
            out.append(self._source_qa(record, image, digest))
        if record.labels:
            for task in self.tasks(digest):
                sample = self._make(task, record, image, rng, len(out), digest)
                if isinstance(sample, str):
                    self.skipped[sample] += 1
                else:
                    out.append(sample)
        return out

    def tasks(self, digest: str) -> list[str]:
        """``per_record`` consecutive entries of the task list from a content-chosen offset."""
        types = self.config.task_types
        start = int(hashlib.sha1(f"{self.seed}|tasks|{digest}".encode()).hexdigest(), 16) % len(types)
        return [types[(start + j) % len(types)] for j in range(self.config.per_record)]

    def _template(self, record: Record, task: str, rng: random.Random, **fields: str) -> str:
        space = self.templates.get(record.source, self.templates["default"])
        options = space.get(task) or self.templates["default"][task]
        return rng.choice(options).format(modality=record.modality, **fields)

    def _base(self, record: Record, image: Materialised, task: str, n: int, digest: str) -> dict:
        return dict(sample_id=f"{record.record_id}::{task}:{n}@{digest[:12]}", record=record, image=image.path,
                    width=image.width, height=image.height, task_type=task)

    def _source_qa(self, record: Record, image: Materialised, digest: str) -> Sample:
        answer = record.answer.strip()
        short = len(answer.split()) <= 6 and answer_type(answer) is not AnswerType.YES_NO
        return Sample(**self._base(record, image, SOURCE_QA, 0, digest), question=record.question, answer=answer,
                      answer_text=answer, target=answer, leak_terms=(answer,) if short else ())

    @staticmethod
    def _pointer(record: Record, label: str, image: Materialised) -> str | None:
        """"" when the record's findings share one label; else a sentence pointing at the asked finding's box
        (a question about "the lesion" on a slice with a liver and a lung lesion has no single answer), or
        None when it has no box to point at."""
        if len(record.labels) < 2:
            return ""
        box = next((roi.box for roi in record.rois if roi.strong and roi.label == label), None)
        if box is None:
            return None
        return f" Answer about the finding at box_2d {list(pixels_to_box_2d(box, image.width, image.height))} on a 0-1000 grid."

    def _make(self, task: str, record: Record, image: Materialised, rng: random.Random, n: int,
              digest: str) -> Sample | str:
        label = record.labels[rng.randrange(len(record.labels))]
        others = [x for x in self.spaces.get(record.source, []) if x not in record.labels]
        base = {**self._base(record, image, task, n, digest), "finding": label}
        pointer = self._pointer(record, label, image) if task in ("multiple_choice", "open") else ""
        if pointer is None:
            return "mixed_findings_without_box"
        if task == "multiple_choice":
            if not others:
                return "no_distractors"
            choices = rng.sample(others, min(len(others), self.config.n_options - 1)) + [label]
            rng.shuffle(choices)
            options = {LETTERS[i]: c.capitalize() for i, c in enumerate(choices)}
            letter = LETTERS[choices.index(label)]
            return Sample(**base, question=self._template(record, task, rng) + pointer, answer=letter,
                          answer_text=options[letter], target=label, options=options, leak_terms=(label,))
        if task == "yes_no":
            yes = rng.random() < 0.5 or not others
            candidate = label if yes else rng.choice(others)
            return Sample(**base, question=self._template(record, task, rng, candidate=candidate),
                          answer="Yes" if yes else "No", answer_text="Yes" if yes else "No", target=candidate)
        if task == "open":
            return Sample(**base, question=self._template(record, task, rng) + pointer, answer=label,
                          answer_text=label, target=label, leak_terms=(label,))
        boxes = [roi.box for roi in record.rois if roi.strong and roi.label == label]
        if not boxes:
            return "no_box_for_localization"
        if len(boxes) > 1:
            return "several_boxes_for_localization"  # "where is the liver lesion" has more than one answer
        box = boxes[0]
        where = region_phrase(box, image.width, image.height)
        return Sample(**base, question=self._template(record, task, rng, label=label), answer=where,
                      answer_text=where, target=label)


def balance(samples: list[Sample], size: int, seed: int, key=lambda s: s.task_type) -> list[Sample]:
    """Up to ``size`` samples, as even across ``key`` groups as the groups allow (A.4)."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(key(s), []).append(s)
    rng = random.Random(seed)
    for members in groups.values():
        rng.shuffle(members)
    chosen: list[Sample] = []
    while len(chosen) < size and any(groups.values()):
        for name in sorted(groups):
            if groups[name] and len(chosen) < size:
                chosen.append(groups[name].pop())
    return chosen
