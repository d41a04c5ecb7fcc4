"""The evaluation recipe (recipes/eval/*.yaml) as typed records, read by the one recipe loader
(:mod:`medsage.config`): a wrong key, type, choice or range names itself before a model loads.

Defaults follow the paper's evaluation: Qwen2.5-VL-class model, LVKC prompt, greedy decoding,
at most 1024 new tokens (section 4.2), no inference-time self-check (the paper's Table 1 answers
are single trajectories), open questions scored by the matcher unless a judge is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medsage.config import bounded, load
from medsage.data_gen.llm_client import LLMConfig
from medsage.plugins.verl.settings import RETRY_TEMPLATE, SELF_CHECK_TEMPLATE

from .prompts import PROMPT_BUILDERS


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    path: str
    limit: int | None = bounded(None, ge=1)
    # loader keywords (SLAKE language, split, subjects, ...) and circular / samples (recipes/eval/README.md)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    path: str  # checkpoint folder (hf, vllm) or served model name (openai)
    backend: Literal["hf", "openai", "vllm"] = "hf"
    label: str = "MEDSAGE (ours)"
    batch_size: int = bounded(8, ge=1)
    device: str = "cpu"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = bounded(16, ge=1)
    timeout_s: float = bounded(600.0, gt=0)
    tensor_parallel_size: int = bounded(1, ge=1)
    data_parallel_size: int = bounded(1, ge=1)
    gpu_memory_utilization: float = bounded(0.9, gt=0, le=1)
    max_model_len: int = bounded(8192, ge=1)

    def __post_init__(self) -> None:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("base_url: required for the openai backend (the server's /v1 address)")


@dataclass(frozen=True)
class JudgeSpec:
    """A judge: its endpoint (written as ``endpoint:``, as the data recipes' judges) and how it is used."""

    endpoint: LLMConfig
    with_image: bool = True
    limit: int | None = bounded(None, ge=1)  # judge at most this many items per benchmark (reasoning judge cost)


@dataclass(frozen=True)
class EvalConfig:
    model: ModelSpec
    benchmarks: tuple[BenchmarkSpec, ...]
    output_dir: Path
    prompt_style: str = "lvkc"
    self_check: Literal["never", "always"] = "never"
    max_new_tokens: int = bounded(1024, ge=1)
    temperature: float = bounded(0.0, ge=0)
    chunk_size: int = bounded(64, ge=1)
    bootstrap_resamples: int = bounded(1000, ge=0)
    seed: int = 0
    open_judge: JudgeSpec | None = None
    reasoning_judge: JudgeSpec | None = None
    # R-GRPO's instruction templates, shipped in the package (a recipe may name its own files)
    self_check_template: str = SELF_CHECK_TEMPLATE
    retry_template: str = RETRY_TEMPLATE

    def __post_init__(self) -> None:
        if not self.benchmarks:
            raise ValueError("benchmarks: expected at least one benchmark")
        if self.prompt_style not in PROMPT_BUILDERS:  # the prompt builders own the choices
            raise ValueError(f"prompt_style: expected one of {', '.join(map(repr, PROMPT_BUILDERS))}, got {self.prompt_style!r}")


def load_recipe(path: str | Path, overrides: tuple[str, ...] = ()) -> EvalConfig:
    """Read a YAML recipe with ``key.sub=value`` overrides, checked whole."""
    return load(EvalConfig, path, overrides)
