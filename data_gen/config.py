"""The build recipe: one YAML file (``recipes/data/*.yaml``) read into typed sections.

Read by the one recipe loader (:mod:`medsage.config`): a wrong type, choice or range and an unknown
key are errors naming the file and the key before any record is read or any model is called, so a
typo never silently falls back to a default or fails a paid build halfway. Defaults follow the
paper: three trajectories per sample from ROIs x templates (RPA, section 3.1), a balanced RL set of
10K (A.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from medsage.config import bounded, load
from medsage.data_gen.imputation import ImputationConfig
from medsage.data_gen.instructions import FilterConfig, InstructionConfig
from medsage.data_gen.llm_client import LLMConfig
from medsage.data_gen.rois import ROIConfig

SourceKind = Literal["deeplesion", "coco", "yolo", "voc", "pubmedvision", "llava",
                     "phantom_deeplesion", "phantom_coco", "phantom_pubmedvision"]
SOURCE_KINDS = get_args(SourceKind)


@dataclass(frozen=True)
class SourceConfig:
    """One dataset: ``root`` for DeepLesion/Roboflow, ``json`` + ``image_root`` for json sources, ``n`` for phantoms."""

    kind: SourceKind
    root: str | None = None
    json: str | None = None
    image_root: str | None = None
    modality: str = ""
    window: str = "dicom"
    n: int = bounded(0, ge=0)
    seed: int = 0
    # At most this many of the source's records, sampled by the build's seed and each record's id
    # (stable under edits of other rows); None: all. BuildConfig.max_records caps all sources together.
    max_records: int | None = bounded(None, ge=1)


@dataclass(frozen=True)
class GenerationConfig:
    backend: Literal["offline", "openai"] = "offline"  # offline: rule-based, the embedded default
    trajectories_per_sample: int = bounded(3, ge=1)
    negatives_per_sample: int = bounded(1, ge=0)  # offline backend: labelled corruptions kept as scorer negatives
    temperature: float = bounded(0.7, ge=0)
    max_tokens: int = bounded(512, ge=1)
    prompt_dir: str | None = None  # None: the stage prompts shipped in the package (data_gen/templates)
    records_in_flight: int = bounded(32, ge=1)  # records read, decoded and generated at once: bounds memory
    # An OpenAI-compatible endpoint (GPT-4o, or ``vllm serve``); the key comes from ``api_key_env``.
    endpoint: LLMConfig = field(default_factory=lambda: LLMConfig(base_url="http://127.0.0.1:8000/v1", model="gpt-4o"))


@dataclass(frozen=True)
class VerificationConfig:
    judge: bool = False
    max_tokens: int = bounded(256, ge=1)
    endpoint: LLMConfig = field(
        default_factory=lambda: LLMConfig(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-VL-72B-Instruct")
    )


@dataclass(frozen=True)
class ExportConfig:
    sft_dataset_name: str = "sage_sft"
    sft_max_per_sample: int = bounded(3, ge=1)
    # At most this many SFT rows, the samples taken in a seeded order of their ids (None: all).
    sft_size: int | None = bounded(None, ge=1)
    rl_size: int = bounded(10_000, ge=0)
    val_fraction: float = bounded(0.05, ge=0, le=0.5)
    rl_max_answer_words: int = bounded(8, ge=1)
    # The SFT recipe's image_max_pixels (recipes/sft: 768*768): RL images are written at the size
    # LLaMA-Factory gives them in SFT, so rollout, training and SFT see the same image.
    rl_image_max_pixels: int = bounded(589_824, ge=1)
    # A Hugging Face processor (hub id or path, e.g. the SFT checkpoint) to count each RL prompt's tokens,
    # image included, as verl does; prompts over rl_max_prompt_length (the RL recipe's
    # data.max_prompt_length) are dropped by verl without a count, so the card counts them. None: not counted.
    rl_processor: str | None = None
    rl_max_prompt_length: int = bounded(2048, ge=1)


@dataclass(frozen=True)
class LeakageConfig:
    eval_dirs: tuple[str, ...] = ()
    max_distance: int = bounded(20, ge=0, le=256)  # of 256 bits: re-encoded copies differ by <= ~14, different scans by >= ~30


@dataclass(frozen=True)
class BuildConfig:
    output_dir: str
    sources: tuple[SourceConfig, ...]
    seed: int = 0
    max_records: int | None = bounded(None, ge=1)
    filter: FilterConfig = field(default_factory=FilterConfig)
    imputation: ImputationConfig = field(default_factory=ImputationConfig)
    instructions: InstructionConfig = field(default_factory=InstructionConfig)
    rois: ROIConfig = field(default_factory=ROIConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    verification: VerificationConfig = field(default_factory=VerificationConfig)
    exports: ExportConfig = field(default_factory=ExportConfig)
    leakage: LeakageConfig = field(default_factory=LeakageConfig)

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("sources: expected at least one source")


def load_config(path: Path | str, overrides: tuple[str, ...] = ()) -> BuildConfig:
    """Read a build recipe with ``a.b=value`` overrides; relative ``output_dir`` and source paths are
    taken from the current directory."""
    return load(BuildConfig, path, overrides)
