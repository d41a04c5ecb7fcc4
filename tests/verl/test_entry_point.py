"""The entry point's configuration: the paper recipe composes with verl's own config and validation,
and bad overrides fail with messages that name the key."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass, validate_config

from verl_inputs import REPO
from medsage.plugins.verl.main import CPU_BACKEND, ConfigError, preflight, prepare
from medsage.plugins.verl.settings import RGRPOSettings

RECIPES = REPO / "recipes" / "rl"
RECIPE = "rgrpo_qwen2_5_vl_7b"


def _recipe(*overrides):
    with initialize_config_dir(config_dir=str(RECIPES), version_base=None):
        return compose(RECIPE, overrides=list(overrides))


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)
    for name in ("VERL_USE_EXTERNAL_MODULES", "VERL_PLATFORM"):
        monkeypatch.delenv(name, raising=False)


def test_recipe_has_the_paper_settings_and_passes_verl_validation():
    config = prepare(_recipe())
    rollout, actor = config.actor_rollout_ref.rollout, config.actor_rollout_ref.actor
    assert (rollout.n, rollout.name, rollout.prompt_length, rollout.response_length) == (6, "vllm", 2048, 2600)
    assert (actor.optim.lr, config.trainer.total_epochs, config.trainer.n_gpus_per_node) == (1e-5, 8, 4)
    assert actor.freeze_vision_tower and actor.strategy == "fsdp2"
    assert RGRPOSettings.from_config(config).alpha == 0.2
    assert config.actor_rollout_ref.rollout.agent.default_agent_loop == "medsage_self_check"
    # Paths are absolute for Ray workers; on GPUs no verl process is asked to import anything of ours
    # (the task runner imports the trainer itself; workers import the classes they are handed).
    assert os.path.isabs(config.medsage.self_check_template) and os.path.isabs(rollout.agent.agent_loop_config_path)
    assert "VERL_USE_EXTERNAL_MODULES" not in os.environ and "VERL_PLATFORM" not in os.environ
    assert "VERL_USE_EXTERNAL_MODULES" not in str(config.ray_kwargs.ray_init.get("runtime_env"))
    # verl's own checks and dataclasses accept the composed config.
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    assert omega_conf_to_dataclass(actor).freeze_vision_tower
    assert config.reward.custom_reward_function.reward_kwargs.reward_weights.accuracy == 0.9


def test_ablation_switches_compose():
    config = prepare(_recipe("medsage.alpha=0", "medsage.self_check=false"))
    settings = RGRPOSettings.from_config(config)
    assert (settings.alpha, settings.self_check) == (0.0, False)


def _in_fresh_process(code: str, **env: str) -> list[str]:
    """Run ``code`` in a new interpreter (verl resolves its platform once per process)."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()


def test_cpu_device_selects_the_cpu_backend_in_every_ray_process():
    code = (
        "import os\n"
        "from hydra import compose, initialize_config_dir\n"
        "from medsage.plugins.verl.main import prepare\n"
        f"with initialize_config_dir(config_dir='{RECIPES}', version_base=None):\n"
        "    config = prepare(compose('rgrpo_tiny_cpu'))\n"
        "env = config.ray_kwargs.ray_init.runtime_env.env_vars\n"
        "print(env.VERL_PLATFORM, env.VERL_USE_EXTERNAL_MODULES, os.environ['VERL_USE_EXTERNAL_MODULES'])\n"
        "from verl.utils.device import get_device_name\n"
        "print(get_device_name())\n"
    )
    out = _in_fresh_process(code, VERL_USE_EXTERNAL_MODULES="json")  # a user's own plugin stays first
    assert out == ["cpu", f"json,{CPU_BACKEND}", f"json,{CPU_BACKEND}", "cpu"]


