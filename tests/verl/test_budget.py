"""The session budget: per-attempt caps (paper B.1, "maximum generation length of 1024" per generation)
inside rollout.response_length, checked up front and measured through the loop with the real templates."""

import asyncio

import pytest
from hydra import compose, initialize_config_dir
from transformers import AutoProcessor
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.workers.rollout.replica import TokenOutput

from verl_inputs import REPO, self_check_loop
from medsage.plugins.verl.settings import RGRPOSettings, check_budget

RESPONSE_KEY = r"actor_rollout_ref.rollout.response_length \(data.max_response_length\)"


def _recipe():
    with initialize_config_dir(config_dir=str(REPO / "recipes" / "rl"), version_base=None):
        return compose("rgrpo_qwen2_5_vl_7b")


@pytest.mark.parametrize(
    "settings, response_length, message",
    [
        (RGRPOSettings(), 1000, RESPONSE_KEY + r"=1000 cannot hold one attempt of medsage.attempt_max_tokens=1024"),
        (RGRPOSettings(), 2000, RESPONSE_KEY + r"=2000 cannot hold a full retry: .* = 2304 tokens.*medsage.self_check=false"),
        (RGRPOSettings(attempt_max_tokens=64, self_check_max_tokens=16), 100, r"= 144 tokens"),
    ],
)
def test_a_budget_that_cannot_hold_the_session_names_the_keys(settings, response_length, message):
    with pytest.raises(ValueError, match=message):
        check_budget(settings, response_length)


def test_one_attempt_is_enough_without_the_self_check():
    check_budget(RGRPOSettings(self_check=False), 1024)
    check_budget(RGRPOSettings(), 2304)


def test_a_cap_below_one_token_is_rejected():
    with pytest.raises(ValueError, match=r"medsage.attempt_max_tokens: expected >= 1, got 0"):
        RGRPOSettings.from_config({"medsage": {"attempt_max_tokens": 0}})


class _NeverEnds:
    """A server whose every reply runs to max_tokens without ending its turn (the worst case)."""

    def __init__(self, token_id: int):
        self.token_id, self.max_tokens = token_id, []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        self.max_tokens.append(sampling_params["max_tokens"])
        steps = dict.fromkeys(("global_steps", "min_global_steps", "max_global_steps"), 0)
        return TokenOutput(token_ids=[self.token_id] * sampling_params["max_tokens"], extra_fields=steps)


def test_the_paper_recipe_holds_a_full_retry_with_the_real_instructions(make_config, tiny_model_dir, rl_parquet):
    recipe = _recipe()
    settings, response_length = RGRPOSettings.from_config(recipe), recipe.actor_rollout_ref.rollout.response_length
    assert (settings.attempt_max_tokens, settings.self_check_max_tokens) == (1024, 256)
    check_budget(settings, response_length)

    config = make_config(
        tiny_model_dir,
        f"actor_rollout_ref.rollout.response_length={response_length}",
        f"medsage.attempt_max_tokens={settings.attempt_max_tokens}",
        f"medsage.self_check_max_tokens={settings.self_check_max_tokens}",
    )
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    row = RLHFDataset(str(rl_parquet), processor.tokenizer, config.data, processor=processor)[1]
    server = _NeverEnds(processor.tokenizer.encode(" the", add_special_tokens=False)[0])

    async def session():
        return await self_check_loop(config, server, processor).run({"temperature": 0, "logprobs": False}, **row)

    out = asyncio.run(session())
    injected = len(out.response_ids) - sum(out.response_mask)

    # Both cut turns closed, both instructions injected, and tau2 still gets its whole cap.
    assert server.max_tokens == [1024, 256, 1024]
    assert out.extra_fields["capped_spans"] == ["tau1", "check", "tau2"]
    assert out.extra_fields["stop_reason"] == "retried"
    # The tiny model's tokenizer (3,000 learned tokens) needs more tokens for the instructions than
    # Qwen2.5-VL's (about 220), so fitting here means fitting with the real model.
    assert injected <= 290, injected  # 287 today: 217 + 68 for the two instruction turns, 2 closing tokens
    assert 2 * 1024 + 256 + injected <= response_length
