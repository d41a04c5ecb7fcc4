"""The shipped cluster recipes chain: data -> SFT -> scorer -> R-GRPO -> evaluation. Each consumer's
input is what its producer writes, by the recipes' defaults and through the launch scripts, whose
paths all come from recipes/paths.sh (one place to move a run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from hydra import compose, initialize_config_dir

from medsage.config import load
from medsage.data_gen.config import load_config
from medsage.data_gen.pipeline import build
from medsage.eval.config import load_recipe
from medsage.plugins.verl.settings import RGRPOSettings
from medsage.reward_fns.consistency.serve import ServeConfig
from medsage.reward_fns.consistency.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
CHAIN = ("MEDSAGE_OUT", "SFT_DATA", "RL_DATA", "SFT_MODEL", "SCORER", "RL_RUN", "RL_MODEL", "EVAL_DIR")
EVALUATED = ("table1", "table2", "omnimedvqa")  # the recipes that evaluate a checkpoint folder
STUBBED = ("medsage-data", "llamafactory-cli", "medsage-scorer-train", "medsage-scorer-serve", "medsage-rgrpo",
           "medsage-eval", "python")
# A stand-in for every tool a launch script runs: it records its arguments; medsage-rgrpo also leaves
# the step file verl writes after its last checkpoint.
STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
if [ "$(basename "$0")" = medsage-rgrpo ]; then
  for arg in "$@"; do case "$arg" in trainer.default_local_dir=*)
    mkdir -p "${arg#*=}" && echo 2 > "${arg#*=}/latest_checkpointed_iteration.txt";; esac; done
fi
"""


def _chain(**env: str) -> dict[str, str]:
    """recipes/paths.sh as the launch scripts see it."""
    script = "source recipes/paths.sh; " + "; ".join(f'echo "{v}=${v}"' for v in CHAIN)
    out = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PATH": os.environ["PATH"], **env}).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def _rl_recipe():
    with initialize_config_dir(config_dir=str(RECIPES / "rl"), version_base=None):
        return compose("rgrpo_qwen2_5_vl_7b")


def test_every_recipe_defaults_to_the_chain():
    paths = _chain()
    sft_data, rl_data = load_config(RECIPES / "data/sage_sft20k.yaml"), load_config(RECIPES / "data/sage_rl10k.yaml")
    assert (sft_data.output_dir, rl_data.output_dir) == (paths["SFT_DATA"], paths["RL_DATA"])

    sft = yaml.safe_load((RECIPES / "sft/qwen2_5vl_7b_lvkc_full.yaml").read_text())
    assert sft["dataset_dir"] == f"{paths['SFT_DATA']}/sft" and sft["dataset"] == sft_data.exports.sft_dataset_name
    assert sft["output_dir"] == paths["SFT_MODEL"]

    scorer = load(TrainConfig, RECIPES / "scorer/train.yaml")
    served = load(ServeConfig, RECIPES / "scorer/serve.yaml")
    reward = yaml.safe_load((RECIPES / "scorer/reward_kwargs.yaml").read_text())
    assert scorer.pairs == (f"{paths['SFT_DATA']}/scorer/pairs.jsonl",) and scorer.output_dir == paths["SCORER"]
    assert served.checkpoint == scorer.output_dir and urlparse(reward["consistency"]["url"]).port == served.port

    rl = _rl_recipe()
    assert rl.actor_rollout_ref.model.path == paths["SFT_MODEL"]
    assert (rl.data.train_files, rl.data.val_files) == (f"{paths['RL_DATA']}/rl/train.parquet", f"{paths['RL_DATA']}/rl/val.parquet")
    assert rl.trainer.default_local_dir == f"{paths['RL_RUN']}/checkpoints"
    assert RGRPOSettings.from_config(rl).sessions_dir == f"{paths['RL_RUN']}/sessions"
    assert rl.data.max_prompt_length == rl_data.exports.rl_max_prompt_length

    for name in EVALUATED:
        evaluation = load_recipe(RECIPES / f"eval/{name}.yaml")
        assert (evaluation.model.path, str(evaluation.output_dir)) == (paths["RL_MODEL"], f"{paths['EVAL_DIR']}/{name}")


def test_the_data_build_writes_what_sft_scorer_and_rl_read(tmp_path):
    """The shipped SFT recipe's exports on phantom sources (offline, no judge): the files the SFT, scorer
    and RL recipes name exist under output_dir, and LLaMA-Factory's registry names the dataset."""
    phantom = "[{kind: phantom_deeplesion, n: 12, seed: 0}, {kind: phantom_coco, n: 4, seed: 1}]"
    config = load_config(RECIPES / "data/sage_sft20k.yaml", (
        f"output_dir={tmp_path}", f"sources={phantom}", "generation.backend=offline", "verification.judge=false",
        "exports.rl_size=8"))
    build(config, progress=False)
    sft = yaml.safe_load((RECIPES / "sft/qwen2_5vl_7b_lvkc_full.yaml").read_text())
    registry = json.loads((tmp_path / "sft/dataset_info.json").read_text())
    assert (tmp_path / "sft" / registry[sft["dataset"]]["file_name"]).is_file()
    assert (tmp_path / "scorer/pairs.jsonl").is_file()  # train.yaml: <SFT_DATA>/scorer/pairs.jsonl
    assert (tmp_path / "rl/train.parquet").is_file() and (tmp_path / "rl/val.parquet").is_file()  # the RL recipe's files


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in STUBBED:
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _run(script: str, stubs: Path, out: Path, *args: str) -> list[str]:
    """Run a launch script with every tool stubbed; the argument lists the tools were called with."""
    log = stubs / "calls.log"
    log.unlink(missing_ok=True)
    env = {"PATH": f"{stubs}:{os.environ['PATH']}", "STUB_LOG": str(log), "MEDSAGE_OUT": str(out)}
    subprocess.run(["bash", str(RECIPES / script), *args], cwd="/", env=env, check=True, capture_output=True, timeout=60)
    return log.read_text().splitlines()