def test_cpu_backend_hooks_into_verl_where_a_ray_worker_imports_verl():
    """What a Ray worker of a CPU run sees after ``import verl``: every hook the backend relies on
    (platform, engine, rollout replica, rollout adapter), so a verl upgrade that moves one fails here."""
    code = (
        "import verl\n"
        "from verl.utils.device import get_device_name, get_nccl_backend\n"
        "from verl.workers.engine import EngineRegistry\n"
        "from verl.workers.rollout.base import get_rollout_class\n"
        "from verl.workers.rollout.replica import get_rollout_replica_class\n"
        "print(get_device_name(), get_nccl_backend(), EngineRegistry.get_engine_cls('language_model', 'fsdp2').__name__,\n"
        "      get_rollout_replica_class('hf').__name__, get_rollout_class('hf', 'async').__name__)\n"
    )
    out = _in_fresh_process(code, VERL_PLATFORM="cpu", VERL_USE_EXTERNAL_MODULES=CPU_BACKEND)
    assert out == ["cpu", "gloo", "CPUFSDPEngineWithLMHead", "HFReplica", "HFServerAdapter"]


def test_unknown_key_is_rejected_by_hydra():
    with pytest.raises(ConfigCompositionException, match="medsage.alpa"):
        _recipe("medsage.alpa=0.3")


@pytest.mark.parametrize(
    "override, error, message",
    [
        ("medsage.alpha=-0.1", ValueError, r"medsage.alpha: expected >= 0, got -0.1"),
        ("medsage.self_check_max_tokens=0", ValueError, r"medsage.self_check_max_tokens: expected >= 1"),
        ("medsage.self_check=maybe", ValueError, r"medsage.self_check: expected bool, got 'maybe'"),
        ("medsage.reward_kwargs.reward_weights.accuracy=high", ValueError,
         r"medsage.reward_kwargs.reward_weights.accuracy: expected float, got 'high'"),
        ("+medsage.reward_kwargs.reward_weights.consistency=0.1", ValueError,
         r"medsage.reward_kwargs.consistency.url: required when reward_weights.consistency is not 0"),
        ("actor_rollout_ref.actor.strategy=fsdp", ConfigError, r"freeze_vision_tower needs .*strategy=fsdp2"),
        ("algorithm.adv_estimator=gae", ConfigError, r"algorithm.adv_estimator must be 'grpo'"),
        ("trainer.v1.trainer_mode=sync", ConfigError, r"trainer_mode must be 'rgrpo'"),
        ("reward.reward_model.enable=true", ConfigError, r"enable_resource_pool"),
        ("medsage.retry_template=nowhere/retry.jinja", ConfigError, r"medsage.retry_template=nowhere/retry.jinja: no such file"),
        ("trainer.device=cpu", ConfigError, r"trainer.device=cpu needs actor_rollout_ref.rollout.name=hf"),
        ("actor_rollout_ref.rollout.name=hf", ConfigError, r"rollout.name=hf is the CPU backend's rollout"),
    ],
)
def test_bad_override_fails_with_a_clear_message(override, error, message):
    with pytest.raises(error, match=message):
        prepare(_recipe(override))


def test_command_line_reports_a_bad_override(tmp_path):
    cmd = [sys.executable, "-m", "medsage.plugins.verl.main", f"--config-path={RECIPES}", f"--config-name={RECIPE}",
           "medsage.alpha=-1"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)  # hydra's log dir lands here
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "medsage-rgrpo: the verl config: medsage.alpha: expected >= 0, got -1.0 (float)"


class _Platform:
    """verl's platform object as a machine with ``count`` devices reports it."""

    device_name = "cuda"

    def __init__(self, count: int):
        self.count = count

    def is_available(self) -> bool:
        return self.count > 0

    def device_count(self) -> int:
        return self.count


