"""The trajectory-consistency scorer: an HF backbone plus a scalar head (paper appendix A.4).

A.4 gives the scorer one job: read a whole trajectory and say how well its stages hold together
(conclusions supported by the preceding stages, no cross-stage contradiction). Any HF backbone
loadable with ``AutoModel`` works: a text encoder, a causal LM, or a VLM such as Qwen2.5-VL used on
text only. The backbone's last hidden state is pooled (the last real token by default, which under
causal attention has read the whole sequence) and a linear head turns it into a logit; the score
served to the reward is ``sigmoid(logit)`` in [0, 1].

A checkpoint is a normal HF folder (``save_pretrained`` of backbone and tokenizer) plus
``score_head.safetensors`` and ``consistency_scorer.json``; :meth:`ConsistencyScorer.load` reads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from .pairs import ScoreItem

HEAD_FILE = "score_head.safetensors"
CONFIG_FILE = "consistency_scorer.json"
POOLINGS = ("last", "mean")


@dataclass(frozen=True)
class ScorerConfig:
    """How text reaches the backbone. ``max_length`` covers a question plus a 1,024-token
    trajectory (the paper's generation limit, B.1); truncation keeps the end (conclusion, answer)."""

    max_length: int = 2048
    pooling: str = "last"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")


def scorer_text(item: ScoreItem) -> str:
    """The one input format used in training and serving."""
    return f"Question: {item.question.strip()}\nTrajectory: {item.trajectory.strip()}"


class ConsistencyScorer(nn.Module):
    """Backbone + scalar head; ``forward`` gives logits, :meth:`score` gives probabilities."""

    def __init__(self, backbone: nn.Module, tokenizer: PreTrainedTokenizerBase, config: ScorerConfig = ScorerConfig()):
        super().__init__()
        self.backbone, self.tokenizer, self.config = backbone, tokenizer, config
        tokenizer.padding_side, tokenizer.truncation_side = "right", "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        hidden = backbone.config.get_text_config().hidden_size
        self.head = nn.Linear(hidden, 1, dtype=backbone.dtype)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_backbone(cls, path: str | Path, config: ScorerConfig = ScorerConfig(), dtype: torch.dtype = torch.float32) -> "ConsistencyScorer":
        """A fresh scorer (head at zero) on a pretrained backbone folder."""
        backbone = AutoModel.from_pretrained(path, dtype=dtype)
        return cls(backbone, AutoTokenizer.from_pretrained(path), config)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> "ConsistencyScorer":
        """Load a checkpoint written by :meth:`save`."""
        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a consistency scorer checkpoint (no {CONFIG_FILE})")
        config = ScorerConfig(**json.loads((path / CONFIG_FILE).read_text()))
        scorer = cls.from_backbone(path, config, dtype)
        scorer.head.load_state_dict(load_file(path / HEAD_FILE))
        return scorer.to(device).eval()

    def save(self, path: str | Path) -> Path:
        """Write a normal HF folder (backbone + tokenizer) plus the head and scorer config."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, path / HEAD_FILE)
        (path / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2))
        return path

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def encode(self, items: Sequence[ScoreItem]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            [scorer_text(i) for i in items],
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        return {"input_ids": batch["input_ids"].to(self.device), "attention_mask": batch["attention_mask"].to(self.device)}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``[batch]``."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.pooling == "last":  # right padding: the last real token sits at length - 1
            last = attention_mask.sum(dim=1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return self.head(pooled).squeeze(-1).float()

    def logits(self, items: Sequence[ScoreItem]) -> torch.Tensor:
        return self(**self.encode(items))

    @torch.inference_mode()
    def score(self, items: Sequence[ScoreItem], batch_size: int = 16) -> list[float]:
        """Probabilities in [0, 1], in input order. Items are batched by length to limit padding."""
        order = sorted(range(len(items)), key=lambda i: len(items[i].question) + len(items[i].trajectory))
        scores = [0.0] * len(items)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            probs = torch.sigmoid(self.logits([items[i] for i in chunk])).tolist()
            for i, p in zip(chunk, probs):
                scores[i] = p
        return scores
