"""The hybrid actor/rollout/reference worker the R-GRPO trainer hands verl.

verl's own ``ActorRolloutRefWorker`` with two additions, each chosen by the config:

- ``actor_rollout_ref.actor.freeze_vision_tower``: the actor is built by
  :class:`~medsage.plugins.verl.vision.FrozenVisionTrainingWorker` (paper appendix B.1);
- ``trainer.device=cpu``: a gloo process group is opened before verl's engines look for one
  (:func:`medsage.plugins.verl.cpu.engine.open_gloo_group`).
"""

from __future__ import annotations

from verl.single_controller.base.decorator import Dispatch, register
from verl.utils.device import get_device_name
from verl.workers.engine_workers import ActorRolloutRefWorker

from .vision import FrozenVisionTrainingWorker


class RGRPOWorker(ActorRolloutRefWorker):
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self):
        if get_device_name() == "cpu":
            from .cpu.engine import open_gloo_group

            open_gloo_group()
        if self.config.actor.freeze_vision_tower:
            self.actor_worker_cls = FrozenVisionTrainingWorker
        return super().init_model()
