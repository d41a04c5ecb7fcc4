"""The ``medsage`` section of the verl trainer config: every R-GRPO knob in one place.

The agent loop (in rollout workers) and the trainer (in the driver's task runner) both read the
whole verl config, so one section serves both and the paper's ablations are one override away:
``medsage.alpha=0`` (Table 4, base reward only) and ``medsage.self_check=false`` (Table 5, plain
GRPO on the first attempt). Defaults follow the paper (section 3.3, appendix B.1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import jinja2
from omegaconf import DictConfig, OmegaConf

from medsage.config import bounded, build, package_file
from medsage.reward_fns.rewards import RewardKwargs
from medsage.reward_fns.scaffold import SELF_CHECK_DIMENSIONS, SELF_CHECK_TAG, STAGE_TITLES, STAGES

SECTION = "medsage"
# Shipped inside the package, so any launch directory finds them; a recipe may name its own files.
SELF_CHECK_TEMPLATE = "pkg://medsage.plugins.verl/templates/self_check.jinja"
RETRY_TEMPLATE = "pkg://medsage.plugins.verl/templates/retry.jinja"


@dataclass(frozen=True)
class RGRPOSettings:
    """R-GRPO settings; see recipes/rl/README.md for each field."""

    alpha: float = bounded(0.2, ge=0)
    self_check: bool = True
    self_check_template: str = SELF_CHECK_TEMPLATE
    retry_template: str = RETRY_TEMPLATE
    attempt_max_tokens: int = bounded(1024, ge=1)
    self_check_max_tokens: int = bounded(256, ge=1)
    reward_kwargs: dict[str, Any] = field(default_factory=dict)
    sessions_dir: str | None = None

    @classmethod
    def from_config(cls, config: DictConfig | Mapping[str, Any]) -> "RGRPOSettings":
        """Read the ``medsage`` section of a full trainer config with the one recipe loader
        (:mod:`medsage.config`): types, ranges and unknown keys are errors naming ``medsage.<key>``."""
        section = config.get(SECTION) if config is not None else None
        if section is None:
            raise ValueError(f"the trainer config has no '{SECTION}' section; compose it from rgrpo_trainer.yaml")
        values = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)
        settings = build(cls, values, "the verl config", SECTION)
        build(RewardKwargs, settings.reward_kwargs, "the verl config", f"{SECTION}.reward_kwargs")
        return settings

    def templates(self) -> tuple[str, str]:
        """The rendered self-check and retry instructions (files must exist)."""
        return render_instruction(self.self_check_template), render_instruction(self.retry_template)


def check_budget(settings: RGRPOSettings, response_length: int) -> None:
    """Check that ``rollout.response_length``, the budget of a whole session, fits its spans.

    It must hold one full attempt; with the self-check on it must also hold a full retry:
    tau1 and tau2 at ``attempt_max_tokens`` each plus the self-check at ``self_check_max_tokens``.
    The two injected instructions come on top (about 220 tokens with Qwen2.5-VL's tokenizer and the
    shipped templates); counting them needs the tokenizer and a session that runs
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
    path = package_file(path)
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
