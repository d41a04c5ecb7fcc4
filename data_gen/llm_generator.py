"""Stage-wise generation through an OpenAI-compatible endpoint (paper section 3.1, A.3.4; Figures 8-10).

GPT-4o in the paper, or any model behind ``vllm serve``. Per region r: LOC(r) from the image,
the question and an internal ROI cue (Figure 8); Vis(r) from the full image plus a crop of the
region (Eq. 2, Figure 9). Per (r, t): Know(r, t) from the visual summary, the label as hidden
guidance and the interpretation template t (Eq. 4, Figure 10); the conclusion from all prior
stages and the answer (Eq. 5). The grounding object and the ANSWER stage are written by rule, so
coordinates are exact and the answer is explicit; assembly is the scaffold renderer (Figure 11).
Every reply must carry its stage tag, opened and closed once; any other reply is retried by the client.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
from pathlib import Path

from PIL import Image

from medsage.data_gen.instructions import Sample, region_phrase
from medsage.data_gen.llm_client import LLMClient, image_content_async
from medsage.data_gen.prompts import KNOWLEDGE_TEMPLATES, StagePrompts, question_with_options
from medsage.data_gen.records import ROI
from medsage.data_gen.trajectories import Trajectory, answer_stage, loc_groundings
from medsage.reward_fns.scaffold import CON, KNOWLEDGE, LOC, VISUAL, Scaffold, parse_tags, pixels_to_box_2d


def stage_text(reply: str, tag: str) -> str | None:
    """The content of ``<tag>`` in a reply; None when the reply lacks it or does not close it properly
    (an unclosed stage is a cut reply, which must be asked again, not assembled into a trajectory)."""
    parsed = parse_tags(reply, (tag,))
    return None if parsed.problems else parsed.get(tag) or None


class LLMGenerator:
    """Generates trajectories with one model; all calls go through the shared :class:`LLMClient`."""

    def __init__(self, client: LLMClient, prompts: StagePrompts, dataset_dir: Path, crops_dir: Path,
                 temperature: float = 0.7, max_tokens: int = 512):
        self.client, self.prompts = client, prompts
        self.dataset_dir, self.crops_dir = Path(dataset_dir), Path(crops_dir)
        self.temperature, self.max_tokens = temperature, max_tokens
        self.name = client.config.model

    async def generate(self, sample: Sample, paths: list[tuple[ROI, str]], rng: random.Random) -> list[Trajectory]:
        rois = list(dict.fromkeys(roi for roi, _ in paths))
        seen = await asyncio.gather(*(self._observe(sample, roi) for roi in rois))
        observed = dict(zip(rois, seen))
        return list(await asyncio.gather(*(self._reason(sample, roi, t, *observed[roi]) for roi, t in paths)))

    async def _ask(self, tag: str, content: list[dict]) -> str:
        reply = await self.client.chat([{"role": "user", "content": content}], temperature=self.temperature,
                                       max_tokens=self.max_tokens, validate=lambda text: stage_text(text, tag) is not None)
        return stage_text(reply.text, tag)

    async def _observe(self, sample: Sample, roi: ROI) -> tuple[str, str]:
        """LOC(r) then Vis(r)."""
        question = question_with_options(sample.question, sample.options or None)
        image = await image_content_async(self.dataset_dir / sample.image)
        loc = await self._ask(LOC, [image, {"type": "text", "text": self.prompts.render(
            "loc", prompt=question, roi_hint=self._roi_hint(sample, roi))}])
        crop = []
        if roi.strong and roi.kind != "global":  # cropped in a thread too: not on the loop that drives the calls
            crop = [await image_content_async(await asyncio.to_thread(self._crop, sample, roi))]
        visual = await self._ask(VISUAL, [image, *crop, {"type": "text", "text": self.prompts.render(
            "visual", prompt=question, roi_summary=loc)}])
        return loc, visual

    async def _reason(self, sample: Sample, roi: ROI, template: str, loc: str, visual: str) -> Trajectory:
        """Know(r, t) then the conclusion; the answer and the grounding by rule."""
        question = question_with_options(sample.question, sample.options or None)
        knowledge = await self._ask(KNOWLEDGE, [{"type": "text", "text": self.prompts.render(
            "knowledge", prompt=question, visual_summary=visual, label=sample.answer_text,
            template=KNOWLEDGE_TEMPLATES[template])}])
        answer = answer_stage(sample)
        con = await self._ask(CON, [{"type": "text", "text": self.prompts.render(
            "con", prompt=question, loc=loc, visual=visual, knowledge=knowledge, answer=answer)}])
        text = Scaffold(loc=loc, visual=visual, knowledge=knowledge, con=con, answer=answer,
                        groundings=loc_groundings(roi, sample)).render()
        return Trajectory(sample.sample_id, roi.kind, template, text, self.name)

    @staticmethod
    def _roi_hint(sample: Sample, roi: ROI) -> str:
        if roi.kind == "global":
            return "the whole image"
        if not roi.strong:
            return roi.text or roi.label
        box = pixels_to_box_2d(roi.box, sample.width, sample.height)
        return f"box_2d {list(box)} on a 0-1000 grid, {region_phrase(roi.box, sample.width, sample.height)} part of the image"

    def _crop(self, sample: Sample, roi: ROI) -> Path:
        key = hashlib.sha1(f"{sample.image}|{roi.box}".encode()).hexdigest()[:16]
        path = self.crops_dir / f"{key}.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            # written aside and renamed: two samples of one image may crop the same box at once
            partial = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.part.png")
            with Image.open(self.dataset_dir / sample.image) as im:
                im.crop(tuple(int(round(v)) for v in roi.box)).save(partial)
            os.replace(partial, path)
        return path
