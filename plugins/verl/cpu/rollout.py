"""The CPU backend's rollout: a Ray actor serving verl's token-in/token-out ``generate`` with
transformers, and the adapter that pushes the actor's weights into it at every weight sync.

verl 0.9.1 generates only through vLLM, SGLang or TensorRT-LLM servers. Its trainer reaches a
server through two seams, both taken here under the rollout name ``hf``:

- ``RolloutReplicaRegistry.register("hf", ...)``: the replica that launches the server actor and
  that the load balancer routes ``generate`` calls to (verl's agent loops call
  ``server.generate.remote(prompt_ids=..., sampling_params=..., image_data=...)``);
- ``verl.workers.rollout.base._ROLLOUT_REGISTRY[("hf", "async")]``: the adapter the hybrid actor
  worker builds; verl hands it the actor's full weights (``update_weights``) after each update.
  That registry is a module dict without a register function, so :func:`register` checks that it
  still exists and fails loudly after a verl upgrade that moves it.

Sleep, wake-up and cache calls are no-ops: the server holds one float32 copy of the model in host
memory and no KV cache between requests.
"""

from __future__ import annotations

import os
from typing import Any, Generator, Optional

import ray
import torch
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry, TokenOutput

from ..hf_backend import HFGenerationBackend

NAME = "hf"


def server_name(replica_rank: int) -> str:
    return f"hf_server_{replica_rank}"


class HFRolloutServer:
    """One rollout server (a Ray actor): verl's server interface over :class:`HFGenerationBackend`."""

    def __init__(self, model_path: str):
        self.backend = HFGenerationBackend(model_path)

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        audio_data: Optional[list[Any]] = None,
        mm_processor_kwargs: Optional[dict[str, Any]] = None,
        priority: int = 0,
    ) -> TokenOutput:
        return await self.backend.generate(
            request_id,
            prompt_ids=prompt_ids,
            sampling_params=sampling_params,
            image_data=image_data,
            video_data=video_data,
            audio_data=audio_data,
            mm_processor_kwargs=mm_processor_kwargs,
        )

    async def update_weights(self, weights: dict[str, torch.Tensor], global_steps: Optional[int]) -> int:
        loaded = self.backend.load_weights(weights)
        if global_steps is not None:
            self.backend.global_steps = global_steps
        return loaded

    async def set_global_steps(self, global_steps: int) -> None:
        self.backend.global_steps = global_steps

    async def abort_all_requests(self, **kwargs: Any) -> dict[str, Any]:
        return {"aborted_count": 0, "request_ids": []}

    async def abort_request(self, request_id: str, **kwargs: Any) -> dict[str, Any]:
        return {"aborted": False, "request_id": request_id}

    async def _nothing(self, *args: Any, **kwargs: Any) -> None:
        return None

    wake_up = sleep = clear_kv_cache = release_kv_cache = resume_kv_cache = _nothing
    wait_for_requests_to_drain = resume_generation = resume_engine_generation = open_submission_gate = _nothing
    start_profile = stop_profile = _nothing


class HFReplica(RolloutReplica):
    """A rollout replica of one :class:`HFRolloutServer` beside the hybrid actor workers."""

    async def launch_servers(self) -> None:
        name = server_name(self.replica_rank) + self.name_suffix
        server = (
            ray.remote(HFRolloutServer)
            .options(name=name, max_concurrency=self.max_concurrency, num_cpus=0)
            .remote(self.model_config.path)
        )
        self.servers = [server]
        self._server_handle = server
        self._server_address = name  # the load balancer's key; there is no HTTP endpoint


class HFServerAdapter(BaseRollout):
    """Built by verl's hybrid worker: sends the actor's weights to this rank's replica server."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ["RANK"])
        per_replica = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // per_replica if replica_rank == -1 else replica_rank
        self.is_leader = rank % per_replica == 0
        self._server: Optional[ray.actor.ActorHandle] = None

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        global_steps: Optional[int] = None,
        wire_format: str = "named_tensors",
        **kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors":
            raise ValueError(f"the hf rollout takes full weights (wire_format='named_tensors'), got {wire_format!r}")
        # Every rank consumes the generator: gathering a sharded parameter is collective.
        state = {name: tensor.detach().to("cpu", copy=True) for name, tensor in weights}
        if self.is_leader:
            if self._server is None:
                self._server = ray.get_actor(server_name(self.replica_rank))
            await self._server.update_weights.remote(state, global_steps)

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None


def register() -> None:
    """Make ``actor_rollout_ref.rollout.name=hf`` resolve to this replica and adapter."""
    registry = getattr(rollout_base, "_ROLLOUT_REGISTRY", None)
    if not isinstance(registry, dict) or ("vllm", "async") not in registry:
        raise RuntimeError(
            "verl.workers.rollout.base._ROLLOUT_REGISTRY (a dict keyed by (name, mode)) is gone or changed; "
            "the CPU backend's rollout adapter needs a new hook for this verl version"
        )
    registry[(NAME, "async")] = f"{HFServerAdapter.__module__}.{HFServerAdapter.__qualname__}"
    RolloutReplicaRegistry.register(NAME, lambda: HFReplica)
