"""Inference backends: one ``generate(conversations, params) -> texts`` contract, three engines.

* :class:`HFBackend`: transformers on CPU or one GPU, batched with left padding (what CI uses with
  the tiny Qwen2.5-VL).
* :class:`OpenAIBackend`: any OpenAI-compatible server (``vllm serve``, GPT-4o, ...) through the
  project's one async client, with bounded concurrency and retries.
* :class:`VLLMBackend`: vLLM offline, batched, data-parallel over GPUs (one engine process per GPU
  group). GPU only: vLLM is imported inside it. CI runs it against a test double of vLLM 0.24.0's
  API (tests/eval/fake_vllm); the check with the real engine is in recipes/eval/README.md.

Greedy decoding (temperature 0) is the default, as the paper's tables report single greedy answers.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medsage.data_gen.llm_client import LLMClient, LLMConfig, image_content

from .benchmarks import load_image
from .prompts import Turn

Conversation = Sequence[Turn]


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0


class Backend(Protocol):
    """What the prediction loop needs from an inference engine."""

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[str]: ...

    def close(self) -> None:
        """Release what the engine holds beyond this process (vLLM's rank processes)."""


# ---------------------------------------------------------------------------------------------
# OpenAI chat format (the HTTP backend and vLLM's offline chat both take it)


def to_openai_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """Turns as OpenAI chat messages; images become base64 data-URL parts ahead of the text."""
    messages = []
    for turn in conversation:
        if turn.images:
            content: Any = [*(image_content(ref) for ref in turn.images), {"type": "text", "text": turn.text}]
        else:
            content = turn.text
        messages.append({"role": turn.role, "content": content})
    return messages


# ---------------------------------------------------------------------------------------------
# transformers


class HFBackend:
    """transformers ``generate`` in batches of ``batch_size`` conversations, left-padded."""

    def __init__(self, model_path: str | Path, batch_size: int = 8, device: str = "cpu", dtype: str = "auto"):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self._torch = torch
        self.batch_size = batch_size
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.processor.tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=dtype).to(device).eval()

    def _chat_messages(self, conversation: Conversation) -> list[dict[str, Any]]:
        return [
            {"role": t.role, "content": [*({"type": "image"} for _ in t.images), {"type": "text", "text": t.text}]}
            for t in conversation
        ]

    def _generate_batch(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[str]:
        texts = [
            self.processor.apply_chat_template(self._chat_messages(c), add_generation_prompt=True, tokenize=False)
            for c in conversations
        ]
        images = [load_image(ref) for c in conversations for t in c for ref in t.images]
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if params.temperature > 0:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        with self._torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=params.max_new_tokens, **sampling)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[str]:
        out: list[str] = []
        for start in range(0, len(conversations), self.batch_size):
            out += self._generate_batch(conversations[start : start + self.batch_size], params)
        return out

    def close(self) -> None:
        """Nothing outside this process: the model is freed with the backend."""


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint; requests run concurrently up to ``config.concurrency``."""

    def __init__(self, config: LLMConfig):
        self.config = config

    async def _generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[str]:
        async with LLMClient(self.config) as client:

            async def reply(conversation: Conversation) -> str:
                # images are read and encoded in a thread: requests already sent go on meanwhile
                messages = await asyncio.to_thread(to_openai_messages, conversation)
                return (await client.chat(messages, temperature=params.temperature, max_tokens=params.max_new_tokens,
                                          allow_empty=True)).text

            return list(await asyncio.gather(*(reply(c) for c in conversations)))

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[str]:
        return asyncio.run(self._generate(conversations, params))

    def close(self) -> None:
        """Nothing held between calls: each ``generate`` opens and closes its own client."""


# ---------------------------------------------------------------------------------------------
# vLLM offline (GPU only)
#
# Checked against vLLM 0.24.0 (the version verl[vllm] 0.9.1 pins), file:line in that wheel:
# - vllm/entrypoints/llm.py:176 ``LLM(model, *, tensor_parallel_size, gpu_memory_utilization, ...,
#   **kwargs)``; ``max_model_len`` and ``limit_mm_per_prompt`` travel in ``**kwargs`` to ``EngineArgs``
#   (vllm/engine/arg_utils.py:442, :551), where ``{"image": N}`` is the count-only form still accepted
#   (vllm/config/multimodal.py:80-95, :201-222).
# - vllm/entrypoints/llm.py:294-305: ``LLM(data_parallel_size>1)`` in one process is refused, so data
#   parallelism here is one process (one engine) per rank, each pinned by CUDA_VISIBLE_DEVICES.
# - vllm/entrypoints/llm.py:616 ``chat(messages, sampling_params, use_tqdm, ...)`` takes a list of
#   conversations (vllm/renderers/inputs/preprocess.py:59: an empty list is zero conversations);
#   OpenAI ``image_url`` parts (vllm/entrypoints/chat_utils.py:1439) with base64 data URLs
#   (vllm/multimodal/media/connector.py:237-251); outputs come back in input order
#   (vllm/entrypoints/offline_utils.py:626, sorted by request id).
# - vllm/sampling_params.py:236/240/262 ``temperature``, ``top_p``, ``max_tokens``; temperature 0 is
#   greedy (:471). vllm/outputs.py:41/85 ``RequestOutput.outputs[0].text``.
# - vllm/v1/engine/input_processor.py:404-421: a prompt (text + image tokens) longer than
#   ``max_model_len`` raises ValueError; raise ``model.max_model_len`` for many large images.


@dataclass(frozen=True)
class VLLMOptions:
    model: str
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 8192
    max_images_per_prompt: int = 7  # MMMU questions carry up to 7 images


def rank_devices(data_parallel_size: int, tensor_parallel_size: int, visible: str | None) -> list[str]:
    """CUDA_VISIBLE_DEVICES of each data-parallel rank: consecutive groups of ``tensor_parallel_size``
    GPUs taken from the GPUs this process may use (its own CUDA_VISIBLE_DEVICES, else 0, 1, ...), so a
    job started on ``CUDA_VISIBLE_DEVICES=4,5,6,7`` stays on those four."""
    need = data_parallel_size * tensor_parallel_size
    devices = [d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(need)]
    if len(devices) < need:
        raise ValueError(
            f"data_parallel_size {data_parallel_size} x tensor_parallel_size {tensor_parallel_size} needs {need} "
            f"GPUs; CUDA_VISIBLE_DEVICES={visible!r} names {len(devices)}"
        )
    t = tensor_parallel_size
    return [",".join(devices[r * t : (r + 1) * t]) for r in range(data_parallel_size)]


def _build_engine(options: VLLMOptions) -> Any:
    from vllm import LLM

    return LLM(
        model=options.model,
        tensor_parallel_size=options.tensor_parallel_size,
        gpu_memory_utilization=options.gpu_memory_utilization,
        max_model_len=options.max_model_len,
        limit_mm_per_prompt={"image": options.max_images_per_prompt},
    )


def _engine_generate(engine: Any, messages: list, params: GenerationParams) -> list[str]:
    from vllm import SamplingParams

    sampling = SamplingParams(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens)
    return [o.outputs[0].text for o in engine.chat(messages, sampling, use_tqdm=False)]


_RANK_ENGINE: Any = None  # in a data-parallel rank's process: that rank's engine


def _start_rank(options: VLLMOptions, devices: str) -> None:
    """Runs in a fresh rank process: pin its GPUs before vLLM (and CUDA) start, then build the engine."""
    global _RANK_ENGINE
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    _RANK_ENGINE = _build_engine(options)


def _rank_generate(messages: list, params: GenerationParams) -> list[str]:
    return _engine_generate(_RANK_ENGINE, messages, params)


class VLLMBackend:
    """vLLM offline inference, batched by vLLM's scheduler. With ``data_parallel_size`` > 1, one
    long-lived spawned process per rank holds an engine on its own ``tensor_parallel_size`` GPUs
    and takes an interleaved shard of every call; with one rank the engine lives in this process.
    Engines start on the first ``generate``; :meth:`close` stops the rank processes."""

    def __init__(self, options: VLLMOptions):
        self.options = options
        self._engine: Any = None
        self._ranks: list[ProcessPoolExecutor] = []

    def _start(self) -> None:
        if self.options.data_parallel_size == 1:
            if self._engine is None:
                self._engine = _build_engine(self.options)
            return
        if self._ranks:
            return
        devices = rank_devices(
            self.options.data_parallel_size, self.options.tensor_parallel_size, os.environ.get("CUDA_VISIBLE_DEVICES")
        )
        spawn = multiprocessing.get_context("spawn")
        self._ranks = [ProcessPoolExecutor(1, spawn) for _ in devices]
        started = [ex.submit(_start_rank, self.options, d) for ex, d in zip(self._ranks, devices)]
        try:
            for future in started:  # a rank that fails to start raises its own error here
                future.result()
        except BaseException:
            self.close()
            raise

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[str]:
        self._start()
        messages = [to_openai_messages(c) for c in conversations]
        if not self._ranks:
            return _engine_generate(self._engine, messages, params)
        dp = len(self._ranks)
        futures = [ex.submit(_rank_generate, messages[rank::dp], params) for rank, ex in enumerate(self._ranks)]
        out: list[str] = [""] * len(messages)
        for rank, future in enumerate(futures):
            out[rank::dp] = future.result()
        return out

    def close(self) -> None:
        for ex in self._ranks:
            ex.shutdown(cancel_futures=True)
        self._ranks = []
