"""Contrastive training of the trajectory-consistency scorer (paper appendix A.4).

A.4: "This scoring model is trained using contrastive learning, where positive samples consist of
high-quality reasoning trajectories that have passed prior consistency checks ..., and negative
samples are drawn from low-quality trajectories that were filtered out". Each training group is one
positive with all of its negatives (data_gen's filtered ones plus the synthetic corruptions of
:mod:`corruptions`); the loss is InfoNCE over the group (pairwise logistic when a group has one
negative), plus a small class-balanced binary term that anchors ``sigmoid(logit)`` around 0.5 so
the served score is usable as an absolute reward.

Held-out groups (a stable split by sample id) are scored after training; AUC, accuracy at 0.5 and
pairwise accuracy are reported per negative kind in ``eval.json``. Training checkpoints to
``output_dir/last`` every ``save_every`` steps and resumes from there; the final scorer is written
to ``output_dir`` as a normal HF folder.

Usage: ``medsage-scorer-train recipes/scorer/train.yaml [a.b=value ...]``.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from tqdm import tqdm

from medsage.config import bounded

from .corruptions import CORRUPTION_KINDS, CORRUPTIONS, add_corruptions
from .model import POOLINGS, ConsistencyScorer, ScorerConfig
from .pairs import Group, ScoreItem, group_pairs, is_held_out, read_pairs

STATE_FILE = "trainer_state.pt"
EVAL_FILE = "eval.json"


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; a recipe YAML sets these by name (read by :mod:`medsage.config`)."""

    backbone: str
    output_dir: str
    pairs: tuple[str, ...]  # data_gen's <output_dir>/scorer/pairs.jsonl files
    corruptions: tuple[str, ...] = CORRUPTION_KINDS
    eval_fraction: float = bounded(0.1, ge=0, le=0.5)
    max_length: int = bounded(2048, ge=16)
    pooling: str = "last"
    batch_size: int = bounded(8, ge=1)
    micro_batch_size: int = bounded(2, ge=1)
    learning_rate: float = bounded(1e-5, gt=0)
    weight_decay: float = bounded(0.0, ge=0)
    warmup_steps: int = bounded(20, ge=0)
    epochs: int = bounded(1, ge=1)
    max_steps: int | None = bounded(None, ge=1)
    calibration_weight: float = bounded(0.1, ge=0)
    grad_clip: float = bounded(1.0, gt=0)
    gradient_checkpointing: bool = False
    save_every: int = bounded(200, ge=1)
    score_batch_size: int = bounded(32, ge=1)
    seed: int = 0
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def __post_init__(self) -> None:
        if not self.pairs:
            raise ValueError("pairs: expected at least one pairs.jsonl (medsage-data writes <output_dir>/scorer/pairs.jsonl)")
        # the pooling and corruption modules own their choices
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {', '.join(map(repr, POOLINGS))}, got {self.pooling!r}")
        unknown = [k for k in self.corruptions if k not in CORRUPTIONS]
        if unknown:
            raise ValueError(f"corruptions: unknown kind(s) {unknown}; valid: {', '.join(CORRUPTION_KINDS)}")


@dataclass(frozen=True)
class KindMetrics:
    """Held-out separation of positives from the negatives of one kind."""

    negatives: int
    auc: float
    accuracy: float
    pairwise_accuracy: float


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    if not positives or not negatives:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def split_groups(config: TrainConfig) -> tuple[list[Group], list[Group]]:
    """data_gen's pairs plus synthetic corruptions, split into (train, held out) by sample id."""
    groups = group_pairs([p for path in config.pairs for p in read_pairs(path)])
    if not groups:
        raise ValueError(f"no training pairs in {config.pairs}")
    add_corruptions(groups, config.corruptions, seed=config.seed)
    groups = [g for g in groups if g.negatives]
    train = [g for g in groups if not is_held_out(g.sample_id, config.eval_fraction)]
    held_out = [g for g in groups if is_held_out(g.sample_id, config.eval_fraction)]
    if not train:
        raise ValueError(f"every sample of {config.pairs} fell into the held-out split; lower eval_fraction")
    return train, held_out


def group_loss(scorer: ConsistencyScorer, groups: Sequence[Group], calibration_weight: float) -> torch.Tensor:
    """InfoNCE with the positive at index 0 of each group, plus the balanced binary anchor."""
    items = [ScoreItem(g.question, t) for g in groups for t in [g.positive, *(n.text for n in g.negatives)]]
    logits = scorer.logits(items)
    sizes = [1 + len(g.negatives) for g in groups]
    losses = []
    for chunk in torch.split(logits, sizes):
        contrastive = F.cross_entropy(chunk.unsqueeze(0), torch.zeros(1, dtype=torch.long, device=chunk.device))
        binary = F.softplus(-chunk[0]) + F.softplus(chunk[1:]).mean()
        losses.append(contrastive + calibration_weight * binary)
    return torch.stack(losses).mean()


