"""Exports under ``output_dir``: LLaMA-Factory SFT set, verl RL parquet, scorer pairs (paper A.2, A.4).

* ``sft/``: sharegpt json (``messages`` + ``images`` relative to ``sft/``) and ``dataset_info.json``,
  read by ``llamafactory-cli train`` unchanged (``dataset_dir: <output_dir>/sft``).
* ``rl/train.parquet``, ``rl/val.parquet``: one :class:`RLRow` per sample, balanced by instruction
  type, in the columns verl 0.9.1's ``RLHFDataset`` reads; images embedded as PNG bytes so the files are
  self-contained, each with the size SFT trains on (see :func:`sft_image_size`); ``extra_info``
  carries what the reward and the self-check loop need.
* ``scorer/pairs.jsonl``: each accepted trajectory paired with a rejected one of the same sample.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from medsage.data_gen.instructions import Sample, balance
from medsage.data_gen.prompts import lvkc_instruction
from medsage.data_gen.trajectories import Trajectory
from medsage.plugins.verl.sessions import AGENT_NAME
from medsage.reward_fns.answers import LETTERS
from medsage.reward_fns.scaffold import STAGES, parse, pixels_to_box_2d

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


class StreamedFile:
    """A text file written piece by piece to ``<name>.part`` and renamed into place by :meth:`close`."""

    def __init__(self, path: Path):
        self.path, self._part = path, path.with_name(path.name + ".part")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._part.open("w", encoding="utf-8")

    def write(self, text: str) -> None:
        self._file.write(text)

    def close(self) -> None:
        self._file.close()
        self._part.replace(self.path)


class SftWriter:
    """The LLaMA-Factory sharegpt json, one sample at a time (a JSON array, as LLaMA-Factory reads it)."""

    def __init__(self, sft_dir: Path, name: str, max_per_sample: int, size: int | None = None):
        self.sft_dir, self.name, self.max_per_sample, self.size = sft_dir, name, max_per_sample, size
        self.rows = 0
        self._file = StreamedFile(sft_dir / f"{name}.json")
        self._file.write("[")

    def add(self, v: Verified) -> None:
        room = self.max_per_sample if self.size is None else min(self.max_per_sample, self.size - self.rows)
        for t in v.accepted[: max(room, 0)]:
            row = {"messages": [{"role": "user", "content": user_turn(v.sample)}, {"role": "assistant", "content": t.text}],
                   "images": [v.sample.image]}
            self._file.write(("," if self.rows else "") + "\n" + json.dumps(row, ensure_ascii=False))
            self.rows += 1

    def close(self) -> Path:
        self._file.write("\n]\n")
        self._file.close()
        write_dataset_info(self.sft_dir, self.name)
        return self._file.path


def write_dataset_info(sft_dir: Path, name: str) -> None:
    info = {name: {
        "file_name": f"{name}.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    }}
    (sft_dir / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


@dataclass(frozen=True)
class Candidate:
    """What choosing the RL rows needs of a sample (the rows themselves are built from the store)."""

    sample_id: str
    task_type: str
    group: str


def rl_candidate(v: Verified, max_answer_words: int) -> Candidate | None:
    """A sample fit for an answer reward (a verified trajectory, a short reference answer), or None."""
    if not v.accepted or len(v.sample.answer.split()) > max_answer_words:
        return None
    return Candidate(v.sample.sample_id, v.sample.task_type, v.sample.record.group or v.sample.record.record_id)


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


@dataclass(frozen=True)
class RLImage:
    """One image of an RL row: embedded bytes (portable across Ray nodes), its path in the SFT set,
    and the size SFT trains on (qwen_vl_utils' resize keys; see :func:`sft_image_size`)."""

    bytes: bytes
    path: str
    resized_width: int
    resized_height: int


@dataclass(frozen=True)
class RLExtraInfo:
    """``extra_info`` of an RL row. The reward reads ``options`` and ``question``
    (:func:`medsage.reward_fns.rewards.compute_score`), the self-check loop ``question``, verl
    ``index``; the rest says where the row came from."""

    index: int
    sample_id: str
    answer_type: str  # multiple_choice | yes_no | open
    options: list[str]  # option texts in letter order (A, B, ...); empty when the question has none
    question: str
    task_type: str
    modality: str
    stages: dict[str, str]  # the first accepted trajectory's stage texts, by tag: a reference answer


@dataclass(frozen=True)
class RLRow:
    """One row of ``rl/{train,val}.parquet``, in the columns verl 0.9.1's ``RLHFDataset`` reads;
    ``recipes/rl/README.md`` documents it column by column."""

    data_source: str  # medsage/<source>
    prompt: list[dict[str, str]]  # one user turn: "<image>" + the LVKC instruction
    images: list[RLImage]
    ability: str
    reward_model: dict[str, str]  # {"style": "rule", "ground_truth": <the answer the matcher compares with>}
    extra_info: RLExtraInfo
    agent_name: str  # the agent loop verl runs the row with

    def to_dict(self) -> dict:
        return asdict(self)


def _rl_row(v: Verified, index: int, sft_dir: Path, agent_name: str, image_max_pixels: int) -> RLRow:
    s = v.sample
    reference = parse(v.accepted[0].text)
    width, height = sft_image_size(s.width, s.height, image_max_pixels)
    return RLRow(
        data_source=f"medsage/{s.record.source}",
        prompt=[{"role": "user", "content": user_turn(s)}],
        images=[RLImage((sft_dir / s.image).read_bytes(), s.image, width, height)],
        ability=ABILITY,
        reward_model={"style": "rule", "ground_truth": s.answer},
        extra_info=RLExtraInfo(
            index=index,
            sample_id=s.sample_id,
            answer_type=s.answer_type,
            options=[s.options[k] for k in LETTERS if k in s.options],
            question=s.question,
            task_type=s.task_type,
            modality=s.record.modality,
            stages={tag: reference.get(tag) or "" for tag in STAGES},
        ),
        agent_name=agent_name,
    )


RL_BATCH = 256
_STR = pa.string()
# The parquet schema of :class:`RLRow` (tests check that the two name the same fields).
RL_SCHEMA = pa.schema([
    ("data_source", _STR),
    ("prompt", pa.list_(pa.struct([("role", _STR), ("content", _STR)]))),
    ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", _STR), ("resized_width", pa.int64()),
                                   ("resized_height", pa.int64())]))),
    ("ability", _STR),
    ("reward_model", pa.struct([("style", _STR), ("ground_truth", _STR)])),
    ("extra_info", pa.struct([("index", pa.int64()), ("sample_id", _STR), ("answer_type", _STR),
                              ("options", pa.list_(_STR)), ("question", _STR), ("task_type", _STR), ("modality", _STR),
                              ("stages", pa.struct([(tag, _STR) for tag in STAGES]))])),
    ("agent_name", _STR),
])


