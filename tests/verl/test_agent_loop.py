"""The self-check agent loop end to end: verl's RLHFDataset reads RL parquet rows, the loop runs on a
real tiny Qwen2.5-VL behind verl's generate() contract, and verl's AgentLoopWorker turns the sessions
into a DataProto."""

import asyncio

import numpy as np
import pytest
import torch
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
from verl.protocol import DataProto
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

from verl_inputs import CHECK, TAU1, TAU2, TEMPLATES, self_check_loop
from medsage.plugins.verl.hf_backend import HFGenerationBackend
from medsage.plugins.verl.sessions import SessionOutcome
from medsage.plugins.verl.settings import render_instruction
from medsage.reward_fns.rewards import compute_score

WEIGHTS = {"reward_weights": {"accuracy": 0.9, "format": 0.1}}


@pytest.fixture(scope="module")
def backend(policy_dir):
    return HFGenerationBackend(policy_dir, global_steps=3)


def _rows(config, parquet):
    dataset = RLHFDataset(str(parquet), backend_tokenizer(config), config.data, processor=_processor(config))
    return [dataset[i] for i in range(len(dataset))]


def backend_tokenizer(config):
    return _processor(config).tokenizer


def _processor(config):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(config.actor_rollout_ref.model.path)


def _loop(config, backend):
    return self_check_loop(config, backend, _processor(config))


def _run(config, backend, row):
    """Build the loop inside the running event loop, as verl's AgentLoopWorker does."""
    params = {"temperature": 0, "top_p": 1.0, "top_k": -1, "logprobs": True}

    async def session():
        return await _loop(config, backend).run(params, **row)

    return asyncio.run(session())


def _decode(tokenizer, ids, mask):
    return tokenizer.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=False)


def test_right_first_answer_is_accepted(make_config, policy_dir, rl_parquet, backend):
    config = make_config(policy_dir)
    row = _rows(config, rl_parquet)[0]
    calls_before = len(backend.calls)
    out = _run(config, backend, row)
    tok = backend_tokenizer(config)
    extra = out.extra_fields

    assert len(backend.calls) - calls_before == 1
    assert tok.decode(out.response_ids) == TAU1 + "<|im_end|>"
    assert out.response_mask == [1] * len(out.response_ids) == extra["outcome_mask"]
    assert extra["self_check_mask"] == [0] * len(out.response_ids)
    assert (extra["first_correct"], extra["final_correct"], extra["r_sc"]) == (True, True, 0.0)
    assert extra["stop_reason"] == "accepted" and not extra["self_checked"]
    expected = compute_score("phantom_vqa", TAU1, "no", {}, **WEIGHTS)
    assert out.reward_score == pytest.approx(expected["score"])
    assert extra["reward_parts"] == {"accuracy": 1.0, "format": expected["format"]}
    assert len(out.response_logprobs) == len(out.response_ids)
    assert (extra["min_global_steps"], extra["max_global_steps"]) == (3, 3)
    outcome = SessionOutcome.from_extra_fields(extra)  # the trainer's reading of what the loop wrote
    assert (outcome.question, outcome.ground_truth) == (row["extra_info"]["question"], "no")
    assert outcome.to_extra_fields().items() <= extra.items()