def evaluate(scorer: ConsistencyScorer, groups: Sequence[Group], batch_size: int = 32) -> dict[str, KindMetrics]:
    """Per-kind metrics on held-out groups, plus ``all`` over every negative."""
    texts = [(g, t) for g in groups for t in [g.positive, *(n.text for n in g.negatives)]]
    scores = iter(scorer.score([ScoreItem(g.question, t) for g, t in texts], batch_size))
    by_kind: dict[str, list[tuple[float, float]]] = {}
    positives = []
    for g in groups:
        pos = next(scores)
        positives.append(pos)
        for n in g.negatives:
            neg = next(scores)
            by_kind.setdefault(n.kind, []).append((pos, neg))
            by_kind.setdefault("all", []).append((pos, neg))
    return {kind: _metrics(positives, pairs) for kind, pairs in sorted(by_kind.items())}


def _metrics(positives: list[float], pairs: list[tuple[float, float]]) -> KindMetrics:
    negatives = [n for _, n in pairs]
    correct = sum(p > 0.5 for p in positives) / len(positives) + sum(n <= 0.5 for n in negatives) / len(negatives)
    return KindMetrics(
        negatives=len(negatives),
        auc=auc(positives, negatives),
        accuracy=correct / 2,  # balanced: positives and negatives weigh the same
        pairwise_accuracy=sum(p > n for p, n in pairs) / len(pairs),
    )


def _device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def _save_state(scorer: ConsistencyScorer, optimizer: torch.optim.Optimizer, step: int, last: Path) -> None:
    """Write the resumable state beside a complete scorer checkpoint, swapping it in atomically."""
    tmp = last.with_name(last.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    scorer.save(tmp)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}, tmp / STATE_FILE)
    shutil.rmtree(last, ignore_errors=True)
    tmp.rename(last)


def train(config: TrainConfig) -> dict[str, KindMetrics]:
    """Train (or resume), save the scorer to ``output_dir`` and return held-out metrics."""
    out, device = Path(config.output_dir), _device(config.device)
    dtype = getattr(torch, config.dtype)
    last = out / "last"
    train_groups, held_out = split_groups(config)
    resuming = (last / STATE_FILE).is_file()
    if resuming:
        scorer = ConsistencyScorer.load(last, device, dtype)
    else:
        scorer = ConsistencyScorer.from_backbone(config.backbone, ScorerConfig(config.max_length, config.pooling), dtype)
        scorer.to(device)
    if config.gradient_checkpointing:
        scorer.backbone.gradient_checkpointing_enable()
    scorer.train()
    params = [p for p in scorer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    step = 0
    if resuming:
        state = torch.load(last / STATE_FILE, map_location=device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step = state["step"]
    else:
        torch.manual_seed(config.seed)
    steps_per_epoch = -(-len(train_groups) // config.batch_size)
    total = config.max_steps if config.max_steps is not None else config.epochs * steps_per_epoch
    bar = tqdm(total=total, initial=step, desc="scorer", unit="step")
    while step < total:
        batch = _batch(train_groups, step, steps_per_epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * min(1.0, (step + 1) / max(1, config.warmup_steps))
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for start in range(0, len(batch), config.micro_batch_size):
            micro = batch[start : start + config.micro_batch_size]
            loss = group_loss(scorer, micro, config.calibration_weight) * len(micro) / len(batch)
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.4f}")
        if step % config.save_every == 0 or step == total:
            _save_state(scorer, optimizer, step, last)
    bar.close()
    scorer.eval()
    scorer.save(out)
    metrics = evaluate(scorer, held_out, config.score_batch_size) if held_out else {}
    (out / EVAL_FILE).write_text(json.dumps({k: asdict(m) for k, m in metrics.items()}, indent=2))
    return metrics


def _batch(groups: list[Group], step: int, steps_per_epoch: int, config: TrainConfig) -> list[Group]:
    """The groups of global ``step``: a per-epoch permutation fixed by the seed, so resuming replays it."""
    epoch, index = divmod(step, steps_per_epoch)
    order = list(range(len(groups)))
    random.Random(config.seed * 100_003 + epoch).shuffle(order)
    return [groups[i] for i in order[index * config.batch_size : (index + 1) * config.batch_size]]


def format_metrics(metrics: dict[str, KindMetrics]) -> str:
    """A plain table of held-out metrics, one row per negative kind."""
    rows = [f"{'kind':<22}{'negatives':>10}{'auc':>8}{'acc':>8}{'pair_acc':>10}"]
    rows += [f"{k:<22}{m.negatives:>10}{m.auc:>8.3f}{m.accuracy:>8.3f}{m.pairwise_accuracy:>10.3f}" for k, m in metrics.items()]
    return "\n".join(rows)
