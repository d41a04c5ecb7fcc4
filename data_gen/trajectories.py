"""Stage-wise trajectories and reasoning path augmentation (paper section 3.1, Eqs. 2-6; A.3.4).

A trajectory tau(r, t) = [Vis(r), Know(r, t), Out(r, t)] is built for a region r of the ROI set
and an interpretation template t; pairing several ROIs with several templates gives several
answer-consistent trajectories per image (RPA). This module holds what both generators share:
the plan of (ROI, template) pairs, the neutral grounding labels, the rule-written ANSWER stage
(which states the answer explicitly so the shared matcher credits it), and the rule-based
offline generator, the embedded default that writes every stage from the annotations and the
pixels, with no model. It also writes labelled negatives for the trajectory scorer, as the paper
keeps rejected trajectories as negatives (A.4): the corruptions of
:mod:`medsage.reward_fns.consistency.corruptions` that the verifier rejects (an answer contradicting
the label, a dropped stage, the label leaked into the visual evidence).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from medsage.data_gen.instructions import SOURCE_QA, Sample, region_phrase
from medsage.data_gen.prompts import KNOWLEDGE_TEMPLATES, TEMPLATE_DIR
from medsage.data_gen.records import ROI
from medsage.data_gen.rois import grounding
from medsage.reward_fns.answers import normalize
from medsage.reward_fns.consistency.corruptions import corrupt as corrupt_text
from medsage.reward_fns.consistency.corruptions import leak_label
from medsage.reward_fns.scaffold import ANSWER, Scaffold, parse, render_sections

OFFLINE = "offline-rule-based"
LABEL_LEAK = "label_leak"
# Negatives the verifier must reject: kinds of the corruption module, and the leak it cannot make alone.
NEGATIVE_KINDS = ("contradicting_answer", "dropped_stage", LABEL_LEAK)
GROUNDING_LABELS = {
    "annotated": "region of interest",
    "perturbed": "region of interest",
    "expanded": "region of interest with surrounding context",
    "subregion": "part of the region of interest",
    "global": "whole image",
}


@dataclass(frozen=True)
class Trajectory:
    """One LVKC response for one sample, with its provenance and (after verification) its verdict."""

    sample_id: str
    roi_kind: str
    template: str
    text: str
    generator: str
    accepted: bool | None = None
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {**self.__dict__, "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, data: dict) -> "Trajectory":
        return cls(**{**data, "reasons": tuple(data.get("reasons", ()))})


def sample_rois(sample: Sample, rois: list[ROI]) -> list[ROI]:
    """The ROIs that concern the sample's target: its boxes (all boxes if none match), text ROIs, global."""
    boxes = [r for r in rois if r.strong and r.kind != "global"]
    matching = [r for r in boxes if normalize(r.label) == normalize(sample.target)] or boxes
    return matching + [r for r in rois if not r.strong or r.kind == "global"]


def plan(rois: list[ROI], n: int, rng: random.Random) -> list[tuple[ROI, str]]:
    """Up to ``n`` distinct (ROI, template) pairs, spreading over ROI kinds and templates first."""
    templates = list(KNOWLEDGE_TEMPLATES)
    order = rois[:]
    rng.shuffle(order)
    order.sort(key=lambda r: r.kind == "global")  # the global ROI last: local evidence first
    pairs = [(roi, templates[(i + j) % len(templates)]) for j in range(len(templates)) for i, roi in enumerate(order)]
    return pairs[:n]


def answer_stage(sample: Sample) -> str:
    """The ANSWER text: explicit enough for the shared matcher (letter and text; Yes/No first)."""
    if sample.options:
        return f"{sample.answer}. {sample.answer_text}"
    if sample.answer_type == "yes_no" and sample.task_type == "yes_no":
        if normalize(sample.answer) == "yes":
            return f"Yes, there is a {sample.target} finding."
        return f"No, there is no {sample.target} finding."
    if sample.answer_type == "yes_no":
        return sample.answer
    if sample.task_type == "localization":
        return f"The {sample.target} is in the {sample.answer} part of the image."
    if len(sample.answer.split()) <= 6:
        return f"Findings are most consistent with {sample.answer}."
    return sample.answer


def loc_groundings(roi: ROI, sample: Sample):
    g = grounding(roi, sample.width, sample.height, GROUNDING_LABELS.get(roi.kind, "region of interest"))
    return (g,) if g is not None else ()


