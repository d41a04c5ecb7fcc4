"""The evaluation recipe (recipes/eval/*.yaml) as typed records; a wrong key or value names itself.

Defaults follow the paper's evaluation: Qwen2.5-VL-class model, LVKC prompt, greedy decoding,
at most 1024 new tokens (section 4.2), no inference-time self-check (the paper's Table 1 answers
are single trajectories), open questions scored by the matcher unless a judge is configured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medsage.data_gen.llm_client import LLMConfig

from .prompts import PROMPT_BUILDERS, SELF_CHECK_MODES

BACKENDS = ("hf", "openai", "vllm")


class RecipeError(ValueError):
    """A recipe that cannot be run, with the file and the offending key in the message."""


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    path: str
    limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # loader keywords: lang, split, subjects, ...


@dataclass(frozen=True)
class ModelSpec:
    path: str  # checkpoint folder (hf, vllm) or served model name (openai)
    backend: str = "hf"
    label: str = "MEDSAGE (ours)"
    batch_size: int = 8
    device: str = "cpu"
    dtype: str = "auto"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    timeout_s: float = 600.0
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 8192


@dataclass(frozen=True)
class JudgeSpec:
    """A judge: its endpoint (every LLMConfig key, written flat in the recipe) and how it is used."""

    endpoint: LLMConfig
    with_image: bool = True
    limit: int | None = None  # judge at most this many items per benchmark (reasoning judge cost)

    @classmethod
    def from_recipe(cls, data: Any, where: str) -> "JudgeSpec":
        if not isinstance(data, dict):
            raise RecipeError(f"{where}: expected a mapping, got {type(data).__name__}")
        usage = {k: data[k] for k in ("with_image", "limit") if k in data}
        endpoint = {k: v for k, v in data.items() if k not in usage}
        try:
            return cls(endpoint=_build(LLMConfig, endpoint, where), **usage)
        except RecipeError:
            raise
        except ValueError as err:  # LLMConfig's own range checks
            raise RecipeError(f"{where}: {err}") from None


@dataclass(frozen=True)
class EvalConfig:
    model: ModelSpec
    benchmarks: tuple[BenchmarkSpec, ...]
    output_dir: Path
    prompt_style: str = "lvkc"
    self_check: str = "never"
    max_new_tokens: int = 1024
    temperature: float = 0.0
    chunk_size: int = 64
    bootstrap_resamples: int = 1000
    seed: int = 0
    open_judge: JudgeSpec | None = None
    reasoning_judge: JudgeSpec | None = None
    # R-GRPO's instruction templates (relative paths resolve from the working directory, as in RL)
    self_check_template: str = "recipes/rl/templates/self_check.jinja"
    retry_template: str = "recipes/rl/templates/retry.jinja"


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    required = [
        f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if k not in data]
    if missing:
        raise RecipeError(f"{where}: missing key(s) {missing}")
    return cls(**data)


def config_from_dict(data: dict[str, Any], source: str = "recipe") -> EvalConfig:
    """Validate a parsed recipe and build an :class:`EvalConfig`."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: expected a mapping at the top level")
    data = dict(data)
    data["model"] = _build(ModelSpec, data.get("model"), f"{source}: model")
    benches = data.get("benchmarks")
    if not isinstance(benches, list) or not benches:
        raise RecipeError(f"{source}: benchmarks: expected a non-empty list")
    data["benchmarks"] = tuple(_build(BenchmarkSpec, b, f"{source}: benchmarks[{i}]") for i, b in enumerate(benches))
    for key in ("open_judge", "reasoning_judge"):
        if data.get(key) is not None:
            data[key] = JudgeSpec.from_recipe(data[key], f"{source}: {key}")
    if "output_dir" in data:
        data["output_dir"] = Path(data["output_dir"])
    config = _build(EvalConfig, data, source)
    _check_values(config, source)
    return config


def _check_values(config: EvalConfig, source: str) -> None:
    if config.model.backend not in BACKENDS:
        raise RecipeError(f"{source}: model.backend: {config.model.backend!r} is not one of {BACKENDS}")
    if config.model.backend == "openai" and not config.model.base_url:
        raise RecipeError(f"{source}: model.base_url is required for the openai backend")
    if config.prompt_style not in PROMPT_BUILDERS:
        raise RecipeError(f"{source}: prompt_style: {config.prompt_style!r} is not one of {sorted(PROMPT_BUILDERS)}")
    if config.self_check not in SELF_CHECK_MODES:
        raise RecipeError(f"{source}: self_check: {config.self_check!r} is not one of {SELF_CHECK_MODES}")
    if config.chunk_size < 1 or config.max_new_tokens < 1:
        raise RecipeError(f"{source}: chunk_size and max_new_tokens must be >= 1")


def _apply_override(data: dict[str, Any], assignment: str, source: str) -> None:
    """``a.b=value`` sets ``data["a"]["b"]``; the value is read as YAML (numbers, null, lists)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise RecipeError(f"{source}: override {assignment!r} is not key=value")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"{source}: override {assignment!r}: {part!r} is not a mapping")
    node[leaf] = yaml.safe_load(raw)


def load_recipe(path: str | Path, overrides: tuple[str, ...] = ()) -> EvalConfig:
    """Read a YAML recipe, apply ``key.sub=value`` overrides, and validate it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise RecipeError(f"{path}: cannot read recipe ({err})") from err
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping at the top level")
    for assignment in overrides:
        _apply_override(data, assignment, str(path))
    return config_from_dict(data, str(path))