@pytest.fixture
def present(tmp_path, monkeypatch):
    """The recipe with its data files and model folder present, on a one-node machine with ``gpus`` devices."""
    import verl.plugin.platform.platform_manager as platforms

    for name in ("train", "val"):
        (tmp_path / f"{name}.parquet").write_bytes(b"PAR1")
    (tmp_path / "model").mkdir()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("medsage.plugins.verl.main._ray_cluster_running", lambda: False)

    def make(*overrides: str, gpus: int = 4):
        monkeypatch.setattr(platforms, "get_platform", lambda: _Platform(gpus))
        return prepare(_recipe(f"data.train_files={tmp_path}/train.parquet", f"data.val_files={tmp_path}/val.parquet",
                               f"actor_rollout_ref.model.path={tmp_path}/model", *overrides))

    return make


def test_preflight_passes_when_the_machine_has_what_the_recipe_needs(present):
    preflight(present())
    preflight(present("actor_rollout_ref.model.path=Qwen/Qwen2.5-VL-7B-Instruct"))  # a hub id: verl downloads it
    preflight(present("trainer.nnodes=2", gpus=0))  # the cluster's nodes count, not the launching one's


@pytest.mark.parametrize(
    "override, gpus, message",
    [
        ("data.val_files=nowhere/val.parquet", 4, r"^data.val_files: nowhere/val.parquet is not a file \(the RL data build"),
        ("actor_rollout_ref.model.path=outputs/sft/missing", 4, r"^actor_rollout_ref.model.path: outputs/sft/missing is not a folder$"),
        ("data.train_files=[a.parquet,b.parquet]", 4,
         r"^data.train_files: a.parquet is not a file; data.train_files: b.parquet is not a file \(the RL"),
        ("trainer.n_gpus_per_node=4", 2, r"n_gpus_per_node=4, but this machine has 2 cuda device\(s\): set trainer.n_gpus_per_node=2"),
        ("trainer.n_gpus_per_node=4", 0, r"has 0 cuda device\(s\): trainer.device=cpu runs on a CPU"),
    ],
)
def test_preflight_names_what_the_machine_lacks(present, override, gpus, message):
    """Without these checks verl starts Ray and then waits without end for missing GPUs, or a worker
    fails on a missing file minutes later."""
    with pytest.raises(ConfigError, match=message):
        preflight(present(override, gpus=gpus))


def test_the_launch_script_reports_a_missing_rl_build_at_once(tmp_path):
    env = {**os.environ, "MEDSAGE_OUT": str(tmp_path), "PATH": f"{sysconfig.get_path('scripts')}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "recipes/rl/run_rgrpo_qwen2_5_vl_7b.sh"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    rl, model = tmp_path / "data" / "sage_rl10k" / "rl", tmp_path / "sft" / "qwen2_5vl_7b_lvkc"
    assert result.stderr.strip().splitlines()[-1] == (
        f"medsage-rgrpo: data.train_files: {rl}/train.parquet is not a file; data.val_files: {rl}/val.parquet is not a "
        f"file (the RL data build writes rl/train.parquet and rl/val.parquet: bash recipes/data/build.sh sage_rl10k); "
        f"actor_rollout_ref.model.path: {model} is not a folder")


@pytest.mark.parametrize("config", [[], [f"--config-path={RECIPES}", f"--config-name={RECIPE}"]], ids=["default", RECIPE])
def test_installed_script_composes_from_any_directory(config, tmp_path):
    """``--cfg job`` only prints the composed config; the packaged config must be found as
    ``pkg://medsage.plugins.verl.config`` wherever the script starts."""
    command = [str(Path(sysconfig.get_path("scripts")) / "medsage-rgrpo"), *config, "--cfg", "job"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "is not available" not in result.stderr
    assert yaml.safe_load(result.stdout)["trainer"]["v1"]["trainer_mode"] == "rgrpo"


def test_the_task_runner_process_finds_the_trainer_and_the_loop():
    code = (
        "import medsage.plugins.verl.trainer\n"
        "from verl.trainer.ppo.v1 import get_trainer_cls\n"
        "from verl.experimental.agent_loop.agent_loop import _agent_loop_registry\n"
        "print(get_trainer_cls('rgrpo').__name__, 'medsage_self_check' in _agent_loop_registry)\n"
    )
    assert _in_fresh_process(code) == ["RGRPOTrainer", "True"]