@lru_cache(maxsize=1)
def knowledge_base() -> dict[str, dict[str, str]]:
    return yaml.safe_load((TEMPLATE_DIR / "knowledge.yaml").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def settings() -> dict[str, str]:
    return yaml.safe_load((TEMPLATE_DIR / "settings.yaml").read_text(encoding="utf-8"))


def setting(label: str) -> str | None:
    """The tissue a finding sits in, without naming it (``templates/settings.yaml``)."""
    return settings().get(normalize(label))


def knowledge_text(sample: Sample, template: str) -> str:
    kb = knowledge_base()
    entry = kb.get(normalize(sample.target), kb["_default"]) if sample.task_type != SOURCE_QA else kb["_default"]
    others = [v for k, v in sample.options.items() if k != sample.answer]
    alternatives = ", ".join(others) if others else "other findings"
    return entry[template].format(alternatives=alternatives)


class OfflineGenerator:
    """Writes every stage from annotations and pixel statistics (the embedded default; no model)."""

    name = OFFLINE

    def __init__(self, dataset_dir: Path, negatives_per_sample: int = 1):
        self.dataset_dir, self.negatives_per_sample = Path(dataset_dir), negatives_per_sample

    async def generate(self, sample: Sample, paths: list[tuple[ROI, str]], rng: random.Random) -> list[Trajectory]:
        pixels = np.asarray(Image.open(self.dataset_dir / sample.image).convert("L"), dtype=np.float32)
        anchor = next((r.box for r, _ in paths if r.strong and r.kind != "global"), None)
        out = [self._one(sample, roi, template, pixels, anchor) for roi, template in paths]
        kinds = [k for k in NEGATIVE_KINDS if k != LABEL_LEAK or sample.leak_terms]
        for kind in rng.sample(kinds, min(self.negatives_per_sample, len(kinds))) if out else []:
            negative = corrupt(out[0], sample, kind, rng)
            out += [negative] if negative is not None else []
        return out

    def _one(self, sample: Sample, roi: ROI, template: str, pixels: np.ndarray, anchor) -> Trajectory:
        record = sample.record
        body = f" of the {record.body_part.lower()}" if record.body_part else ""
        scaffold = Scaffold(
            preamble=f"This is {_article(record.modality)} {record.modality} image{body}. {_question_focus(sample)}{_global_context(pixels)}",
            loc=_loc_text(roi, sample),
            groundings=loc_groundings(roi, sample),
            visual=_visual_text(roi, sample, pixels, anchor),
            knowledge=knowledge_text(sample, template),
            con=_con_text(sample, template),
            answer=answer_stage(sample),
        )
        return Trajectory(sample.sample_id, roi.kind, template, scaffold.render(), OFFLINE)


def _article(word: str) -> str:
    """'an' before a vowel sound: 'an MRI', 'an X-ray', 'an ultrasound'; 'a CT'."""
    spelled = word.isupper() or word.upper().startswith("X-")
    return "an" if word[:1].lower() in "aeiou" or (spelled and word[:1].upper() in "AEFHILMNORSX") else "a"


def _question_focus(sample: Sample) -> str:
    """A yes/no question's finding, restated up front: the conclusion must weigh what is seen against it."""
    return f"The question is whether a {sample.target} finding is present. " if sample.task_type == "yes_no" else ""


def _global_context(pixels: np.ndarray) -> str:
    dark = float((pixels < 20).mean())
    contrast = "high" if pixels.std() > 50 else ("moderate" if pixels.std() > 20 else "low")
    return f"About {dark:.0%} of the field is dark background and overall contrast is {contrast}."


def _loc_text(roi: ROI, sample: Sample) -> str:
    if roi.kind == "global":
        return "The whole image field is the region of interest, reviewed for the most conspicuous focus."
    if not roi.strong:
        return f"The region of interest is the {roi.text}."
    where = region_phrase(roi.box, sample.width, sample.height)
    extent = {"expanded": " together with its surroundings", "subregion": ", focusing on part of the focus"}
    return f"The region of interest is in the {where} part of the image{extent.get(roi.kind, '')}."


def _box_stats(pixels: np.ndarray, box) -> tuple[float, float, float]:
    """Mean of the box's central half, mean of the rest of the box, standard deviation of the centre.

    Annotated boxes are padded around the finding (DeepLesion adds about 5 px), so the centre
    stands for the finding and the margin for the tissue next to it.
    """
    h, w = pixels.shape
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = min(max(x1, 0), w - 1), min(max(y1, 0), h - 1)
    x2, y2 = max(min(x2, w), x1 + 1), max(min(y2, h), y1 + 1)
    whole = pixels[y1:y2, x1:x2]
    qx, qy = (x2 - x1) // 4, (y2 - y1) // 4
    core = whole[qy:(y2 - y1) - qy, qx:(x2 - x1) - qx]
    margin_n = whole.size - core.size
    margin = (whole.sum() - core.sum()) / margin_n if margin_n else float(core.mean())
    return float(core.mean()), float(margin), float(core.std())


def _visual_text(roi: ROI, sample: Sample, pixels: np.ndarray, anchor) -> str:
    box = roi.box if roi.strong and roi.kind != "global" else anchor
    context = "(A) Global context: surrounding structures are of uniform appearance with no second focus of comparable conspicuity."
    if box is None:
        return f"{context} (B) ROI evidence: no focal abnormality is separable from background at this resolution."
    inside, ring, spread = _box_stats(pixels, box)
    diff = inside - ring
    tone = "brighter than" if diff > 8 else ("darker than" if diff < -8 else "similar in intensity to")
    texture = "homogeneous" if spread < 15 else "heterogeneous"
    where = region_phrase(box, sample.width, sample.height)
    seen_in = setting(sample.finding)
    within = f", set within {seen_in}" if seen_in else ""
    return (f"{context} (B) ROI evidence: in the {where} part of the image there is a rounded, well-marginated focus, "
            f"{tone} the adjacent tissue{within}, with a {texture} internal pattern, measuring {_size_text(box, sample)}.")


def _size_text(box, sample: Sample) -> str:
    width_px = box[2] - box[0]
    spacing = sample.record.meta.get("spacing_mm")
    if isinstance(spacing, list) and spacing:
        return f"about {width_px * float(spacing[0]):.0f} mm across"
    return f"about {width_px / sample.width:.0%} of the image width"


def _con_text(sample: Sample, template: str) -> str:
    angle = template
    if sample.options:
        return (f"The {angle} criteria are met by the observed focus and not by the alternatives, "
                f"so option {sample.answer} ({sample.answer_text}) is supported.")
    if sample.task_type == "yes_no":
        met = normalize(sample.answer) == "yes"
        seen_in, asked_in = setting(sample.finding), setting(sample.target)
        if seen_in and asked_in:
            return (f"The focus is set within {seen_in}; a {sample.target} lesion would be set within {asked_in}, "
                    f"so a {sample.target} finding is {'present' if met else 'not supported'}.")
        return (f"The observed focus {'satisfies' if met else 'does not satisfy'} these {angle} criteria, "
                f"so a {sample.target} finding is {'present' if met else 'not supported'}.")
    if sample.task_type == "localization":
        return f"The evidence places the finding in the {sample.answer} part of the image."
    if len(sample.answer.split()) <= 6:
        return f"Together, the location and appearance support {sample.answer}."
    return "Together, these observations support the reported findings."


def corrupt(trajectory: Trajectory, sample: Sample, kind: str, rng: random.Random) -> Trajectory | None:
    """A labelled negative made from a good trajectory (the kind the verifier must reject): the
    corruption module's ``kind``, offered the sample's wrong answers as donors, or the label leak;
    None when the corruption finds nothing to change (every wrong answer matches the label)."""
    if kind == LABEL_LEAK:
        text = leak_label(trajectory.text, sample.leak_terms[0])
    else:
        sections = parse(trajectory.text).sections
        donors = [render_sections({**sections, ANSWER: answer}) for answer in _wrong_answers(sample)]
        text = corrupt_text(kind, trajectory.text, donors, rng)
    return None if text is None else replace(trajectory, text=text, generator=f"{OFFLINE}:negative:{kind}")


def _wrong_answers(sample: Sample) -> list[str]:
    """ANSWER texts that contradict the sample's label: the other options, the opposite of yes/no,
    or a normal finding for an open question."""
    if sample.options:
        return [f"{letter}. {text}" for letter, text in sample.options.items() if letter != sample.answer]
    if sample.answer_type == "yes_no":
        return ["No." if normalize(sample.answer) == "yes" else "Yes."]
    return ["No abnormality is identified."]