def test_wrong_first_answer_self_checks_and_retries(make_config, policy_dir, rl_parquet, backend):
    config = make_config(policy_dir)
    row = _rows(config, rl_parquet)[1]
    calls_before = len(backend.calls)
    out = _run(config, backend, row)
    tok = backend_tokenizer(config)
    extra, ids = out.extra_fields, out.response_ids
    calls = backend.calls[calls_before:]

    assert [c.num_images for c in calls] == [1, 1, 1]
    # Each call continues the previous one's token stream: nothing was re-encoded.
    assert calls[1].prompt_ids[: len(calls[0].prompt_ids)] == calls[0].prompt_ids
    assert calls[2].prompt_ids[: len(calls[1].prompt_ids)] == calls[1].prompt_ids
    assert list(calls[2].prompt_ids) == out.prompt_ids + ids[: len(calls[2].prompt_ids) - len(out.prompt_ids)]

    assert _decode(tok, ids, extra["self_check_mask"]) == CHECK + "<|im_end|>"
    assert _decode(tok, ids, extra["outcome_mask"]) == TAU2 + "<|im_end|>"
    generated = _decode(tok, ids, out.response_mask)
    assert generated == TAU1 + "<|im_end|>" + CHECK + "<|im_end|>" + TAU2 + "<|im_end|>"
    injected = _decode(tok, ids, [1 - m for m in out.response_mask])
    assert render_instruction(TEMPLATES / "self_check.jinja") in injected
    assert render_instruction(TEMPLATES / "retry.jinja") in injected
    assert "yes" not in injected.lower().replace("yes or no", "")  # the reference answer never leaks
    assert not any(a and b for a, b in zip(extra["self_check_mask"], extra["outcome_mask"]))
    assert all(m == 1 for m, o, c in zip(out.response_mask, extra["outcome_mask"], extra["self_check_mask"]) if o or c)

    assert (extra["first_correct"], extra["final_correct"], extra["r_sc"]) == (False, True, 1.0)
    assert extra["stop_reason"] == "retried" and extra["self_checked"] and extra["retried"]
    assert extra["self_check_length"] == sum(extra["self_check_mask"])
    assert out.reward_score == pytest.approx(compute_score("phantom_vqa", TAU2, "yes", {}, **WEIGHTS)["score"])
    assert extra["first_reward_parts"]["accuracy"] == 0.0
    assert extra["turn_scores"] == [pytest.approx(compute_score("x", TAU1, "yes", {}, **WEIGHTS)["score"]), out.reward_score]
    assert len(out.response_logprobs) == len(ids)
    assert all(lp == 0.0 for lp, m in zip(out.response_logprobs, out.response_mask) if not m)


def test_budget_stops_cleanly_and_scores_the_first_attempt(make_config, policy_dir, rl_parquet, backend):
    probe = _run(make_config(policy_dir), backend, _rows(make_config(policy_dir), rl_parquet)[1])
    retry_starts = probe.extra_fields["outcome_mask"].index(1)  # where tau2 would begin
    # Room for tau1 and the self-check, but the retry instruction cannot fit with a token to spare.
    budget = retry_starts - 5
    config = make_config(policy_dir, f"actor_rollout_ref.rollout.response_length={budget}")
    out = _run(config, backend, _rows(config, rl_parquet)[1])
    extra = out.extra_fields

    assert len(out.response_ids) <= budget
    assert extra["stop_reason"] == "budget_before_retry" and extra["self_checked"] and not extra["retried"]
    assert extra["r_sc"] == 0.0 and extra["final_correct"] is False
    tok = backend_tokenizer(config)
    assert _decode(tok, out.response_ids, extra["outcome_mask"]) == TAU1 + "<|im_end|>"
    assert out.reward_score == pytest.approx(compute_score("x", TAU1, "yes", {}, **WEIGHTS)["score"])


class _EmitsPlaceholder:
    """The real backend, except that its first reply also holds an image placeholder token, as an
    undertrained policy's can (the quickstart's tiny SFT model did)."""

    def __init__(self, backend, token_id: int):
        self.backend, self.token_id, self.calls = backend, token_id, 0

    async def generate(self, request_id, **kwargs):
        out = await self.backend.generate(request_id, **kwargs)
        self.calls += 1
        if self.calls == 1:
            out = out.model_copy(update={"token_ids": [self.token_id, *out.token_ids]})
            if out.log_probs is not None:
                out = out.model_copy(update={"log_probs": [0.0, *out.log_probs]})
        return out


def test_placeholder_token_in_a_reply_stops_the_session_cleanly(make_config, policy_dir, rl_parquet, backend):
    config = make_config(policy_dir)
    wrapped = _EmitsPlaceholder(backend, backend.image_token_id)
    out = _run(config, wrapped, _rows(config, rl_parquet)[1])  # a wrong first answer: would self-check
    extra = out.extra_fields

    assert wrapped.calls == 1  # no second call, which the server could not serve
    assert extra["stop_reason"] == "placeholder_in_response" and not extra["self_checked"] and not extra["retried"]
    assert out.response_ids[0] == backend.image_token_id and extra["outcome_mask"] == [1] * len(out.response_ids)
    assert extra["r_sc"] == 0.0 and extra["first_correct"] is False


