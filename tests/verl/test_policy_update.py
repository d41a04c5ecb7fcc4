"""One R-GRPO policy update on CPU with verl's own policy-loss function: self-check tokens move in the
sign of their advantage and the frozen vision tower does not move at all."""

import numpy as np
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from verl_inputs import CHECK, QUESTION, TAU1, TAU2, image
from medsage.plugins.verl.advantage import self_check_advantages
from medsage.plugins.verl.vision import freeze_vision_tower, vision_tower


WRONG_CHECK = "<CHECK><GROUNDING>Fine.</GROUNDING><ANALYSIS>Fine.</ANALYSIS><CONSISTENCY>Fine.</CONSISTENCY></CHECK>"


def _session(processor, reply_texts):
    """Prompt (image + question) and a response made of the given replies, with span boundaries."""
    tok = processor.tokenizer
    builder = create_continuous_token_builder(tok, hf_model_type="qwen2_5_vl", processor=processor)
    img = image(0)
    messages = [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": QUESTION}]}]
    prompt = builder.build_initial_tokens(messages, images=[img])
    spans, response = [], []
    for text in reply_texts:
        ids = tok.encode(text, add_special_tokens=False)
        spans.append((len(response), len(response) + len(ids)))
        response += ids
    return prompt, response, spans, img


def _response_log_probs(model, processor, prompts, responses, img):
    rows = []
    vision = processor.image_processor(images=[img], return_tensors="pt")
    for prompt, response in zip(prompts, responses):
        ids = torch.tensor([prompt + response])
        logits = model(
            input_ids=ids,
            pixel_values=vision["pixel_values"],
            image_grid_thw=vision["image_grid_thw"],
            mm_token_type_ids=(ids == model.config.image_token_id).long(),
        ).logits[0, len(prompt) - 1 : -1]
        rows.append(torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(response)[:, None])[:, 0])
    return torch.stack(rows)


def test_one_update_moves_self_check_tokens_by_sign_and_keeps_vision_frozen(tiny_model_dir, make_config):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert freeze_vision_tower(model) > 0
    vision_before = {k: v.clone() for k, v in vision_tower(model).state_dict().items()}
    text_before = model.lm_head.weight.detach().clone()

    # Session 0 corrected itself (r_sc = 1, R = 1); session 1 retried and stayed wrong (r_sc = 0, R = 0).
    prompt, right, spans, img = _session(processor, [TAU1, CHECK, TAU2])
    _, wrong, wrong_spans, _ = _session(processor, [TAU2, WRONG_CHECK, TAU1])
    length = max(len(right), len(wrong))
    outcome, self_check = torch.zeros(2, length), torch.zeros(2, length)
    for row, (_, check_span, tau2_span) in enumerate([spans, wrong_spans]):
        outcome[row, slice(*tau2_span)] = 1
        self_check[row, slice(*check_span)] = 1
    advantages = self_check_advantages(
        torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), np.array(["u", "u"], dtype=object), outcome, self_check
    )
    response_mask = torch.tensor([[1.0] * len(r) + [0.0] * (length - len(r)) for r in (right, wrong)])
    pad = processor.tokenizer.pad_token_id
    responses = [r + [pad] * (length - len(r)) for r in (right, wrong)]

    actor = omega_conf_to_dataclass(
        make_config(tiny_model_dir, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1").actor_rollout_ref.actor
    )
    policy_loss = get_policy_loss_fn(actor.policy_loss.loss_mode)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    prompts = [prompt, prompt]

    with torch.no_grad():
        before = _response_log_probs(model, processor, prompts, responses, img)
    log_prob = _response_log_probs(model, processor, prompts, responses, img)
    loss, _ = policy_loss(
        old_log_prob=before, log_prob=log_prob, advantages=advantages, response_mask=response_mask,
        loss_agg_mode=actor.loss_agg_mode, config=actor,
    )
    loss.backward()
    assert all(p.grad is None for p in vision_tower(model).parameters())
    optimizer.step()
    with torch.no_grad():
        after = _response_log_probs(model, processor, prompts, responses, img)

    delta = after - before
    (tau1, check, tau2), (_, wrong_check, wrong_tau2) = spans, wrong_spans
    # Row 0: self-check advantage +alpha and tau2 advantage +g -> both become more likely.
    assert torch.all(advantages[0, slice(*check)] == 0.2) and delta[0, slice(*check)].sum() > 0
    assert advantages[0, tau2[0]] > 0 and delta[0, slice(*tau2)].sum() > 0
    # Row 1: self-check advantage 0 (r_sc = 0), tau2 advantage -g -> tau2 becomes less likely.
    assert advantages[1, slice(*wrong_check)].abs().sum() == 0
    assert advantages[1, wrong_tau2[0]] < 0 and delta[1, slice(*wrong_tau2)].sum() < 0
    # The rejected first attempt has advantage 0.
    assert advantages[:, slice(*tau1)].abs().sum() == 0
    for name, value in vision_tower(model).state_dict().items():
        assert torch.equal(value, vision_before[name]), name
    assert not torch.equal(model.lm_head.weight, text_before)
