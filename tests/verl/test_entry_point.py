"""The entry point's configuration: the paper recipe composes with verl's own config and validation,
and bad overrides fail with messages that name the key."""

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass, validate_config

from conftest import REPO
from medsage.plugins.verl.main import EXTERNAL_MODULE, ConfigError, prepare
from medsage.plugins.verl.settings import RGRPOSettings

RECIPES = REPO / "recipes" / "rl"
RECIPE = "rgrpo_qwen2_5_vl_7b"


def _recipe(*overrides):
    with initialize_config_dir(config_dir=str(RECIPES), version_base=None):
        return compose(RECIPE, overrides=list(overrides))


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("VERL_USE_EXTERNAL_MODULES", raising=False)


def test_recipe_has_the_paper_settings_and_passes_verl_validation():
    config = prepare(_recipe())
    rollout, actor = config.actor_rollout_ref.rollout, config.actor_rollout_ref.actor
    assert (rollout.n, rollout.name, rollout.prompt_length, rollout.response_length) == (6, "vllm", 2048, 1024)
    assert (actor.optim.lr, config.trainer.total_epochs, config.trainer.n_gpus_per_node) == (1e-5, 8, 4)
    assert actor.freeze_vision_tower and actor.strategy == "fsdp2"
    assert RGRPOSettings.from_config(config).alpha == 0.2
    assert config.actor_rollout_ref.rollout.agent.default_agent_loop == "medsage_self_check"
    # Paths are absolute for Ray workers; every verl process will import the trainer module.
    assert os.path.isabs(config.medsage.self_check_template) and os.path.isabs(rollout.agent.agent_loop_config_path)
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES == EXTERNAL_MODULE
    assert os.environ["VERL_USE_EXTERNAL_MODULES"] == EXTERNAL_MODULE
    # verl's own checks and dataclasses accept the composed config.
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    assert omega_conf_to_dataclass(actor).freeze_vision_tower
    assert config.reward.custom_reward_function.reward_kwargs.reward_weights.accuracy == 0.9


def test_ablation_switches_compose():
    config = prepare(_recipe("medsage.alpha=0", "medsage.self_check=false"))
    settings = RGRPOSettings.from_config(config)
    assert (settings.alpha, settings.self_check) == (0.0, False)


def test_existing_external_modules_are_kept():
    os.environ["VERL_USE_EXTERNAL_MODULES"] = "my.plugin"
    prepare(_recipe())
    assert os.environ["VERL_USE_EXTERNAL_MODULES"] == f"my.plugin,{EXTERNAL_MODULE}"


def test_unknown_key_is_rejected_by_hydra():
    with pytest.raises(ConfigCompositionException, match="medsage.alpa"):
        _recipe("medsage.alpa=0.3")


@pytest.mark.parametrize(
    "override, error, message",
    [
        ("medsage.alpha=-0.1", ValueError, r"medsage.alpha must be >= 0"),
        ("medsage.self_check_max_tokens=0", ValueError, r"medsage.self_check_max_tokens must be >= 1"),
        ("actor_rollout_ref.actor.strategy=fsdp", ConfigError, r"freeze_vision_tower needs .*strategy=fsdp2"),
        ("algorithm.adv_estimator=gae", ConfigError, r"algorithm.adv_estimator must be 'grpo'"),
        ("trainer.v1.trainer_mode=sync", ConfigError, r"trainer_mode must be 'rgrpo'"),
        ("reward.reward_model.enable=true", ConfigError, r"enable_resource_pool"),
        ("medsage.retry_template=nowhere/retry.jinja", ConfigError, r"medsage.retry_template=nowhere/retry.jinja: no such file"),
    ],
)
def test_bad_override_fails_with_a_clear_message(override, error, message):
    with pytest.raises(error, match=message):
        prepare(_recipe(override))


def test_command_line_reports_a_bad_override():
    cmd = [sys.executable, "-m", "medsage.plugins.verl.main", f"--config-path={RECIPES}", f"--config-name={RECIPE}",
           "medsage.alpha=-1"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "medsage.alpha must be >= 0" in result.stderr


def test_every_verl_process_finds_the_trainer_and_the_loop():
    code = (
        "import verl\n"
        "from verl.trainer.ppo.v1 import get_trainer_cls\n"
        "from verl.experimental.agent_loop.agent_loop import _agent_loop_registry\n"
        "print(get_trainer_cls('rgrpo').__name__, 'medsage_self_check' in _agent_loop_registry)\n"
    )
    env = dict(os.environ, VERL_USE_EXTERNAL_MODULES=EXTERNAL_MODULE)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["RGRPOTrainer", "True"], result.stderr[-2000:]
