"""Exports under ``output_dir``: LLaMA-Factory SFT set, verl RL parquet, scorer pairs (paper A.2, A.4).

* ``sft/``: sharegpt json (``messages`` + ``images`` relative to ``sft/``) and ``dataset_info.json``,
  read by ``llamafactory-cli train`` unchanged (``dataset_dir: <output_dir>/sft``).
* ``rl/train.parquet``, ``rl/val.parquet``: one row per sample, balanced by instruction type, in
  the columns verl 0.9.1's ``RLHFDataset`` reads; images embedded as PNG bytes so the files are
  self-contained, each with the size SFT trains on (see :func:`sft_image_size`); ``extra_info``
  carries what the reward and the self-check loop need.
* ``scorer/pairs.jsonl``: each accepted trajectory paired with a rejected one of the same sample.
* ``samples.jsonl``: one line per sample of the build (image, size, source, modality, task type, question,
  options, answer, annotated ROIs on the 0-1000 grid), the key to ``work/trajectories.jsonl`` that
  ``medsage-explore`` reads; the other exports keep only what their trainer needs.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from medsage.data_gen.instructions import Sample, balance
from medsage.data_gen.prompts import lvkc_instruction
from medsage.data_gen.trajectories import Trajectory
from medsage.reward_fns.answers import LETTERS
from medsage.reward_fns.scaffold import STAGES, parse, pixels_to_box_2d

AGENT_NAME = "medsage_self_check"
# Validation rollouts must not self-check: the loop would consult the reference answer to decide
# whether to retry, which is training-time information. verl's plain single-turn loop serves them.
VAL_AGENT_NAME = "single_turn_agent"
ABILITY = "medical_visual_reasoning"


@dataclass(frozen=True)
class Verified:
    """A sample with its verified trajectories."""

    sample: Sample
    trajectories: tuple[Trajectory, ...]

    @property
    def accepted(self) -> list[Trajectory]:
        return [t for t in self.trajectories if t.accepted]

    @property
    def rejected(self) -> list[Trajectory]:
        return [t for t in self.trajectories if t.accepted is False]


def user_turn(sample: Sample) -> str:
    return "<image>\n" + lvkc_instruction(sample.question, sample.options or None)


def write_sft(items: list[Verified], sft_dir: Path, name: str, max_per_sample: int) -> Path:
    rows = [
        {"messages": [{"role": "user", "content": user_turn(v.sample)}, {"role": "assistant", "content": t.text}],
         "images": [v.sample.image]}
        for v in items for t in v.accepted[:max_per_sample]
    ]
    sft_dir.mkdir(parents=True, exist_ok=True)
    (sft_dir / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    info = {name: {
        "file_name": f"{name}.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    }}
    (sft_dir / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return sft_dir / f"{name}.json"


def rl_candidates(items: list[Verified], max_answer_words: int) -> list[Verified]:
    """Samples fit for an answer reward: a verified trajectory and a short reference answer."""
    return [v for v in items if v.accepted and len(v.sample.answer.split()) <= max_answer_words]


def _val_groups(groups: list[str], fraction: float) -> set[str]:
    ranked = sorted(set(groups), key=lambda g: hashlib.sha1(g.encode()).hexdigest())
    n = math.ceil(fraction * len(ranked)) if fraction > 0 and len(ranked) > 1 else 0
    return set(ranked[:n])


def sft_image_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) LLaMA-Factory hands the model's processor in SFT, for ``image_max_pixels``.

    LLaMA-Factory 0.9.5 (``mm_plugin._preprocess_image``) scales an image over ``image_max_pixels``
    by ``sqrt(max_pixels / area)`` and truncates the sides; the Qwen2.5-VL processor then rounds each
    side to its 28-pixel patch grid. The RL rows carry this size as qwen_vl_utils'
    ``resized_width``/``resized_height``, which verl's dataset and agent loops honour and round the
    same way, so the RL image has the SFT image's patch grid. A ``max_pixels`` key would not: qwen_vl_utils
    rounds *down* from the original size, up to a row and a column of patches fewer than SFT saw.
    LLaMA-Factory's lower bounds (image_min_pixels 32*32, sides >= 28) never apply after the build's
    ``filter.min_side_px`` (>= 32).
    """
    if width * height <= max_pixels:
        return width, height
    factor = math.sqrt(max_pixels / (width * height))
    return int(width * factor), int(height * factor)


