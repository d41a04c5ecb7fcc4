"""Keep the vision tower frozen during R-GRPO (paper appendix B.1: "we optimize all parameters of the
language model while keeping the vision encoder frozen throughout RL training").

verl 0.9.1 declares ``actor.freeze_vision_tower`` but nothing reads it. The actor's model is built
inside ``ActorRolloutRefWorker.init_model`` by its ``actor_worker_cls`` (a ``TrainingWorker``), so the
R-GRPO worker (``worker.py``) builds its actor with :class:`FrozenVisionTrainingWorker`, which freezes
the tower right after the engine is built. Under FSDP2 a parameter with ``requires_grad=False`` gets no gradient and no
reduce-scatter, and the optimizer skips parameters without gradients, so the tower stays bit-exact.
(FSDP1 flattens parameters and cannot freeze part of a unit after wrapping, hence ``strategy: fsdp2``.)
"""

from __future__ import annotations

from torch import nn
from verl.single_controller.base.decorator import Dispatch, register
from verl.workers.engine_workers import TrainingWorker

# Attribute names of the vision encoder in the HF VLM classes (Qwen2/2.5/3-VL: ``visual``).
VISION_TOWER_NAMES: tuple[str, ...] = ("visual", "vision_tower", "vision_model")


def vision_tower(model: nn.Module) -> nn.Module:
    """The model's vision encoder (with its patch merger); the outermost match wins."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in VISION_TOWER_NAMES:
            return module
    raise ValueError(f"{type(model).__name__} has no vision tower named any of {VISION_TOWER_NAMES}")


def freeze_vision_tower(model: nn.Module) -> int:
    """Stop gradients into the vision tower; returns the number of parameters frozen."""
    params = list(vision_tower(model).parameters())
    for param in params:
        param.requires_grad_(False)
    return sum(p.numel() for p in params)


class FrozenVisionTrainingWorker(TrainingWorker):
    """verl's TrainingWorker whose model has its vision tower frozen once the engine is built."""

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def reset(self):
        super().reset()
        frozen = freeze_vision_tower(self.engine.module)
        print(f"[medsage] vision tower frozen: {frozen} parameters")
