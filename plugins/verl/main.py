"""R-GRPO entry point: ``python -m medsage.plugins.verl.main [hydra overrides]``, as verl's ``main_ppo``.

It composes verl's ``ppo_trainer.yaml`` with ``config/rgrpo_trainer.yaml`` (or a recipe built on
it, ``--config-path=$PWD/recipes/rl --config-name=...``), checks the R-GRPO settings with clear
errors, makes file paths absolute (Ray workers may start elsewhere), asks every verl process to
import ``medsage.plugins.verl.trainer`` (``VERL_USE_EXTERNAL_MODULES``, forwarded through Ray's
runtime env) and then runs verl's own ``main_ppo`` unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from .settings import SECTION, RGRPOSettings

EXTERNAL_MODULE = "medsage.plugins.verl.trainer"


class ConfigError(ValueError):
    """An R-GRPO configuration that cannot run; the message names the key and the fix."""


def prepare(config: DictConfig) -> DictConfig:
    """Validate ``config`` for R-GRPO and resolve its paths in place; returns it."""
    settings = RGRPOSettings.from_config(config)
    _require(config.trainer.use_v1, "trainer.use_v1 must be true: R-GRPO runs on verl's v1 trainer")
    _require(
        config.trainer.v1.trainer_mode == "rgrpo",
        f"trainer.v1.trainer_mode must be 'rgrpo' (got {config.trainer.v1.trainer_mode!r})",
    )
    _require(
        config.algorithm.adv_estimator == "grpo",
        f"algorithm.adv_estimator must be 'grpo' (got {config.algorithm.adv_estimator!r}): "
        "R-GRPO replaces verl's GRPO advantage step",
    )
    reward_model = config.reward.reward_model
    _require(
        not reward_model.enable or reward_model.enable_resource_pool,
        "reward.reward_model.enable needs reward.reward_model.enable_resource_pool: a colocated reward "
        "model would overwrite the self-check loop's reward",
    )
    actor = config.actor_rollout_ref.actor
    _require(
        not actor.freeze_vision_tower or actor.strategy == "fsdp2",
        f"actor_rollout_ref.actor.freeze_vision_tower needs actor_rollout_ref.actor.strategy=fsdp2 (got {actor.strategy!r})",
    )
    agent = config.actor_rollout_ref.rollout.agent
    with open_dict(config):
        agent.agent_loop_config_path = _existing(agent.agent_loop_config_path, "actor_rollout_ref.rollout.agent.agent_loop_config_path")
        if settings.self_check:
            for key in ("self_check_template", "retry_template"):
                config[SECTION][key] = _existing(config[SECTION][key], f"{SECTION}.{key}")
        ray_init = config.ray_kwargs.ray_init
        runtime_env = OmegaConf.to_container(ray_init.get("runtime_env") or {}, resolve=True)
        env_vars = runtime_env.setdefault("env_vars", {})
        env_vars["VERL_USE_EXTERNAL_MODULES"] = _with_module(env_vars.get("VERL_USE_EXTERNAL_MODULES", ""))
        ray_init.runtime_env = runtime_env
    os.environ["VERL_USE_EXTERNAL_MODULES"] = _with_module(os.environ.get("VERL_USE_EXTERNAL_MODULES", ""))
    return config


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _existing(path: str, key: str) -> str:
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise ConfigError(f"{key}={path}: no such file (relative paths resolve against {Path.cwd()})")
    return str(resolved)


def _with_module(modules: str) -> str:
    names = [m for m in modules.split(",") if m]
    return ",".join(names if EXTERNAL_MODULE in names else names + [EXTERNAL_MODULE])


@hydra.main(config_path="config", config_name="rgrpo", version_base=None)
def main(config: DictConfig) -> None:
    from verl.trainer import main_ppo

    import medsage.plugins.verl.trainer  # noqa: F401  (registers the trainer in this process too)

    main_ppo.main(prepare(config))


if __name__ == "__main__":
    main()
