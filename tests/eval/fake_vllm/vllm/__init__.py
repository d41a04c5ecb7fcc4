"""A test double of vLLM 0.24.0's offline API, for the CPU machines where vLLM cannot be installed.

It speaks the contract medsage.eval.backends uses, with vLLM 0.24.0's signatures and checks for
those parameters (source read from the vllm-0.24.0 wheel; file:line below), and generates for real
with a transformers checkpoint (the tiny Qwen2.5-VL of the tests) on CPU:

- ``LLM(model, *, tensor_parallel_size, gpu_memory_utilization, seed, dtype, **engine_kwargs)``
  (vllm/entrypoints/llm.py:176); ``max_model_len`` and ``limit_mm_per_prompt`` are EngineArgs keys
  (vllm/engine/arg_utils.py:442, :551); an unknown key is a TypeError, as EngineArgs(**kwargs) gives.
  ``limit_mm_per_prompt`` values are a count or ``{"count": N, ...}`` (vllm/config/multimodal.py:201).
- ``LLM.chat(messages, sampling_params=None, use_tqdm=True, ...)`` (vllm/entrypoints/llm.py:616): one
  conversation or a list of them (vllm/renderers/inputs/preprocess.py:59); content a string or
  OpenAI parts ``text`` / ``image_url`` (vllm/entrypoints/chat_utils.py:1439, :1714 for unknown
  types); ``image_url`` data URLs must be base64 (vllm/multimodal/media/connector.py:237) and are
  decoded to RGB images; more images than the limit is an error
  (vllm/multimodal/processing/context.py:423). The conversation is rendered in the "openai" content
  format (Qwen2.5-VL's template iterates over content parts; vllm/renderers/hf.py:433), i.e. each
  part becomes ``{"type": "image"}`` or ``{"type": "text", ...}`` for the model's chat template. A
  prompt longer than ``max_model_len`` raises (vllm/v1/engine/input_processor.py:404).
- ``SamplingParams`` keywords with 0.24.0 defaults (vllm/sampling_params.py:213-295); temperature
  below 1e-5 is greedy (:471).
- ``RequestOutput.outputs[0].text`` (vllm/outputs.py:22-41, :85), in input order (request ids
  counted up, vllm/entrypoints/offline_utils.py:563, :626).

What each engine saw is appended as JSON lines to the file named by ``$FAKE_VLLM_LOG`` (process id,
CUDA_VISIBLE_DEVICES, constructor arguments, conversations per call), so a test can check how
data-parallel ranks were pinned.
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__version__ = "0.24.0"

_SAMPLING_EPS = 1e-5
_ROLES = ("system", "user", "assistant", "tool", "developer")
_ENGINE_KWARGS = ("max_model_len", "limit_mm_per_prompt", "enforce_eager", "max_num_seqs", "trust_remote_code")


def _log(event: str, **fields: Any) -> None:
    path = os.environ.get("FAKE_VLLM_LOG")
    if path:
        record = {"event": event, "pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record | fields) + "\n")


class SamplingParams:
    """The keyword fields medsage uses, with vLLM 0.24.0's defaults and argument checks."""

    def __init__(self, *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 seed: int | None = None, max_tokens: int | None = 16, skip_special_tokens: bool = True):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}.")
        if temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {temperature}.")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}.")
        self.n, self.temperature, self.top_p, self.top_k = n, temperature, top_p, top_k
        self.seed, self.max_tokens, self.skip_special_tokens = seed, max_tokens, skip_special_tokens
        if temperature < _SAMPLING_EPS:  # greedy
            self.top_p, self.top_k = 1.0, 0
            if n != 1:
                raise ValueError(f"n must be 1 when using greedy sampling, got {n}.")


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: Any
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool
    metrics: Any = None


def _image_limits(limit_mm_per_prompt: dict | None) -> dict[str, int]:
    limits = {}
    for modality, value in (limit_mm_per_prompt or {}).items():
        if isinstance(value, int):
            limits[modality] = value
        elif isinstance(value, dict) and isinstance(value.get("count"), int):
            limits[modality] = value["count"]
        else:
            raise ValueError(f"limit_mm_per_prompt[{modality!r}]: expected a count or {{'count': N, ...}}, got {value!r}")
    return limits


def _decode_image_url(url: Any) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not isinstance(url, str) or url[:5].lower() != "data:":
        raise RuntimeError(f"the test double reaches no network or disk: only data URLs load, got {str(url)[:40]!r}")
    spec, data = url[5:].split(",", 1)
    _, data_type = spec.split(";", 1)
    if data_type != "base64":
        raise NotImplementedError("Only base64 data URLs are supported for now.")
    try:
        with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as image:
            return image.convert("RGB")
    except (binascii.Error, OSError, UnidentifiedImageError) as err:
        raise ValueError(f"Failed to load image: {err}") from err


