"""verl's FSDP2 engine on the CPU platform, and the gloo process group it needs.

verl registers its FSDP engine for ``cuda`` and ``npu`` only (``EngineRegistry.register`` in
``verl/workers/engine/fsdp/transformer_impl.py``); the same engine runs on a CPU with two changes,
made here by subclassing and registering for ``cpu``:

- a forward-only (reference) engine under FSDP2 is built without verl's forced
  ``CPUOffloadPolicy(pin_memory=True)``: pinned memory needs an accelerator driver, and on a CPU the
  parameters already live in host memory;
- the process group is gloo alone. verl asks for ``"cpu:gloo,<device>:<backend>"``, which on the CPU
  platform names ``cpu`` twice and torch rejects; verl skips its own initialisation when a group
  exists, so :func:`open_gloo_group` opens one first.
"""

from __future__ import annotations

import os

import torch.distributed as dist
from verl.workers.engine import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from .platform import PLATFORM


@EngineRegistry.register(model_type="language_model", backend="fsdp2", device=PLATFORM)
class CPUFSDPEngineWithLMHead(FSDPEngineWithLMHead):
    """verl's FSDP engine for causal and vision-language models, on host memory."""

    def _build_fsdp_module(self, module):
        if not self.engine_config.forward_only:
            return super()._build_fsdp_module(module)
        # forward_only selects the offload policy only in this method; the engine reads it elsewhere.
        self.engine_config.forward_only = False
        try:
            return super()._build_fsdp_module(module)
        finally:
            self.engine_config.forward_only = True


def open_gloo_group() -> None:
    """Open this Ray worker's process group over gloo, from the env verl's worker group sets."""
    if not dist.is_initialized():
        dist.init_process_group(
            backend="gloo", rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1))
        )