def test_self_check_off_is_a_single_attempt(make_config, policy_dir, rl_parquet, backend):
    config = make_config(policy_dir, "medsage.self_check=false")
    out = _run(config, backend, _rows(config, rl_parquet)[1])
    assert out.extra_fields["stop_reason"] == "no_self_check"
    assert out.extra_fields["outcome_mask"] == out.response_mask == [1] * len(out.response_ids)
    assert sum(out.extra_fields["self_check_mask"]) == 0 and out.extra_fields["r_sc"] == 0.0


def test_missing_ground_truth_names_the_row(make_config, policy_dir, rl_parquet, backend):
    config = make_config(policy_dir)
    row = dict(_rows(config, rl_parquet)[0], reward_model={"style": "rule"})
    with pytest.raises(ValueError, match="row index=0 of data_source='phantom_vqa'.*ground_truth"):
        _run(config, backend, row)


def test_extra_fields_reach_a_verl_dataproto(make_config, policy_dir, rl_parquet, backend):
    """verl's own AgentLoopWorker finds the loop through agent_loop_config_path and batches it."""
    config = make_config(policy_dir, "actor_rollout_ref.rollout.name=vllm")
    rows = _rows(config, rl_parquet)
    batch = DataProto.from_single_dict(collate_fn(rows))
    batch.non_tensor_batch["uid"] = np.array(["u0", "u1"], dtype=object)

    async def rollout():
        return await AgentLoopWorker(config, llm_client=backend).generate_sequences(batch)

    out = asyncio.run(rollout())

    response_length = config.actor_rollout_ref.rollout.response_length
    assert out.batch["responses"].shape == (2, response_length)
    assert out.non_tensor_batch["r_sc"].tolist() == [0.0, 1.0]
    assert out.non_tensor_batch["stop_reason"].tolist() == ["accepted", "retried"]
    rm = out.batch["rm_scores"]
    scores = [compute_score("x", TAU1, "no", {}, **WEIGHTS)["score"], compute_score("x", TAU2, "yes", {}, **WEIGHTS)["score"]]
    torch.testing.assert_close(rm.sum(-1), torch.tensor(scores))
    for i in range(2):
        outcome = out.non_tensor_batch["outcome_mask"][i]
        mask = out.batch["response_mask"][i, : len(outcome)]
        assert mask.sum() >= sum(outcome) and torch.all(mask[torch.tensor(outcome).bool()] == 1)
    assert all("image_grid_thw" in mmi for mmi in out.non_tensor_batch["multi_modal_inputs"])


def test_shared_lazy_images_are_decoded_before_sessions_use_threads():
    """verl repeats a row rollout.n times by reference; concurrent lazy PIL decodes of one PNG fail."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from verl_inputs import image, png_bytes
    from medsage.plugins.verl.agent_loop import _decode_images

    shared = Image.open(io.BytesIO(png_bytes(image(3))))
    assert shared.fp is not None  # opened lazily, as verl's dataset hands it over
    messages = [{"role": "user", "content": [{"type": "image", "image": shared}, {"type": "text", "text": "q"}]}]
    _decode_images(messages)
    assert shared.fp is None  # decoded (PIL closes a single-frame file once its pixels are loaded)
    with ThreadPoolExecutor(16) as pool:
        converted = list(pool.map(lambda _: shared.convert("RGB").tobytes(), range(64)))
    assert len(set(converted)) == 1


def _span(mask):
    """(start, end) of the 1-run in a span mask."""
    ones = [i for i, m in enumerate(mask) if m]
    return ones[0], ones[-1] + 1


def test_a_self_check_cut_at_its_cap_ends_its_turn(make_config, policy_dir, rl_parquet, backend):
    """verl's Qwen builder adds only the newline after <|im_end|>; a cut span must get <|im_end|> first."""
    # attempt_max_tokens=60 holds the taught tau1 (44 tokens) and keeps an off-path tau2 short.
    config = make_config(policy_dir, "medsage.self_check_max_tokens=4", "medsage.attempt_max_tokens=60")
    calls_before = len(backend.calls)
    out = _run(config, backend, _rows(config, rl_parquet)[1])
    tok = backend_tokenizer(config)
    extra, ids, mask = out.extra_fields, out.response_ids, out.response_mask
    start, end = _span(extra["self_check_mask"])

    assert backend.calls[calls_before + 1].max_tokens == 4
    # tau2 after a cut review is off the taught path and may run to its own cap; tau1 is whole.
    assert extra["capped_spans"][0] == "check" and "tau1" not in extra["capped_spans"]
    assert extra["stop_reason"] == "retried"
    assert ids[start:end] == tok.encode(CHECK, add_special_tokens=False)[:4] and extra["self_check_length"] == 4
    # The cut turn is closed as the chat template closes every turn, by a token the model did not generate.
    assert tok.decode(ids[end : end + 3]) == "<|im_end|>\n<|im_start|>"
    assert mask[end : end + 3] == [0, 0, 0] and out.response_logprobs[end] == 0.0
    assert all(mask[start:end]) and _span(extra["outcome_mask"])[0] > end + 3
    # The turn that ended on its own (tau1) is not closed twice.
    tau1_end = ids.index(tok.convert_tokens_to_ids("<|im_end|>"))
    assert mask[tau1_end] == 1 and tok.decode(ids[tau1_end : tau1_end + 3]) == "<|im_end|>\n<|im_start|>"


