"""Inference backends: one ``generate(conversations, params) -> texts`` contract, three engines.

* :class:`HFBackend`: transformers on CPU or one GPU, batched with left padding (what CI uses with
  the tiny Qwen2.5-VL).
* :class:`OpenAIBackend`: any OpenAI-compatible server (``vllm serve``, GPT-4o, ...) through the
  project's one async client, with bounded concurrency and retries.
* :class:`VLLMBackend`: vLLM offline, batched, data-parallel over GPUs (one engine process per GPU
  group). GPU only: vLLM is imported inside it; it cannot run (or be tested) on the CPU machines.

Greedy decoding (temperature 0) is the default, as the paper's tables report single greedy answers.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medsage.data_gen.llm_client import LLMClient, LLMConfig, image_content

from .benchmarks import ImageRef, load_image
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


# ---------------------------------------------------------------------------------------------
# OpenAI chat format (the HTTP backend and vLLM's offline chat both take it)


def image_part(ref: ImageRef) -> dict[str, Any]:
    if isinstance(ref, bytes):
        data = base64.b64encode(ref).decode("ascii")
        return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}
    return image_content(ref)


def to_openai_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """Turns as OpenAI chat messages; images become base64 data-URL parts ahead of the text."""
    messages = []
    for turn in conversation:
        if turn.images:
            content: Any = [*(image_part(ref) for ref in turn.images), {"type": "text", "text": turn.text}]
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


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint; requests run concurrently up to ``config.concurrency``."""

    def __init__(self, config: LLMConfig):
        self.config = config

    async def _generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[str]:
        async with LLMClient(self.config) as client:
            calls = [
                client.chat(to_openai_messages(c), temperature=params.temperature, max_tokens=params.max_new_tokens,
                            allow_empty=True)
                for c in conversations
            ]
            return [r.text for r in await asyncio.gather(*calls)]

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[str]:
        return asyncio.run(self._generate(conversations, params))


# ---------------------------------------------------------------------------------------------
# vLLM offline (GPU only)


@dataclass(frozen=True)
class VLLMOptions:
    model: str
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 8192
    max_images_per_prompt: int = 7  # MMMU questions carry up to 7 images


_ENGINE: Any = None  # the vLLM engine of this process (one per data-parallel rank)


def _init_engine(options: VLLMOptions, gpus: str | None) -> None:
    """Build this process's engine once; a data-parallel rank first pins its own GPU group."""
    global _ENGINE
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    from vllm import LLM

    _ENGINE = LLM(
        model=options.model,
        tensor_parallel_size=options.tensor_parallel_size,
        gpu_memory_utilization=options.gpu_memory_utilization,
        max_model_len=options.max_model_len,
        limit_mm_per_prompt={"image": options.max_images_per_prompt},
    )


def _engine_generate(messages: list, params: GenerationParams) -> list[str]:
    from vllm import SamplingParams

    sampling = SamplingParams(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens)
    return [o.outputs[0].text for o in _ENGINE.chat(messages, sampling, use_tqdm=False)]


class VLLMBackend:
    """vLLM offline inference, batched by vLLM's scheduler. With ``data_parallel_size`` > 1, one
    long-lived process per rank holds an engine on its own ``tensor_parallel_size`` GPUs and takes
    an interleaved shard of every call; with one rank the engine lives in this process."""

    def __init__(self, options: VLLMOptions):
        self.options = options
        self._ranks: list[ProcessPoolExecutor] = []

    def _start(self) -> None:
        tp, dp = self.options.tensor_parallel_size, self.options.data_parallel_size
        if dp == 1:
            if _ENGINE is None:
                _init_engine(self.options, None)
            return
        if not self._ranks:
            spawn = multiprocessing.get_context("spawn")
            for rank in range(dp):
                gpus = ",".join(str(rank * tp + i) for i in range(tp))
                self._ranks.append(ProcessPoolExecutor(1, spawn, _init_engine, (self.options, gpus)))

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[str]:
        self._start()
        messages = [to_openai_messages(c) for c in conversations]
        if not self._ranks:
            return _engine_generate(messages, params)
        dp = len(self._ranks)
        futures = [ex.submit(_engine_generate, messages[rank::dp], params) for rank, ex in enumerate(self._ranks)]
        out: list[str] = [""] * len(messages)
        for rank, future in enumerate(futures):
            out[rank::dp] = future.result()
        return out

    def close(self) -> None:
        for ex in self._ranks:
            ex.shutdown()
        self._ranks = []