def _rl_row(v: Verified, index: int, sft_dir: Path, agent_name: str, image_max_pixels: int) -> dict:
    s = v.sample
    reference = parse(v.accepted[0].text)
    width, height = sft_image_size(s.width, s.height, image_max_pixels)
    return {
        "data_source": f"medsage/{s.record.source}",
        "prompt": [{"role": "user", "content": user_turn(s)}],
        "images": [{"bytes": (sft_dir / s.image).read_bytes(), "path": s.image,
                    "resized_width": width, "resized_height": height}],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": s.answer},
        "extra_info": {
            "index": index,
            "sample_id": s.sample_id,
            "answer_type": s.answer_type,
            "options": [s.options[k] for k in LETTERS if k in s.options],
            "question": s.question,
            "task_type": s.task_type,
            "modality": s.record.modality,
            "stages": {tag: reference.get(tag) or "" for tag in STAGES},
        },
        "agent_name": agent_name,
    }


def write_rl(items: list[Verified], rl_dir: Path, sft_dir: Path, size: int, val_fraction: float,
             max_answer_words: int, seed: int, image_max_pixels: int) -> dict[str, int]:
    """Balanced by task type to ``size`` rows, split by group (no image group in both files); images
    at their SFT size for ``image_max_pixels`` (the SFT recipe's)."""
    by_id = {v.sample.sample_id: v for v in items}
    chosen = balance([v.sample for v in rl_candidates(items, max_answer_words)], size, seed)
    chosen.sort(key=lambda s: s.sample_id)
    val = _val_groups([s.record.group or s.record.record_id for s in chosen], val_fraction)
    rows: dict[str, list[dict]] = {"train": [], "val": []}
    for i, s in enumerate(chosen):
        split = "val" if (s.record.group or s.record.record_id) in val else "train"
        agent_name = VAL_AGENT_NAME if split == "val" else AGENT_NAME
        rows[split].append(_rl_row(by_id[s.sample_id], i, sft_dir, agent_name, image_max_pixels))
    rl_dir.mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        pd.DataFrame(split_rows, columns=list(_COLUMNS)).to_parquet(rl_dir / f"{split}.parquet", index=False)
    return {split: len(r) for split, r in rows.items()}


_COLUMNS = ("data_source", "prompt", "images", "ability", "reward_model", "extra_info", "agent_name")


@dataclass(frozen=True)
class PromptBudget:
    """How the RL prompts, image tokens included, measure against the RL recipe's prompt budget."""

    processor: str
    max_prompt_length: int
    rows: int
    over: int  # rows verl's filter_overlong_prompts will drop, without saying how many
    longest: int


def measure_rl_prompts(rl_dir: Path, processor_path: str, max_prompt_length: int) -> PromptBudget:
    """Count each RL prompt's tokens as verl's ``RLHFDataset`` filter does: the processor's chat
    template with the image at its written size, expanded to its image tokens by the processor."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(processor_path)
    lengths = [
        _prompt_tokens(processor, row.prompt, row.images)
        for split in ("train", "val")
        for row in pd.read_parquet(rl_dir / f"{split}.parquet", columns=["prompt", "images"]).itertuples()
    ]
    return PromptBudget(processor=processor_path, max_prompt_length=max_prompt_length, rows=len(lengths),
                        over=sum(n > max_prompt_length for n in lengths), longest=max(lengths, default=0))


def _prompt_tokens(processor, prompt, images) -> int:
    """verl's ``_build_messages``: each ``<image>`` in a string content becomes an image item."""
    messages = [{"role": m["role"], "content": [{"type": "image"} if part == "<image>" else {"type": "text", "text": part}
                                                for part in re.split("(<image>)", m["content"]) if part]}
                for m in prompt]
    pictures = [Image.open(io.BytesIO(i["bytes"])).convert("RGB").resize((i["resized_width"], i["resized_height"]))
                for i in images]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(processor(text=[text], images=pictures or None)["input_ids"][0])


def write_pairs(items: list[Verified], path: Path) -> int:
    """``pairs.jsonl``: each accepted trajectory with a rejected one of the same sample (cycled)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for v in items:
            negatives = v.rejected
            for i, positive in enumerate(v.accepted if negatives else []):
                negative = negatives[i % len(negatives)]
                f.write(json.dumps({"sample_id": v.sample.sample_id, "question": v.sample.question,
                                    "positive": positive.text, "negative": negative.text,
                                    "negative_reason": "; ".join(negative.reasons)}, ensure_ascii=False) + "\n")
                n += 1
    return n


def write_samples(items: list[Verified], path: Path) -> int:
    """``samples.jsonl``: what each sample was asked about, so its trajectories can be shown with it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for v in items:
            s = v.sample
            rois = [{"label": r.label, "kind": r.kind, "text": r.text,
                     "box_2d": list(pixels_to_box_2d(r.box, s.width, s.height)) if r.strong else None}
                    for r in s.record.rois]
            f.write(json.dumps({"sample_id": s.sample_id, "image": s.image, "width": s.width, "height": s.height,
                                "source": s.record.source, "modality": s.record.modality, "task_type": s.task_type,
                                "question": s.question, "options": s.options, "answer": s.answer,
                                "answer_text": s.answer_text, "rois": rois}, ensure_ascii=False) + "\n")
    return len(items)
