"""Predictions, written incrementally as JSONL and resumed after a crash.

Each chunk of questions is generated, then appended (flushed and fsynced) before the next chunk
starts, so a killed run loses at most the chunk in flight. On restart the file is read back, a
torn last line (the write the crash interrupted) is cut off, and only the missing ids are
generated. Every record carries the ``run_key`` of the setup that produced it (model, backend,
prompt, self-check, decoding), and resuming under a different setup is refused rather than mixing
two models' answers in one table.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from .backends import Backend, GenerationParams
from .benchmarks import Item
from .prompts import Turn, first_turn


@dataclass(frozen=True)
class Prediction:
    """The model's turns for one question: ``[answer]``, or ``[first, self-check, retry]``."""

    id: str
    benchmark: str
    run_key: str
    responses: tuple[str, ...]

    @property
    def final(self) -> str:
        return self.responses[-1]

    @property
    def first(self) -> str:
        return self.responses[0]


def checkpoint_fingerprint(model: str) -> str:
    """Names, sizes and modification times of a local checkpoint's weight files ("" for a hub id or
    a served model): retraining into the same folder changes the run key, so predictions of the
    old weights are never resumed as if they were the new model's."""
    folder = Path(model)
    if not folder.is_dir():
        return ""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))
    stamp = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    return hashlib.sha256(stamp.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PredictSetup:
    """Everything that decides a prediction; its hash is the ``run_key``."""

    model: str
    backend: str
    prompt_style: str = "lvkc"
    params: GenerationParams = GenerationParams()
    # (self-check instruction, retry instruction) to review and retry every answer; () = answer once
    self_check_turns: tuple[str, ...] = ()
    # which weights sit at ``model`` when it is a local folder (see checkpoint_fingerprint)
    checkpoint: str = ""

    @property
    def run_key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class PredictionStore:
    """An append-only JSONL file of :class:`Prediction` records for one benchmark."""

    def __init__(self, path: Path, run_key: str):
        self.path = path
        self.run_key = run_key

    def load(self) -> dict[str, Prediction]:
        """Records already written; a torn final line is truncated away, other damage is an error."""
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        keep = raw if raw.endswith(b"\n") or not raw else raw[: raw.rfind(b"\n") + 1]
        if len(keep) != len(raw):
            with self.path.open("r+b") as f:
                f.truncate(len(keep))
        done: dict[str, Prediction] = {}
        for line_no, line in enumerate(keep.decode("utf-8").splitlines(), 1):
            try:
                rec = json.loads(line)
                pred = Prediction(rec["id"], rec["benchmark"], rec["run_key"], tuple(rec["responses"]))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{self.path}, line {line_no}: not a prediction record ({err})") from err
            if pred.run_key != self.run_key:
                raise ValueError(
                    f"{self.path}, line {line_no}: made by another setup (run_key {pred.run_key}, now {self.run_key}); "
                    "use a fresh output_dir or delete the file"
                )
            done[pred.id] = pred
        return done

    def append(self, predictions: Sequence[Prediction]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in predictions)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())


def generate_chunk(items: Sequence[Item], backend: Backend, setup: PredictSetup) -> list[Prediction]:
    """Answer a chunk; with self-check turns, review and retry every answer (batched per turn)."""
    conversations = [first_turn(item, setup.prompt_style) for item in items]
    turns: list[list[str]] = [[] for _ in items]
    for follow_up in (None, *setup.self_check_turns):
        if follow_up is not None:
            conversations = [c + [Turn("assistant", t[-1]), Turn("user", follow_up)] for c, t in zip(conversations, turns)]
        for texts, reply in zip(turns, backend.generate(conversations, setup.params)):
            texts.append(reply)
    return [Prediction(item.id, item.benchmark, setup.run_key, tuple(t)) for item, t in zip(items, turns)]


def predict(
    items: Sequence[Item], backend: Backend, setup: PredictSetup, store: PredictionStore, chunk_size: int = 64
) -> list[Prediction]:
    """Predictions for all ``items`` in their order, generating only those the store lacks."""
    done = store.load()
    todo = [item for item in items if item.id not in done]
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=f"predict {items[0].benchmark}" if items else "predict")
    for start in range(0, len(todo), chunk_size):
        chunk = generate_chunk(todo[start : start + chunk_size], backend, setup)
        store.append(chunk)
        done.update((p.id, p) for p in chunk)
        bar.update(len(chunk))
    bar.close()
    return [done[item.id] for item in items]
