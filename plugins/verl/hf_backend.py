"""A generation backend with verl's ``server_manager.generate()`` contract over a Hugging Face model.

Why: verl 0.9.1 generates only through vLLM / SGLang / TensorRT-LLM servers, none of which run on
a CPU. Agent loops only ever talk to ``await server_manager.generate(request_id, prompt_ids=...,
sampling_params=..., image_data=...) -> TokenOutput``, so this class serves that exact contract
from ``transformers`` generation: token ids in, token ids (and optionally their log-probabilities)
out, images processed by the model's own processor. The CPU tests and the quickstart drive the
self-check loop through it with a real (tiny) Qwen2.5-VL; a cluster uses verl's vLLM servers.

Generation is serialised by a lock (a model keeps per-call rope state) and runs in a worker thread,
so the event loop that schedules many agent-loop sessions is never blocked. As verl's vLLM server
does, it never samples an image or video placeholder token (nor an id past the tokenizer's
vocabulary): such a token has no image behind it and breaks every later consumer of the sequence.
It also serves as the CPU backend's rollout server (``medsage.plugins.verl.cpu.rollout``), where
:meth:`load_weights` receives the actor's weights after every update.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from verl.workers.rollout.replica import TokenOutput
from verl.workers.rollout.utils import get_vision_placeholder_token_ids


@dataclass(frozen=True)
class GenerateCall:
    """One request as the backend received it (kept so tests can check what the loop sent)."""

    request_id: str
    prompt_ids: tuple[int, ...]
    num_images: int
    max_tokens: int | None


class HFGenerationBackend:
    """``generate()`` as verl's ``LLMServerClient`` exposes it, backed by a local HF checkpoint."""

    def __init__(self, model_path: str | Path, *, global_steps: int = 0, default_max_tokens: int = 256):
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.float32).eval()
        self.image_token_id = self.model.config.image_token_id
        self.global_steps = global_steps
        self.default_max_tokens = default_max_tokens
        self.calls: list[GenerateCall] = []
        self._lock = threading.Lock()
        vocabulary = len(self.processor.tokenizer)
        out_of_vocabulary = range(vocabulary, self.model.get_output_embeddings().weight.shape[0])
        self.banned_token_ids = sorted({*get_vision_placeholder_token_ids(self.processor), *out_of_vocabulary})

    def load_weights(self, weights: dict[str, torch.Tensor]) -> int:
        """Copy the named tensors into the model (names as its ``state_dict``); returns how many."""
        with self._lock, torch.no_grad():
            own = self.model.state_dict()
            unknown = sorted(set(weights) - set(own))
            if unknown:
                raise KeyError(f"weights not in {type(self.model).__name__}: {unknown[:5]} ({len(unknown)} in all)")
            for name, tensor in weights.items():
                own[name].copy_(tensor)
        return len(weights)

    async def generate(
        self,
        request_id: str,
        *,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> TokenOutput:
        """Generate one continuation of ``prompt_ids`` (vLLM semantics: ``max_tokens`` caps the
        new tokens, temperature 0 is greedy, the stop token is included in ``token_ids``)."""
        if video_data or audio_data:
            raise ValueError("HFGenerationBackend serves text and images only; got video or audio data")
        max_tokens = sampling_params.get("max_tokens", self.default_max_tokens)
        self.calls.append(GenerateCall(request_id, tuple(prompt_ids), len(image_data or []), max_tokens))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, self._generate_locked, list(prompt_ids), dict(sampling_params), list(image_data or []), max_tokens,
            dict(mm_processor_kwargs or {}),
        )

    def _generate_locked(
        self, prompt_ids: list[int], sampling_params: dict, images: list, max_tokens: int, mm_processor_kwargs: dict
    ) -> TokenOutput:
        with self._lock, torch.no_grad():
            inputs = self._model_inputs(prompt_ids, images, mm_processor_kwargs)
            out = self.model.generate(
                **inputs,
                max_new_tokens=max(1, int(max_tokens)),
                return_dict_in_generate=True,
                output_logits=bool(sampling_params.get("logprobs")),
                suppress_tokens=self.banned_token_ids or None,
                **self._sampling_kwargs(sampling_params),
            )
        token_ids = out.sequences[0, len(prompt_ids) :].tolist()
        log_probs = None
        if sampling_params.get("logprobs"):
            logits = torch.stack(out.logits, dim=1)[0].float()
            chosen = torch.tensor(token_ids).unsqueeze(-1)
            log_probs = torch.log_softmax(logits, dim=-1).gather(-1, chosen).squeeze(-1).tolist()
        # The weight version, as verl's LLMServerClient stamps it on every output.
        steps = dict.fromkeys(("global_steps", "min_global_steps", "max_global_steps"), self.global_steps)
        return TokenOutput(token_ids=token_ids, log_probs=log_probs, stop_reason="completed", extra_fields=steps)

    def _model_inputs(self, prompt_ids: list[int], images: list, mm_processor_kwargs: dict) -> dict[str, torch.Tensor]:
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        if not images:
            return inputs
        # As vLLM does, the request's processor settings (e.g. max_pixels) decide the image size.
        vision = self.processor.image_processor(images=images, return_tensors="pt", **mm_processor_kwargs)
        merge = self.processor.image_processor.merge_size**2
        expected = int(vision["image_grid_thw"].prod(dim=-1).sum()) // merge
        found = int((input_ids == self.image_token_id).sum())
        if found != expected:
            raise ValueError(f"prompt has {found} image pad tokens but its {len(images)} image(s) need {expected}")
        inputs.update(pixel_values=vision["pixel_values"], image_grid_thw=vision["image_grid_thw"])
        inputs["mm_token_type_ids"] = (input_ids == self.image_token_id).long()
        return inputs

    def _sampling_kwargs(self, sampling_params: dict) -> dict[str, Any]:
        temperature = float(sampling_params.get("temperature", 1.0) or 0.0)
        if temperature <= 0.0:
            return {"do_sample": False}
        top_k = int(sampling_params.get("top_k", -1) or -1)
        return {
            "do_sample": True,
            "temperature": temperature,
            "top_p": float(sampling_params.get("top_p", 1.0)),
            "top_k": top_k if top_k > 0 else None,
        }