def test_each_attempt_has_its_own_cap(make_config, policy_dir, rl_parquet, backend):
    """The paper's 1024-token limit is per generation: tau1 and tau2 get medsage.attempt_max_tokens each."""
    config = make_config(policy_dir, "medsage.attempt_max_tokens=6")
    calls_before = len(backend.calls)
    out = _run(config, backend, _rows(config, rl_parquet)[1])
    extra, ids, mask = out.extra_fields, out.response_ids, out.response_mask
    calls = backend.calls[calls_before:]
    tok = backend_tokenizer(config)

    assert [c.max_tokens for c in calls] == [6, 256, 6]  # the session budget (512) leaves room for each cap
    assert extra["capped_spans"] == ["tau1", "tau2"] and extra["stop_reason"] == "retried"
    assert ids[:6] == tok.encode(TAU1, add_special_tokens=False)[:6] and mask[:7] == [1] * 6 + [0]
    assert tok.decode(ids[6:9]) == "<|im_end|>\n<|im_start|>"
    assert sum(extra["outcome_mask"]) == 6 and ids[-6:] == [i for i, o in zip(ids, extra["outcome_mask"]) if o]


def test_the_session_budget_caps_a_span_it_cannot_hold(make_config, policy_dir, rl_parquet, backend):
    """rollout.response_length still bounds the whole session: tau1 gets what is left of it."""
    config = make_config(policy_dir, "actor_rollout_ref.rollout.response_length=8")
    calls_before = len(backend.calls)
    out = _run(config, backend, _rows(config, rl_parquet)[1])
    assert backend.calls[calls_before].max_tokens == 8 and len(out.response_ids) == 8
    assert out.extra_fields["capped_spans"] == ["tau1"] and out.extra_fields["stop_reason"] == "budget_before_check"


class _Recording:
    """The real backend, recording every keyword argument each generate call carried."""

    def __init__(self, backend):
        self.backend, self.kwargs = backend, []

    async def generate(self, request_id, **kwargs):
        self.kwargs.append(kwargs)
        return await self.backend.generate(request_id, **kwargs)


def test_image_processor_settings_reach_every_generate_call_and_the_output(make_config, policy_dir, rl_parquet, backend):
    """As verl's own loops do: vLLM rebuilds the image from mm_processor_kwargs, the trainer from the output's."""
    small = {"max_pixels": 56 * 56, "min_pixels": 56 * 56}  # the 84x84 test image at 4 image tokens instead of 9
    overrides = [f"+data.mm_processor_kwargs.{key}={value}" for key, value in small.items()]
    config = make_config(policy_dir, *overrides, "medsage.attempt_max_tokens=8", "medsage.self_check_max_tokens=8")
    row = dict(_rows(config, rl_parquet)[1], reward_model={"style": "rule", "ground_truth": "maybe"}, priority=7)
    recording = _Recording(backend)
    out = _run(config, recording, row)  # never right: every attempt is made

    assert len(recording.kwargs) == 3
    assert all(k["mm_processor_kwargs"] == small and k["priority"] == 7 for k in recording.kwargs)
    assert out.mm_processor_kwargs == small
    assert out.prompt_ids.count(backend.image_token_id) == 4  # the prompt was built with the same settings
