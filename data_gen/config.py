"""The build recipe: one YAML file (``recipes/data/*.yaml``) read into typed sections.

Unknown keys are errors naming the file and the key, so a typo never silently falls back to a
default. Defaults follow the paper: three trajectories per sample from ROIs x templates (RPA,
section 3.1), a balanced RL set of 10K (A.4).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medsage.data_gen.imputation import ImputationConfig
from medsage.data_gen.instructions import FilterConfig, InstructionConfig
from medsage.data_gen.llm_client import LLMConfig
from medsage.data_gen.rois import ROIConfig

SOURCE_KINDS = ("deeplesion", "coco", "yolo", "voc", "pubmedvision", "llava",
                "phantom_deeplesion", "phantom_coco", "phantom_pubmedvision")


@dataclass(frozen=True)
class SourceConfig:
    """One dataset: ``root`` for DeepLesion/Roboflow, ``json`` + ``image_root`` for json sources, ``n`` for phantoms."""

    kind: str
    root: str | None = None
    json: str | None = None
    image_root: str | None = None
    modality: str = ""
    window: str = "dicom"
    n: int = 0
    seed: int = 0
    # At most this many of the source's records, sampled by the build's seed and each record's id
    # (stable under edits of other rows); None: all. BuildConfig.max_records caps all sources together.
    max_records: int | None = None


@dataclass(frozen=True)
class GenerationConfig:
    backend: str = "offline"  # offline (rule-based, the embedded default) | openai
    trajectories_per_sample: int = 3
    negatives_per_sample: int = 1  # offline backend: labelled corruptions kept as scorer negatives
    temperature: float = 0.7
    max_tokens: int = 512
    prompt_dir: str | None = None
    records_in_flight: int = 32  # records read, decoded and generated at once: bounds memory
    # An OpenAI-compatible endpoint (GPT-4o, or ``vllm serve``); the key comes from ``api_key_env``.
    endpoint: LLMConfig = field(default_factory=lambda: LLMConfig(base_url="http://127.0.0.1:8000/v1", model="gpt-4o"))


@dataclass(frozen=True)
class VerificationConfig:
    judge: bool = False
    max_tokens: int = 256
    endpoint: LLMConfig = field(
        default_factory=lambda: LLMConfig(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-VL-72B-Instruct")
    )


@dataclass(frozen=True)
class ExportConfig:
    sft_dataset_name: str = "sage_sft"
    sft_max_per_sample: int = 3
    # At most this many SFT rows, the samples taken in a seeded order of their ids (None: all).
    sft_size: int | None = None
    rl_size: int = 10_000
    val_fraction: float = 0.05
    rl_max_answer_words: int = 8
    # The SFT recipe's image_max_pixels (recipes/sft: 768*768): RL images are written at the size
    # LLaMA-Factory gives them in SFT, so rollout, training and SFT see the same image.
    rl_image_max_pixels: int = 589_824
    # A Hugging Face processor (hub id or path, e.g. the SFT checkpoint) to count each RL prompt's tokens,
    # image included, as verl does; prompts over rl_max_prompt_length (the RL recipe's
    # data.max_prompt_length) are dropped by verl without a count, so the card counts them. None: not counted.
    rl_processor: str | None = None
    rl_max_prompt_length: int = 2048


@dataclass(frozen=True)
class LeakageConfig:
    eval_dirs: tuple[str, ...] = ()
    max_distance: int = 20  # of 256 bits: re-encoded copies differ by <= ~14, different scans by >= ~30


@dataclass(frozen=True)
class BuildConfig:
    output_dir: str
    sources: tuple[SourceConfig, ...]
    seed: int = 0
    max_records: int | None = None
    filter: FilterConfig = field(default_factory=FilterConfig)
    imputation: ImputationConfig = field(default_factory=ImputationConfig)
    instructions: InstructionConfig = field(default_factory=InstructionConfig)
    rois: ROIConfig = field(default_factory=ROIConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    verification: VerificationConfig = field(default_factory=VerificationConfig)
    exports: ExportConfig = field(default_factory=ExportConfig)
    leakage: LeakageConfig = field(default_factory=LeakageConfig)


def _build(cls, data: object, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    values = {}
    for name, value in data.items():
        sub = _SECTIONS.get((cls, name))
        if sub is not None:
            values[name] = _build(sub, value, f"{where}.{name}")
        elif (cls, name) == (BuildConfig, "sources"):
            if not isinstance(value, list) or not value:
                raise ValueError(f"{where}.sources: expected a non-empty list")
            values[name] = tuple(_source(v, f"{where}.sources[{i}]") for i, v in enumerate(value))
        else:
            values[name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:  # missing keys, or a section's own validation
        raise ValueError(f"{where}: {err}") from None


def _source(data: object, where: str) -> SourceConfig:
    source = _build(SourceConfig, data, where)
    if source.kind not in SOURCE_KINDS:
        raise ValueError(f"{where}.kind: {source.kind!r} is not one of {SOURCE_KINDS}")
    return source


_SECTIONS = {
    (BuildConfig, "filter"): FilterConfig,
    (BuildConfig, "imputation"): ImputationConfig,
    (BuildConfig, "instructions"): InstructionConfig,
    (BuildConfig, "rois"): ROIConfig,
    (BuildConfig, "generation"): GenerationConfig,
    (BuildConfig, "verification"): VerificationConfig,
    (BuildConfig, "exports"): ExportConfig,
    (BuildConfig, "leakage"): LeakageConfig,
    (GenerationConfig, "endpoint"): LLMConfig,
    (VerificationConfig, "endpoint"): LLMConfig,
    (ImputationConfig, "endpoint"): LLMConfig,
}


def load_config(path: Path | str) -> BuildConfig:
    """Read a build recipe; relative ``output_dir`` and source paths are taken from the current directory."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    config = _build(BuildConfig, data, str(path))
    if config.generation.backend not in ("offline", "openai"):
        raise ValueError(f"{path}: generation.backend must be 'offline' or 'openai'")
    return config
