"""The ``medsage`` section of the verl trainer config: every R-GRPO knob in one place.

The agent loop (in rollout workers) and the trainer (in the driver's task runner) both read the
whole verl config, so one section serves both and the paper's ablations are one override away:
``medsage.alpha=0`` (Table 4, base reward only) and ``medsage.self_check=false`` (Table 5, plain
GRPO on the first attempt). Defaults follow the paper (section 3.3, appendix B.1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import jinja2
from omegaconf import DictConfig, OmegaConf

from medsage.reward_fns.scaffold import SELF_CHECK_DIMENSIONS, SELF_CHECK_TAG, STAGE_TITLES, STAGES

SECTION = "medsage"


@dataclass(frozen=True)
class RGRPOSettings:
    """R-GRPO settings; see recipes/rl/README.md for each field."""

    alpha: float = 0.2
    self_check: bool = True
    self_check_template: str = "recipes/rl/templates/self_check.jinja"
    retry_template: str = "recipes/rl/templates/retry.jinja"
    attempt_max_tokens: int = 1024
    self_check_max_tokens: int = 256
    reward_kwargs: dict[str, Any] = field(default_factory=dict)
    sessions_dir: str | None = None

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"{SECTION}.alpha must be >= 0 (the paper uses 0.2), got {self.alpha}")
        for key in ("attempt_max_tokens", "self_check_max_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"{SECTION}.{key} must be >= 1, got {getattr(self, key)}")

    @classmethod
    def from_config(cls, config: DictConfig | Mapping[str, Any]) -> "RGRPOSettings":
        """Read the ``medsage`` section of a full trainer config; unknown keys are an error."""
        section = config.get(SECTION) if config is not None else None
        if section is None:
            raise ValueError(f"the trainer config has no '{SECTION}' section; compose it from rgrpo_trainer.yaml")
        values = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in '{SECTION}'; expected some of {sorted(known)}")
        return cls(**values)

    def templates(self) -> tuple[str, str]:
        """The rendered self-check and retry instructions (files must exist)."""
        return render_instruction(self.self_check_template), render_instruction(self.retry_template)


def check_budget(settings: RGRPOSettings, response_length: int) -> None:
    """Check that ``rollout.response_length``, the budget of a whole session, fits its spans.

    It must hold one full attempt; with the self-check on it must also hold a full retry:
    tau1 and tau2 at ``attempt_max_tokens`` each plus the self-check at ``self_check_max_tokens``.
    The two injected instructions come on top (about 220 tokens with Qwen2.5-VL's tokenizer and the
    templates in recipes/rl/templates); counting them needs the tokenizer and a session that runs
    out of budget stops cleanly, so they are left to the recipe's margin rather than checked here.
    Raises ValueError naming the keys; meant for the entry point, before anything starts.
    """
    key = "actor_rollout_ref.rollout.response_length (data.max_response_length)"
    if response_length < settings.attempt_max_tokens:
        raise ValueError(
            f"{key}={response_length} cannot hold one attempt of {SECTION}.attempt_max_tokens="
            f"{settings.attempt_max_tokens}; raise data.max_response_length or lower {SECTION}.attempt_max_tokens"
        )
    retry = 2 * settings.attempt_max_tokens + settings.self_check_max_tokens
    if settings.self_check and response_length < retry:
        raise ValueError(
            f"{key}={response_length} cannot hold a full retry: 2 x {SECTION}.attempt_max_tokens + "
            f"{SECTION}.self_check_max_tokens = {retry} tokens, plus room for the two injected instructions "
            f"(~220 tokens with Qwen2.5-VL); raise data.max_response_length (the paper recipe holds "
            f"2 x 1024 + 256 in 2600), lower the caps, or set {SECTION}.self_check=false"
        )


def render_instruction(path: str | Path) -> str:
    """Render an instruction template. Its only variables are the scaffold's tags, so an instruction
    can never carry the reference answer (the loop passes none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{SECTION}: instruction template {path} does not exist (cwd {Path.cwd()})")
    return _render(path.resolve(), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _render(path: Path, mtime_ns: int) -> str:
    """Rendered once per file version: verl builds a new agent loop for every session."""
    template = jinja2.Template(path.read_text(encoding="utf-8"), undefined=jinja2.StrictUndefined)
    return template.render(
        check_tag=SELF_CHECK_TAG, dimensions=SELF_CHECK_DIMENSIONS, stages=STAGES, stage_titles=STAGE_TITLES
    ).strip()