class LLM:
    """One engine: a transformers model on CPU standing in for vLLM's GPU engine."""

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.92,
                 seed: int = 0, dtype: str = "auto", **kwargs: Any):
        unknown = sorted(set(kwargs) - set(_ENGINE_KWARGS))
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument {unknown[0]!r}")
        if not 0.0 < gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if tensor_parallel_size < 1 or (visible is not None and len(visible.split(",")) < tensor_parallel_size):
            raise ValueError(f"tensor_parallel_size={tensor_parallel_size} exceeds the visible GPUs {visible!r}")
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self._torch = torch
        self.processor = AutoProcessor.from_pretrained(model)
        self.model = AutoModelForImageTextToText.from_pretrained(model, dtype=dtype).eval()
        self.max_model_len = kwargs.get("max_model_len") or self.model.config.get_text_config().max_position_embeddings
        self.image_limit = _image_limits(kwargs.get("limit_mm_per_prompt")).get("image", 999)
        self.seed = seed
        self.request_counter = itertools.count()
        _log("init", model=str(model), tensor_parallel_size=tensor_parallel_size,
             gpu_memory_utilization=gpu_memory_utilization, **kwargs)

    def chat(self, messages: list | Sequence[list], sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
             use_tqdm: bool = True, lora_request: Any = None, chat_template: str | None = None,
             chat_template_content_format: str = "auto", add_generation_prompt: bool = True,
             continue_final_message: bool = False, tools: list | None = None,
             chat_template_kwargs: dict | None = None, tokenization_kwargs: dict | None = None,
             mm_processor_kwargs: dict | None = None) -> list[RequestOutput]:
        conversations = [messages] if len(messages) > 0 and all(isinstance(m, dict) for m in messages) else list(messages)
        params = sampling_params if sampling_params is not None else SamplingParams()
        if isinstance(params, Sequence):
            if len(params) != len(conversations):
                raise ValueError(f"The lengths of prompts ({len(conversations)}) and params ({len(params)}) must be the same.")
        else:
            params = [params] * len(conversations)
        _log("chat", conversations=len(conversations))
        return [self._generate_one(c, p) for c, p in zip(conversations, params)]

    def _parse(self, conversation: list) -> tuple[list[dict], list]:
        """vLLM's "openai" content format: media parts become ``{"type": "image"}`` markers in place."""
        rendered, images = [], []
        for i, message in enumerate(conversation):
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                raise ValueError(f"message {i}: expected a dict with a role in {_ROLES}, got {message!r:.80}")
            content = message.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
            out = []
            for part in parts:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    out.append({"type": "text", "text": part["text"]})
                elif kind == "image_url" and isinstance(part.get("image_url"), dict):
                    images.append(_decode_image_url(part["image_url"].get("url")))
                    if len(images) > self.image_limit:
                        raise ValueError(f"At most {self.image_limit} image(s) may be provided in one prompt.")
                    out.append({"type": "image"})
                else:
                    raise ValueError(f"Unsupported chat content part type: {kind!r}. Supported types: image_url, text.")
            rendered.append({"role": message["role"], "content": out})
        return rendered, images

    def _generate_one(self, conversation: list, params: SamplingParams) -> RequestOutput:
        rendered, images = self._parse(conversation)
        prompt = self.processor.apply_chat_template(rendered, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt")
        prompt_len = inputs["input_ids"].shape[1]
        if prompt_len > self.max_model_len:
            raise ValueError(
                f"The decoder prompt (length {prompt_len}) is longer than the maximum model length of {self.max_model_len}."
            )
        budget = min(params.max_tokens or self.max_model_len, self.max_model_len - prompt_len)
        sampling: dict[str, Any] = {"do_sample": False}
        if params.temperature >= _SAMPLING_EPS:
            self._torch.manual_seed(self.seed if params.seed is None else params.seed)
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        with self._torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=budget, **sampling)
        new = out[0, prompt_len:].tolist()
        text = self.processor.tokenizer.decode(new, skip_special_tokens=params.skip_special_tokens)
        finish = "length" if len(new) >= budget else "stop"
        completion = CompletionOutput(0, text, new, None, None, finish_reason=finish)
        return RequestOutput(str(next(self.request_counter)), prompt, inputs["input_ids"][0].tolist(), None,
                             [completion], finished=True)
