"""R-GRPO entry point: ``python -m medsage.plugins.verl.main [hydra overrides]``, as verl's ``main_ppo``.

It composes verl's ``ppo_trainer.yaml`` with ``config/rgrpo_trainer.yaml`` (or a recipe built on
it, ``--config-path=$PWD/recipes/rl --config-name=...``), checks the R-GRPO settings with clear
errors, makes file paths absolute (Ray workers may start elsewhere) and runs verl's own ``run_ppo``
with :class:`~medsage.plugins.verl.trainer.RGRPOTaskRunner`, the task runner whose process registers
the R-GRPO trainer. With ``trainer.device=cpu`` it selects the CPU backend
(:mod:`medsage.plugins.verl.cpu`) in every Ray process: ``VERL_PLATFORM=cpu`` and the backend in
``VERL_USE_EXTERNAL_MODULES``, forwarded through Ray's runtime env.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from medsage.config import USAGE_ERROR, ConfigError, missing_model, missing_paths, package_file

from .settings import SECTION, RGRPOSettings, check_budget

CPU_BACKEND = "medsage.plugins.verl.cpu"
CPU_ROLLOUT = "hf"
RL_DATA_HINT = "the RL data build writes rl/train.parquet and rl/val.parquet: bash recipes/data/build.sh sage_rl10k"


def prepare(config: DictConfig) -> DictConfig:
    """Validate ``config`` for R-GRPO and resolve its paths in place; returns it."""
    settings = RGRPOSettings.from_config(config)
    check_budget(settings, config.actor_rollout_ref.rollout.response_length)
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
    if config.trainer.device == "cpu":
        _select_cpu_backend(config)
    else:
        _require(
            config.actor_rollout_ref.rollout.name != CPU_ROLLOUT,
            f"actor_rollout_ref.rollout.name={CPU_ROLLOUT} is the CPU backend's rollout; it needs trainer.device=cpu",
        )
    return config


def preflight(config: DictConfig) -> None:
    """What this machine must have before Ray starts, checked in seconds: the data files, a local
    model folder, and on one node as many accelerators as ``trainer.n_gpus_per_node`` (Ray would
    otherwise wait for missing GPUs without end, and a missing file would surface as a worker's
    traceback minutes later)."""
    data = missing_paths(((f"data.{key}", path) for key in ("train_files", "val_files") for path in _paths(config.data[key])), "file")
    missing = [f"{'; '.join(data)} ({RL_DATA_HINT})"] if data else []
    missing += missing_model("actor_rollout_ref.model.path", str(config.actor_rollout_ref.model.path))
    _require(not missing, "; ".join(missing))
    device, wanted = config.trainer.device, config.trainer.n_gpus_per_node
    if device == "cpu" or config.trainer.nnodes != 1 or _ray_cluster_running():
        return
    from verl.plugin.platform.platform_manager import get_platform

    platform = get_platform()
    have = platform.device_count() if platform.is_available() else 0
    if have < wanted:
        hint = f"set trainer.n_gpus_per_node={have}" if have else "trainer.device=cpu runs on a CPU (recipes/rl/rgrpo_tiny_cpu.yaml)"
        raise ConfigError(f"trainer.n_gpus_per_node={wanted}, but this machine has {have} {platform.device_name} device(s): {hint}")


def _paths(value: object) -> list[str]:
    """The local files of a verl ``data.*_files`` value (a path or a list); remote URLs are verl's to read."""
    paths = [value] if isinstance(value, str) else list(value or [])
    return [str(p) for p in paths if "://" not in str(p)]


def _ray_cluster_running() -> bool:
    """A Ray cluster to join (``ray start`` on this node, or ``RAY_ADDRESS``): its nodes' devices count, not this one's."""
    return bool(os.environ.get("RAY_ADDRESS")) or Path("/tmp/ray/ray_current_cluster").exists()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _existing(path: str, key: str) -> str:
    resolved = package_file(path).resolve()
    if not resolved.is_file():
        raise ConfigError(f"{key}={path}: no such file (relative paths resolve against {Path.cwd()})")
    return str(resolved)


def _select_cpu_backend(config: DictConfig) -> None:
    """verl's platform and engines are chosen per process: set them for this one and every Ray worker."""
    rollout, actor = config.actor_rollout_ref.rollout, config.actor_rollout_ref.actor
    _require(
        rollout.name == CPU_ROLLOUT,
        f"trainer.device=cpu needs actor_rollout_ref.rollout.name={CPU_ROLLOUT} (got {rollout.name!r}): "
        "vLLM, SGLang and TensorRT-LLM need an accelerator",
    )
    for key, role in (("actor", actor), ("ref", config.actor_rollout_ref.ref)):
        _require(role.strategy == "fsdp2", f"actor_rollout_ref.{key}.strategy must be fsdp2 on the CPU backend (got {role.strategy!r})")
    env = {"VERL_PLATFORM": "cpu", "VERL_USE_EXTERNAL_MODULES": _with_module(os.environ.get("VERL_USE_EXTERNAL_MODULES", ""))}
    with open_dict(config):
        ray_init = config.ray_kwargs.ray_init
        runtime_env = OmegaConf.to_container(ray_init.get("runtime_env") or {}, resolve=True)
        runtime_env.setdefault("env_vars", {}).update(env)
        ray_init.runtime_env = runtime_env
    os.environ.update(env)
    importlib.import_module(CPU_BACKEND)  # registers the platform before verl resolves it here


def _with_module(modules: str) -> str:
    names = [m for m in modules.split(",") if m]
    return ",".join(names if CPU_BACKEND in names else names + [CPU_BACKEND])


@hydra.main(config_path="config", config_name="rgrpo", version_base=None)
def main(config: DictConfig) -> None:
    try:
        config = prepare(config)
        preflight(config)
    except ConfigError as err:  # the user's to fix: the message alone, as every medsage command does
        print(f"medsage-rgrpo: {err}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    from .trainer import RGRPOTaskRunner

    # What verl's main_ppo.main does before run_ppo, with the R-GRPO task runner instead of its own.
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_ppo(config, task_runner_class=RGRPOTaskRunner)


if __name__ == "__main__":
    main()
