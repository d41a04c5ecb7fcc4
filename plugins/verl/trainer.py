"""The R-GRPO trainer: verl's synchronous v1 PPO trainer with the R-GRPO advantage step and a frozen
vision tower (paper section 3.3 and appendix B.1).

verl's ``PPOTrainer._compute_advantage`` reads only ``uid``, ``response_mask``, ``rm_scores`` and
log-prob fields, so the self-check masks the agent loop writes into ``extra_fields`` would never
reach the advantage. This subclass overrides that one step (same fields, same KL-in-reward and
rollout-correction helpers from verl, then :func:`advantages_from_sessions` instead of verl's GRPO)
and hands verl the R-GRPO worker (frozen vision tower; gloo on the CPU backend). It registers itself
in verl's ``TRAINER_REGISTRY`` as ``rgrpo`` and then runs with the ``sync`` trainer's semantics.

Only verl's task runner needs this module: :class:`RGRPOTaskRunner` imports it there, and Ray
workers import the worker and agent-loop modules they are handed, so no process imports more
than it uses.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import ray
import transfer_queue as tq
from omegaconf import DictConfig, open_dict
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.protocol import DataProto
from verl.trainer.ppo.ray_trainer import apply_kl_penalty
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch
from verl.trainer.ppo.utils import Role
from verl.trainer.main_ppo import TaskRunnerV1
from verl.trainer.ppo.v1 import PPOTrainerSync, register_trainer
from verl.workers.utils.padding import response_to_nested

from . import agent_loop  # noqa: F401  (registers the agent loop wherever the trainer is imported)
from .advantage import advantages_from_sessions, session_masks
from .metrics import PREFIX, effective_group_rate, self_check_metrics
from .sessions import SessionRecord, read_outcomes, session_spans, write_step
from .settings import RGRPOSettings
from .worker import RGRPOWorker

TRAINER_MODE = "rgrpo"
_ACTOR_ROLES = (Role.ActorRollout, Role.ActorRolloutRef, Role.Actor)
_ADVANTAGE_FIELDS = ["uid", "response_mask", "rm_scores", "rollout_log_probs", "old_log_probs", "ref_log_prob"]
_RECORD_FIELDS = ["responses"]
REPLAY_POLL_S = 0.2


@register_trainer(TRAINER_MODE)
class RGRPOTrainer(PPOTrainerSync):
    """Synchronous PPO trainer with the R-GRPO advantage (eqs. 10-12)."""

    def __init__(self, config: DictConfig):
        self.settings = RGRPOSettings.from_config(config)
        # verl keys replay-buffer and submission behaviour on the mode's name; R-GRPO is "sync".
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config)

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        for role in _ACTOR_ROLES:
            if role in self.role_worker_mapping:
                self.role_worker_mapping[role] = ray.remote(RGRPOWorker)

    def _build_replay_buffer(self):
        """verl's buffer, polled every 0.2 s instead of its fixed 2 s: every step waits for the rollout's
        last group up to one poll interval, which is noise on a cluster but a tenth of a CPU step."""
        buffer = super()._build_replay_buffer()
        buffer.poll_interval = REPLAY_POLL_S
        return buffer

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        record = self.settings.sessions_dir is not None
        data = tq.kv_batch_get(
            keys=batch.keys,
            partition_id=batch.partition_id,
            select_fields=_ADVANTAGE_FIELDS + ["extra_fields"] + (_RECORD_FIELDS if record else []),
        )
        nested_response_mask = data["response_mask"]
        sessions = data.pop("extra_fields").tolist()
        tokens = {f: [row.tolist() for row in data.pop(f).unbind()] for f in _RECORD_FIELDS} if record else {}
        data = DataProto(batch=data.to_padded_tensor())
        data.batch["token_level_scores"] = data.batch["rm_scores"]
        data.non_tensor_batch["uid"] = np.array(data.batch.pop("uid").tolist(), dtype=object)

        algorithm = self.config.algorithm
        if algorithm.use_kl_in_reward:
            data, kl_metrics = apply_kl_penalty(data, kl_ctrl=self.kl_ctrl_in_reward, kl_penalty=algorithm.kl_penalty)
            metrics.update(kl_metrics)
        else:
            data.batch["token_level_rewards"] = data.batch["token_level_scores"]
        data, rollout_correction = self._rollout_correction(data, metrics)

        advantages = advantages_from_sessions(
            data.batch["token_level_rewards"],
            data.batch["response_mask"],
            data.non_tensor_batch["uid"],
            sessions,
            alpha=self.settings.alpha,
            norm_adv_by_std=algorithm.get("norm_adv_by_std_in_grpo", True),
        )
        data.batch["advantages"] = data.batch["returns"] = advantages
        real = [i for i, tag in enumerate(batch.tags) if not tag.get("is_padding", False)]
        self._log_metrics(real, sessions, data, metrics)
        if record:
            self._record_sessions(real, sessions, data, tokens)

        fields = ["advantages", "returns"]
        if algorithm.use_kl_in_reward:
            fields.append("token_level_rewards")
        if rollout_correction:
            fields += ["response_mask"] + (["rollout_is_weights"] if "rollout_is_weights" in data.batch else [])
        output = TensorDict(
            {f: response_to_nested(data.batch[f], nested_response_mask) for f in fields}, batch_size=len(batch)
        )
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=output)

    def _rollout_correction(self, data: DataProto, metrics: dict) -> tuple[DataProto, bool]:
        """verl's decoupled-mode rollout correction, applied under the same conditions as verl's trainer."""
        config = self.config.algorithm.get("rollout_correction", None)
        bypass = config and config.get("bypass_mode", False)
        if config is None or "rollout_log_probs" not in data.batch or bypass:
            return data, False
        data, is_metrics = compute_rollout_correction_and_add_to_batch(data, config)
        metrics.update(is_metrics)
        return data, True

    @staticmethod
    def _log_metrics(real: list[int], sessions: list[dict], data: DataProto, metrics: dict) -> None:
        lengths = data.batch["response_mask"].sum(dim=-1).tolist()
        metrics.update(self_check_metrics([sessions[i] for i in real], [lengths[i] for i in real]))
        scores = data.batch["token_level_scores"].sum(dim=-1).tolist()
        uids = data.non_tensor_batch["uid"]
        metrics[f"{PREFIX}/effective_group_rate"] = effective_group_rate([scores[i] for i in real], [uids[i] for i in real])

    def _record_sessions(self, real: list[int], sessions: list[dict], data: DataProto, tokens: dict) -> None:
        outcome, check, _ = session_masks(sessions, data.batch["response_mask"])
        decode = partial(self.tokenizer.decode, skip_special_tokens=False)
        records = []
        for i, session in zip(real, read_outcomes([sessions[i] for i in real])):
            length = len(tokens["responses"][i])
            spans = session_spans(
                tokens["responses"][i],
                data.batch["response_mask"][i, :length].tolist(),
                outcome[i, :length].tolist(),
                check[i, :length].tolist(),
                data.batch["advantages"][i, :length].tolist(),
                session.retried,
                decode,
            )
            records.append(
                SessionRecord(
                    step=self.global_steps,
                    uid=str(data.non_tensor_batch["uid"][i]),
                    question=session.question,
                    ground_truth=session.ground_truth,
                    reward=float(data.batch["token_level_scores"][i].sum()),
                    r_sc=session.r_sc,
                    first_correct=session.first_correct,
                    final_correct=session.final_correct,
                    stop_reason=str(session.stop_reason),
                    reward_parts=dict(session.reward_parts),
                    spans=spans,
                )
            )
        write_step(self.settings.sessions_dir, self.global_steps, records)


@ray.remote
class RGRPOTaskRunner(TaskRunnerV1.__ray_actor_class__):
    """verl's v1 task runner, with the ``rgrpo`` trainer registered in its process first."""

    def run(self, config: DictConfig):
        # Ray ships an actor class by value, so the import runs here, in the task runner's process.
        import medsage.plugins.verl.trainer  # noqa: F401

        return super().run(config)