def write_rl(candidates: list[Candidate], fetch, rl_dir: Path, sft_dir: Path, size: int, val_fraction: float,
             seed: int, image_max_pixels: int) -> dict[str, int]:
    """Balanced by task type to ``size`` rows, split by group (no image group in both files); images
    at their SFT size for ``image_max_pixels`` (the SFT recipe's). ``fetch(sample_id)`` gives the
    :class:`Verified` sample; rows are built and written :data:`RL_BATCH` at a time."""
    chosen = sorted(balance(candidates, size, seed), key=lambda c: c.sample_id)
    val = _val_groups([c.group for c in chosen], val_fraction)
    rl_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in ("train", "val"):
        agent_name = VAL_AGENT_NAME if split == "val" else AGENT_NAME
        members = [(i, c) for i, c in enumerate(chosen) if (c.group in val) == (split == "val")]
        with pq.ParquetWriter(rl_dir / f"{split}.parquet", RL_SCHEMA) as writer:
            for start in range(0, len(members), RL_BATCH):
                rows = [_rl_row(fetch(c.sample_id), i, sft_dir, agent_name, image_max_pixels).to_dict()
                        for i, c in members[start:start + RL_BATCH]]
                writer.write_table(pa.Table.from_pylist(rows, schema=RL_SCHEMA))
        counts[split] = len(members)
    return counts


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
        _prompt_tokens(processor, row["prompt"], row["images"])
        for split in ("train", "val")
        for batch in pq.ParquetFile(rl_dir / f"{split}.parquet").iter_batches(RL_BATCH, columns=["prompt", "images"])
        for row in batch.to_pylist()
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


class PairsWriter:
    """``pairs.jsonl``: each accepted trajectory with a rejected one of the same sample (cycled)."""

    def __init__(self, path: Path):
        self.rows = 0
        self._file = StreamedFile(path)

    def add(self, v: Verified) -> None:
        negatives = v.rejected
        for i, positive in enumerate(v.accepted if negatives else []):
            negative = negatives[i % len(negatives)]
            self._file.write(json.dumps({"sample_id": v.sample.sample_id, "question": v.sample.question,
                                         "positive": positive.text, "negative": negative.text,
                                         "negative_reason": "; ".join(negative.reasons)}, ensure_ascii=False) + "\n")
            self.rows += 1

    def close(self) -> None:
        self._file.close()


class SamplesWriter:
    """``samples.jsonl``: what each sample was asked about, so its trajectories can be shown with it."""

    def __init__(self, path: Path):
        self.rows = 0
        self._file = StreamedFile(path)

    def add(self, v: Verified) -> None:
        s = v.sample
        rois = [{"label": r.label, "kind": r.kind, "text": r.text,
                 "box_2d": list(pixels_to_box_2d(r.box, s.width, s.height)) if r.strong else None}
                for r in s.record.rois]
        self._file.write(json.dumps({"sample_id": s.sample_id, "image": s.image, "width": s.width, "height": s.height,
                                     "source": s.record.source, "modality": s.record.modality, "task_type": s.task_type,
                                     "question": s.question, "options": s.options, "answer": s.answer,
                                     "answer_text": s.answer_text, "rois": rois}, ensure_ascii=False) + "\n")
        self.rows += 1

    def close(self) -> None:
        self._file.close()
