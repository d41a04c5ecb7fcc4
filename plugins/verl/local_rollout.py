"""R-GRPO rollouts on one machine without vLLM: the self-check loop over a Hugging Face model.

Why: before spending GPU hours a user wants to see the method's moving parts act on their own
data: verl's ``RLHFDataset`` reading the RL parquet, the self-check agent loop deciding to retry,
the rewards, and the masked advantage of paper eqs. 10-12. This drives exactly those pieces
(verl's dataset class, :class:`SelfCheckAgentLoop`, :func:`advantages_from_sessions`,
:func:`self_check_metrics`) with :class:`HFGenerationBackend` standing in for vLLM. It does not
update the policy; on a cluster verl's trainer does that (``medsage-rgrpo``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from transformers import AutoProcessor
from verl.experimental.agent_loop.agent_loop import DictConfigWrap
from verl.utils.dataset.rl_dataset import RLHFDataset

from medsage.plugins.verl.advantage import advantages_from_sessions
from medsage.plugins.verl.agent_loop import SelfCheckAgentLoop
from medsage.plugins.verl.hf_backend import HFGenerationBackend
from medsage.plugins.verl.metrics import self_check_metrics
from medsage.plugins.verl.settings import RGRPOSettings

CONFIG_DIR = Path(__file__).resolve().parent / "config"


@dataclass(frozen=True)
class SessionRecord:
    """One rollout session, flattened for reports."""

    uid: str
    ground_truth: str
    response: str
    first_correct: bool
    final_correct: bool
    self_checked: bool
    r_sc: float
    score: float
    advantage_sum: float


@dataclass(frozen=True)
class LocalRollout:
    sessions: tuple[SessionRecord, ...]
    metrics: dict[str, float]


def self_check_loop(config: DictConfig, server_manager: Any, processor: Any) -> SelfCheckAgentLoop:
    """The loop as verl's ``AgentLoopWorker`` builds it; call inside the running event loop."""
    return SelfCheckAgentLoop(
        trainer_config=DictConfigWrap(config),
        server_manager=server_manager,
        tokenizer=processor.tokenizer,
        processor=processor,
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data),
        hf_model_type="qwen2_5_vl",
    )


def compose_config(model_path: str | Path, repo_root: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The R-GRPO trainer config as ``medsage-rgrpo`` composes it, pointed at local files."""
    root = Path(repo_root).resolve()
    base = [
        f"actor_rollout_ref.model.path={Path(model_path).resolve()}",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={root / 'recipes/rl/agent_loops.yaml'}",
        f"medsage.self_check_template={root / 'recipes/rl/templates/self_check.jinja'}",
        f"medsage.retry_template={root / 'recipes/rl/templates/retry.jinja'}",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("rgrpo", overrides=base + list(overrides))


def run_local_rollouts(
    config: DictConfig, parquet: str | Path, *, prompts: int, sessions_per_prompt: int, temperature: float = 1.0
) -> LocalRollout:
    """Run ``sessions_per_prompt`` concurrent self-check sessions on the first ``prompts`` rows."""
    processor = AutoProcessor.from_pretrained(config.actor_rollout_ref.model.path)
    dataset = RLHFDataset(str(parquet), processor.tokenizer, config.data, processor=processor)
    rows = [dataset[i] for i in range(min(prompts, len(dataset)))]
    if not rows:
        raise ValueError(f"{parquet}: no RL rows to roll out")
    backend = HFGenerationBackend(config.actor_rollout_ref.model.path)
    params = {"temperature": temperature, "top_p": 1.0, "top_k": -1, "logprobs": False}

    async def session(row: dict[str, Any]):
        return await self_check_loop(config, backend, processor).run(params, **row)

    async def all_sessions():
        return await asyncio.gather(*(session(row) for row in rows for _ in range(sessions_per_prompt)))

    outputs = asyncio.run(all_sessions())
    uids = [str(i) for i in range(len(rows)) for _ in range(sessions_per_prompt)]
    truths = [str(row["reward_model"]["ground_truth"]) for row in rows for _ in range(sessions_per_prompt)]
    return _summarise(outputs, uids, truths, processor.tokenizer, RGRPOSettings.from_config(config).alpha)


def _summarise(outputs: list, uids: list[str], truths: list[str], tokenizer, alpha: float) -> LocalRollout:
    width = max(len(o.response_ids) for o in outputs)
    response_mask = torch.zeros(len(outputs), width)
    token_scores = torch.zeros(len(outputs), width)
    for i, out in enumerate(outputs):
        n = len(out.response_ids)
        response_mask[i, :n] = torch.tensor(out.response_mask, dtype=torch.float32)
        token_scores[i, n - 1] = float(out.reward_score)  # verl puts the sequence reward on the last token
    extras = [o.extra_fields for o in outputs]
    advantages = advantages_from_sessions(token_scores, response_mask, np.array(uids, dtype=object), extras, alpha=alpha)
    sessions = tuple(
        SessionRecord(
            uid=uid,
            ground_truth=truth,
            response=tokenizer.decode(out.response_ids, skip_special_tokens=False),
            first_correct=bool(e["first_correct"]),
            final_correct=bool(e["final_correct"]),
            self_checked=bool(e["self_checked"]),
            r_sc=float(e["r_sc"]),
            score=float(out.reward_score),
            advantage_sum=float(advantages[i].sum()),
        )
        for i, (uid, truth, out, e) in enumerate(zip(uids, truths, outputs, extras))
    )
    lengths = [int(sum(o.response_mask)) for o in outputs]
    return LocalRollout(sessions=sessions, metrics=self_check_metrics(extras, lengths))
