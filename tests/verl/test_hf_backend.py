"""The transformers generation backend behind verl's ``generate()`` contract (the CPU backend's rollout
server): concurrent requests are batched without changing what each one gets, every request keeps its
own ``max_tokens``, and image placeholders are never sampled, as verl's vLLM server guarantees."""

from __future__ import annotations

import asyncio

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from verl_inputs import image
from medsage.plugins.verl.hf_backend import HFGenerationBackend

GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "logprobs": True}


def _prompts(model_dir) -> list[tuple[list[int], list]]:
    """Chat prompts of different lengths, with and without an image."""
    processor = AutoProcessor.from_pretrained(model_dir)
    prompts = []
    for k, question in enumerate(["Is there a nodule?", "Which organ holds the lesion shown here, and where?", "Describe."]):
        img = image(k)
        content = [{"type": "image"}, {"type": "text", "text": question}]
        text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        prompts.append((processor(text=[text], images=[img], return_tensors="pt")["input_ids"][0].tolist(), [img]))
    text = processor.apply_chat_template([{"role": "user", "content": "No image here."}], add_generation_prompt=True)
    prompts.append((processor(text=[text], return_tensors="pt")["input_ids"][0].tolist(), []))
    return prompts


def _generate(backend, prompts, caps, together: bool):
    async def one(prompt, images, cap):
        return await backend.generate("r", prompt_ids=prompt, sampling_params={**GREEDY, "max_tokens": cap}, image_data=images)

    async def run():
        if together:
            return await asyncio.gather(*(one(p, i, c) for (p, i), c in zip(prompts, caps)))
        return [await one(p, i, c) for (p, i), c in zip(prompts, caps)]

    return asyncio.run(run())


def test_batched_requests_get_what_each_would_get_alone(tiny_model_dir):
    backend = HFGenerationBackend(tiny_model_dir)
    prompts, caps = _prompts(tiny_model_dir), [24, 7, 16, 1]
    alone = _generate(backend, prompts, caps, together=False)
    assert backend.batch_sizes == [1, 1, 1, 1]
    together = _generate(backend, prompts, caps, together=True)
    assert backend.batch_sizes[4:] == [4]
    for a, b, cap in zip(alone, together, caps):
        assert a.token_ids == b.token_ids and 1 <= len(b.token_ids) <= cap
        torch.testing.assert_close(torch.tensor(a.log_probs), torch.tensor(b.log_probs), atol=1e-4, rtol=0)
    assert [len(o.token_ids) for o in together][3] == 1


def test_image_placeholders_are_never_sampled(tiny_model_dir, tmp_path):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    placeholder = model.config.image_token_id
    with torch.no_grad():  # make the placeholder the model's favourite token everywhere
        model.lm_head.weight[placeholder] = model.lm_head.weight.abs().max() * 50
    model.save_pretrained(tmp_path)
    AutoProcessor.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)
    backend = HFGenerationBackend(tmp_path)
    outputs = _generate(backend, _prompts(tmp_path), [12, 12, 12, 12], together=True)
    assert all(placeholder not in o.token_ids and len(o.token_ids) > 0 for o in outputs)
    assert placeholder in backend.banned_token_ids
