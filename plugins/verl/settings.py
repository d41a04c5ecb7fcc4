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
    self_check_max_tokens: int = 256
    reward_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"{SECTION}.alpha must be >= 0 (the paper uses 0.2), got {self.alpha}")
        if self.self_check_max_tokens < 1:
            raise ValueError(f"{SECTION}.self_check_max_tokens must be >= 1, got {self.self_check_max_tokens}")

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
