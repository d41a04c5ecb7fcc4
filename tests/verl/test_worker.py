"""The R-GRPO worker's repair of mRoPE position ids (the intermittent ``split_with_sizes`` failure).

Batches are packed the way the transfer queue packs them in the actor's process, then cut into
mini-batches and micro-batches by verl's own functions, as ``train_mini_batch`` and ``infer_batch`` do.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from transfer_queue.storage.managers.simple_storage_manager import AsyncSimpleStorageManager
from verl.single_controller.base.decorator import MAGIC_ATTR
from verl.utils import tensordict_utils as tu
from verl.workers.engine_workers import ActorRolloutRefWorker

from medsage.plugins.verl.worker import RGRPOWorker, ragged_on_tokens

ROWS = 4  # Qwen2.5-VL position ids: (4, tokens) per sample in verl 0.9.1


def _batch(lengths: list[int]) -> tuple[TensorDict, list[torch.Tensor]]:
    samples = [torch.arange(ROWS * n).view(ROWS, n) + 1000 * i for i, n in enumerate(lengths)]
    pack = AsyncSimpleStorageManager._pack_field_values
    data = TensorDict(
        {"position_ids": pack(samples), "input_ids": pack([s[0] for s in samples])}, batch_size=[len(lengths)]
    )
    return data, samples


def _mini_batches(data: TensorDict, size: int) -> list[torch.Tensor]:
    """Per-sample position ids after verl's mini-batch iterator and micro-batch chunking."""
    tu.maybe_fix_3d_position_ids(data)
    out = []
    for mini in tu.make_iterator(data, mini_batch_size=size, epochs=1):
        tu.maybe_fix_3d_position_ids(mini)
        for micro in tu.chunk_tensordict(mini, chunks=size):
            out.extend(micro["position_ids"].unbind())
    return out


def test_equal_lengths_still_break_verl_without_the_repair():
    """If this stops failing, verl or the transfer queue fixed it upstream: drop ragged_on_tokens."""
    data, _ = _batch([364] * 4)
    with pytest.raises(RuntimeError, match="split_with_sizes"):
        _mini_batches(data, 2)


@pytest.mark.parametrize("lengths", [[364] * 4, [360, 361, 362, 363], [7, 7, 9, 7]])
def test_repaired_batches_split_into_the_original_samples(lengths):
    data, samples = _batch(lengths)
    got = _mini_batches(ragged_on_tokens(data), 2)
    assert len(got) == len(samples)
    for g, s in zip(got, samples):
        assert torch.equal(g, s)


def test_ragged_batches_and_text_models_are_left_alone():
    data, _ = _batch([5, 6])
    before = data["position_ids"]
    assert ragged_on_tokens(data)["position_ids"] is before
    text = TensorDict({"position_ids": torch.nested.as_nested_tensor([torch.arange(3)] * 2, layout=torch.jagged)}, [2])
    assert ragged_on_tokens(text)["position_ids"].dim() == 2


@pytest.mark.parametrize("method", ["compute_ref_log_prob", "compute_log_prob", "update_actor"])
def test_repaired_methods_dispatch_as_verls(method):
    ours, verls = getattr(RGRPOWorker, method), getattr(ActorRolloutRefWorker, method)
    a, b = getattr(ours, MAGIC_ATTR), getattr(verls, MAGIC_ATTR)
    assert a["execute_mode"] == b["execute_mode"] and a["blocking"] == b["blocking"]
    assert a["dispatch_mode"]["dispatch_fn"].args == b["dispatch_mode"]["dispatch_fn"].args