def _value(call: str, key: str) -> str:
    return re.search(rf"(?:^| ){re.escape(key)}=(\S+)", call).group(1)


def test_launch_scripts_hand_each_stage_the_previous_ones_output(stubs, tmp_path):
    """One variable moves the whole run: every script passes paths under MEDSAGE_OUT, each consumer's the
    producer's (run from another directory: the scripts find the repository themselves)."""
    out = tmp_path / "run"
    sft_data = _value(_run("data/build.sh", stubs, out, "sage_sft20k")[0], "output_dir")
    rl_data = _value(_run("data/build.sh", stubs, out, "sage_rl10k", "seed=3")[0], "output_dir")
    (Path(sft_data) / "sft").mkdir(parents=True)
    (Path(sft_data) / "sft" / "dataset_info.json").write_text("{}")  # what the (stubbed) build writes
    sft = _run("sft/train_4gpu.sh", stubs, out, "num_train_epochs=2")[0]
    scorer = _run("scorer/train.sh", stubs, out)[0]
    served = _run("scorer/serve.sh", stubs, out, "port=8766")[0]
    rl, merge = _run("rl/run_rgrpo_qwen2_5_vl_7b.sh", stubs, out, "medsage.alpha=0")
    evaluation = _run("eval/run.sh", stubs, out, "table1")[0]

    assert sft_data.startswith(str(out)) and rl_data.startswith(str(out)) and sft_data != rl_data
    assert _value(sft, "dataset_dir") == f"{sft_data}/sft" and sft.endswith("num_train_epochs=2")
    assert _value(scorer, "pairs") == f"[{sft_data}/scorer/pairs.jsonl]"
    assert _value(served, "checkpoint") == _value(scorer, "output_dir")
    assert _value(rl, "actor_rollout_ref.model.path") == _value(sft, "output_dir")
    assert _value(rl, "data.train_files") == f"{rl_data}/rl/train.parquet" and rl.endswith("medsage.alpha=0")
    checkpoints = _value(rl, "trainer.default_local_dir")
    assert _value(rl, "hydra.run.dir").startswith(str(out))  # verl's hydra log too, not ./outputs/<date>/<time>
    assert f"--local_dir {checkpoints}/global_step_2/actor" in merge
    assert _value(evaluation, "model.path") == merge.split("--target_dir ")[1].split()[0]
    assert _value(evaluation, "output_dir").startswith(str(out))


def test_the_sft_launcher_names_missing_data_in_one_line_before_starting_ranks(stubs, tmp_path):
    env = {"PATH": f"{stubs}:{os.environ['PATH']}", "STUB_LOG": str(stubs / "calls.log"), "MEDSAGE_OUT": str(tmp_path)}
    for args, where in (((), tmp_path / "data/sage_sft20k/sft"), ((f"dataset_dir={tmp_path / 'mine'}",), tmp_path / "mine")):
        result = subprocess.run(["bash", str(RECIPES / "sft/train_4gpu.sh"), *args], env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2 and result.stderr == (
            f"recipes/sft/train_4gpu.sh: no SFT data at {where} (no dataset_info.json): "
            "bash recipes/data/build.sh sage_sft20k writes it\n")
    assert not (stubs / "calls.log").exists()  # llamafactory-cli never started


def test_the_readme_cluster_section_names_scripts_and_recipes_that_exist():
    section = (REPO / "README.md").read_text().split("## GPU clusters")[1].split("\n## ")[0]
    files = re.findall(r"(recipes/[\w./-]+\.(?:sh|yaml))", section)
    assert len(files) >= 8
    assert [f for f in files if not (REPO / f).is_file()] == []
    assert "--set" not in section and "medsage-data build recipes/data" not in section  # the scripts carry the paths


def test_the_readme_turns_the_consistency_reward_on_with_overrides_that_compose():
    from medsage.reward_fns import RewardWeights
    from medsage.reward_fns.consistency import ConsistencyConfig

    readme = (REPO / "README.md").read_text().replace("$(hostname)", "localhost")
    overrides = re.findall(r"\+?medsage\.reward_kwargs\.\S+", readme)
    with initialize_config_dir(config_dir=str(RECIPES / "rl"), version_base=None):
        rl = compose("rgrpo_qwen2_5_vl_7b", overrides=overrides)
    kwargs = RGRPOSettings.from_config(rl).reward_kwargs
    assert RewardWeights.from_config(kwargs["reward_weights"]).consistency == 0.1
    served = load(ServeConfig, RECIPES / "scorer/serve.yaml")
    assert urlparse(ConsistencyConfig.from_mapping(kwargs["consistency"]).url).port == served.port
