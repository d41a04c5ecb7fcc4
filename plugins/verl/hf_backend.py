"""A generation backend with verl's ``server_manager.generate()`` contract over a Hugging Face model.

Why: verl 0.9.1 generates only through vLLM / SGLang / TensorRT-LLM servers, none of which run on
a CPU. Agent loops only ever talk to ``await server_manager.generate(request_id, prompt_ids=...,
sampling_params=..., image_data=...) -> TokenOutput``, so this class serves that exact contract
from ``transformers`` generation: token ids in, token ids (and optionally their log-probabilities)
out, images processed by the model's own processor. The CPU tests and the quickstart drive the
self-check loop through it with a real (tiny) Qwen2.5-VL; a cluster uses verl's vLLM servers.

Requests that arrive together are generated together, as a rollout server batches them: the
concurrent sessions of a rollout step share one left-padded ``model.generate`` call, each row cut at
its own stop token and ``max_tokens`` (on a CPU this is several times faster than one request at a
time). Generation runs in a worker thread, so the event loop that schedules the sessions is never
blocked. As verl's vLLM server
does, it never samples an image or video placeholder token (nor an id past the tokenizer's
vocabulary): such a token has no image behind it and breaks every later consumer of the sequence.
It also serves as the CPU backend's rollout server (``medsage.plugins.verl.cpu.rollout``), where
:meth:`load_weights` receives the actor's weights after every update.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
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


@dataclass
class _Request:
    prompt_ids: list[int]
    sampling_params: dict[str, Any]
    images: list[Any]
    max_tokens: int
    mm_processor_kwargs: dict[str, Any]
    future: asyncio.Future = field(repr=False)


def _sampling_key(params: dict[str, Any]) -> tuple:
    """Requests batch together only when they sample alike."""
    return tuple(params.get(k) for k in ("temperature", "top_p", "top_k", "logprobs"))


class HFGenerationBackend:
    """``generate()`` as verl's ``LLMServerClient`` exposes it, backed by a local HF checkpoint."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        global_steps: int = 0,
        default_max_tokens: int = 256,
        max_batch_size: int = 64,
        batch_window_s: float = 0.01,
    ):
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.float32).eval()
        self.image_token_id = self.model.config.image_token_id
        self.global_steps = global_steps
        self.default_max_tokens = default_max_tokens
        self.max_batch_size = max_batch_size
        self.batch_window_s = batch_window_s
        self.calls: list[GenerateCall] = []
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()
        self._pending: list[_Request] = []
        self._server: asyncio.Task | None = None
        tokenizer = self.processor.tokenizer
        out_of_vocabulary = range(len(tokenizer), self.model.get_output_embeddings().weight.shape[0])
        self.banned_token_ids = sorted({*get_vision_placeholder_token_ids(self.processor), *out_of_vocabulary})
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = frozenset(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.stop_ids), 0)

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
        max_tokens = max(1, int(sampling_params.get("max_tokens", self.default_max_tokens)))
        self.calls.append(GenerateCall(request_id, tuple(prompt_ids), len(image_data or []), max_tokens))
        loop = asyncio.get_running_loop()
        request = _Request(list(prompt_ids), dict(sampling_params), list(image_data or []), max_tokens,
                           dict(mm_processor_kwargs or {}), loop.create_future())
        self._pending.append(request)
        if self._server is None or self._server.done() or self._server.get_loop() is not loop:
            self._server = loop.create_task(self._serve())
        return await request.future

    async def _serve(self) -> None:
        """Generate pending requests in batches until none is left."""
        loop = asyncio.get_running_loop()
        while self._pending:
            await asyncio.sleep(self.batch_window_s)  # let the other sessions' requests of this wave arrive
            batch = self._take_batch()
            try:
                outputs = await loop.run_in_executor(None, self._generate_batch, batch)
            except Exception as error:  # every request of the batch learns why
                outputs = [error] * len(batch)
            for request, output in zip(batch, outputs):
                if request.future.done():
                    continue
                if isinstance(output, Exception):
                    request.future.set_exception(output)
                else:
                    request.future.set_result(output)

    def _take_batch(self) -> list[_Request]:
        key = _sampling_key(self._pending[0].sampling_params)
        batch = [r for r in self._pending if _sampling_key(r.sampling_params) == key][: self.max_batch_size]
        taken = {id(r) for r in batch}
        self._pending = [r for r in self._pending if id(r) not in taken]
        return batch

    def _generate_batch(self, batch: list[_Request]) -> list[TokenOutput]:
        params = batch[0].sampling_params
        with self._lock, torch.no_grad():
            inputs = self._batch_inputs(batch)
            out = self.model.generate(
                **inputs,
                max_new_tokens=max(r.max_tokens for r in batch),
                return_dict_in_generate=True,
                output_logits=bool(params.get("logprobs")),
                suppress_tokens=self.banned_token_ids or None,
                pad_token_id=self.pad_id,
                **self._sampling_kwargs(params),
            )
        self.batch_sizes.append(len(batch))
        width = inputs["input_ids"].shape[1]
        logits = torch.stack(out.logits, dim=1).float() if params.get("logprobs") else None
        # The weight version, as verl's LLMServerClient stamps it on every output.
        steps = dict.fromkeys(("global_steps", "min_global_steps", "max_global_steps"), self.global_steps)
        outputs = []
        for row, request in enumerate(batch):
            token_ids = out.sequences[row, width:].tolist()[: request.max_tokens]
            stop = next((k for k, t in enumerate(token_ids) if t in self.stop_ids), None)
            token_ids = token_ids if stop is None else token_ids[: stop + 1]
            log_probs = None
            if logits is not None:
                chosen = torch.tensor(token_ids).unsqueeze(-1)
                log_probs = torch.log_softmax(logits[row, : len(token_ids)], dim=-1).gather(-1, chosen).squeeze(-1).tolist()
            outputs.append(TokenOutput(token_ids=token_ids, log_probs=log_probs, stop_reason="completed", extra_fields=steps))
        return outputs

    def _batch_inputs(self, batch: list[_Request]) -> dict[str, torch.Tensor]:
        """Left-padded token ids and the images of every request, in request order."""
        width = max(len(r.prompt_ids) for r in batch)
        input_ids = torch.tensor([[self.pad_id] * (width - len(r.prompt_ids)) + r.prompt_ids for r in batch])
        attention_mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in batch])
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        visions = [self._vision(r) for r in batch if r.images]
        if visions:
            inputs["pixel_values"] = torch.cat([v["pixel_values"] for v in visions])
            inputs["image_grid_thw"] = torch.cat([v["image_grid_thw"] for v in visions])
            inputs["mm_token_type_ids"] = (input_ids == self.image_token_id).long()
        return inputs

    def _vision(self, request: _Request) -> dict[str, torch.Tensor]:
        # As vLLM does, the request's processor settings (e.g. max_pixels) decide the image size.
        vision = self.processor.image_processor(images=request.images, return_tensors="pt", **request.mm_processor_kwargs)
        expected = int(vision["image_grid_thw"].prod(dim=-1).sum()) // self.processor.image_processor.merge_size**2
        found = sum(t == self.image_token_id for t in request.prompt_ids)
        if found != expected:
            raise ValueError(f"prompt has {found} image pad tokens but its {len(request.images)} image(s) need {expected}")
        return vision

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
