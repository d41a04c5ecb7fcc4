"""The hybrid actor/rollout/reference worker the R-GRPO trainer hands verl.

verl's own ``ActorRolloutRefWorker`` with two additions, each chosen by the config:

- ``actor_rollout_ref.actor.freeze_vision_tower``: the actor is built by
  :class:`~medsage.plugins.verl.vision.FrozenVisionTrainingWorker` (paper appendix B.1);
- ``trainer.device=cpu``: a gloo process group is opened before verl's engines look for one
  (:func:`medsage.plugins.verl.cpu.engine.open_gloo_group`);

and one repair, for every batch the actor and reference compute on (:func:`ragged_on_tokens`).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from verl.single_controller.base.decorator import Dispatch, make_nd_compute_dataproto_dispatch_fn, register
from verl.utils.device import get_device_name
from verl.utils.tensordict_utils import nested_tensor_from_tensor_list
from verl.workers.engine_workers import ActorRolloutRefWorker

from .vision import FrozenVisionTrainingWorker


def ragged_on_tokens(data: TensorDict) -> TensorDict:
    """Make 3-D (mRoPE) ``position_ids`` ragged along the tokens, whatever the batch's lengths.

    The transfer queue packs each sample's ``(rows, tokens)`` position ids with
    ``torch.nested.as_nested_tensor``, which makes the *first* dimension that differs ragged. When
    every sample of a batch has the same length (a small batch whose responses all hit the same
    cap) that is the rows dimension: values ``(batch * rows, tokens)``, offsets step ``rows``.
    verl's ``maybe_fix_3d_position_ids`` then declares dimension 2 ragged, and the actor update
    fails in ``index_select_tensor_dict`` with ``split_with_sizes expects split_sizes to sum exactly
    to <tokens> ... got [rows, rows, ...]`` (verl 0.9.1, ``engine_workers.py`` ``train_mini_batch``).
    Rebuilding the tensor the way verl builds its own (values ``(rows, total tokens)``) makes both
    cases one.
    """
    if "position_ids" not in data.keys():
        return data
    ids = data["position_ids"]
    if not (isinstance(ids, torch.Tensor) and ids.is_nested and ids.dim() == 3):
        return data
    values, offsets = ids.values(), ids.offsets()
    if values.shape[0] != int(offsets[-1]):  # already ragged along the tokens
        return data
    samples = values.split(offsets.diff().tolist(), dim=0)
    data["position_ids"] = nested_tensor_from_tensor_list(list(samples), ragged_idx=2)
    return data


_ON_ACTOR = make_nd_compute_dataproto_dispatch_fn(mesh_name="actor")
_ON_REF = make_nd_compute_dataproto_dispatch_fn(mesh_name="ref")


class RGRPOWorker(ActorRolloutRefWorker):
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self):
        if get_device_name() == "cpu":
            from .cpu.engine import open_gloo_group

            open_gloo_group()
        if self.config.actor.freeze_vision_tower:
            self.actor_worker_cls = FrozenVisionTrainingWorker
        return super().init_model()

    @register(dispatch_mode=_ON_REF)
    def compute_ref_log_prob(self, data: TensorDict) -> TensorDict:
        return super().compute_ref_log_prob(ragged_on_tokens(data))

    @register(dispatch_mode=_ON_ACTOR)
    def compute_log_prob(self, data: TensorDict) -> TensorDict:
        return super().compute_log_prob(ragged_on_tokens(data))

    @register(dispatch_mode=_ON_ACTOR)
    def update_actor(self, data: TensorDict) -> TensorDict:
        return super().update_actor(ragged_on_tokens(data))
