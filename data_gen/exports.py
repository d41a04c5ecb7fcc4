"""Exports under ``output_dir``: LLaMA-Factory SFT set, verl RL parquet, scorer pairs (paper A.2, A.4).

* ``sft/``: sharegpt json (``messages`` + ``images`` relative to ``sft/``) and ``dataset_info.json``,
  read by ``llamafactory-cli train`` unchanged (``dataset_dir: <output_dir>/sft``).
* ``rl/train.parquet``, ``rl/val.parquet``: one row per sample, balanced by instruction type, in
  the columns verl 0.9.1's ``RLHFDataset`` reads; images embedded as PNG bytes so the files are
  self-contained; ``extra_info`` carries what the reward and the self-check loop need.
* ``scorer/pairs.jsonl``: each accepted trajectory paired with a rejected one of the same sample.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medsage.data_gen.instructions import Sample, balance
from medsage.data_gen.prompts import lvkc_instruction
from medsage.data_gen.trajectories import Trajectory
from medsage.reward_fns.answers import LETTERS
from medsage.reward_fns.scaffold import STAGES, parse

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


def _rl_row(v: Verified, index: int, sft_dir: Path, agent_name: str) -> dict:
    s = v.sample
    reference = parse(v.accepted[0].text)
    return {
        "data_source": f"medsage/{s.record.source}",
        "prompt": [{"role": "user", "content": user_turn(s)}],
        "images": [{"bytes": (sft_dir / s.image).read_bytes(), "path": s.image}],
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
             max_answer_words: int, seed: int) -> dict[str, int]:
    """Balanced by task type to ``size`` rows, split by group (no image group in both files)."""
    by_id = {v.sample.sample_id: v for v in items}
    chosen = balance([v.sample for v in rl_candidates(items, max_answer_words)], size, seed)
    chosen.sort(key=lambda s: s.sample_id)
    val = _val_groups([s.record.group or s.record.record_id for s in chosen], val_fraction)
    rows: dict[str, list[dict]] = {"train": [], "val": []}
    for i, s in enumerate(chosen):
        split = "val" if (s.record.group or s.record.record_id) in val else "train"
        rows[split].append(_rl_row(by_id[s.sample_id], i, sft_dir, VAL_AGENT_NAME if split == "val" else AGENT_NAME))
    rl_dir.mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        pd.DataFrame(split_rows, columns=list(_COLUMNS)).to_parquet(rl_dir / f"{split}.parquet", index=False)
    return {split: len(r) for split, r in rows.items()}


_COLUMNS = ("data_source", "prompt", "images", "ability", "reward_model", "extra_info", "agent_name")


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
