#!/usr/bin/env bash
# R-GRPO on 4 GPUs of one node with the paper's settings (recipes/rl/rgrpo_qwen2_5_vl_7b.yaml).
# Run in the RL environment (verl[vllm]; see README, "GPU clusters"). Reads the SFT model ($SFT_MODEL)
# and the RL build ($RL_DATA/rl) of recipes/paths.sh; writes checkpoints and sessions under $RL_RUN and
# finally the last checkpoint as a Hugging Face folder at $RL_MODEL (verl's model merger), which the
# evaluation reads. Extra hydra overrides pass through, e.g.:
#   bash recipes/rl/run_rgrpo_qwen2_5_vl_7b.sh medsage.alpha=0            # Table 4, base reward only
#   bash recipes/rl/run_rgrpo_qwen2_5_vl_7b.sh medsage.self_check=false   # Table 5, plain GRPO
# (an ablation arm belongs in its own folder: RL_RUN=outputs/rl/alpha_0 bash recipes/rl/run_rgrpo_qwen2_5_vl_7b.sh ...)
# Multi-node: start Ray on every node first (head: `ray start --head`; workers:
# `ray start --address=<head-ip>:6379`), then run this on the head with
#   trainer.nnodes=<N> trainer.n_gpus_per_node=<GPUs per node>
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/paths.sh

medsage-rgrpo --config-path="$PWD/recipes/rl" --config-name=rgrpo_qwen2_5_vl_7b \
    actor_rollout_ref.model.path="$SFT_MODEL" \
    data.train_files="$RL_DATA/rl/train.parquet" data.val_files="$RL_DATA/rl/val.parquet" \
    trainer.default_local_dir="$RL_RUN/checkpoints" medsage.sessions_dir="$RL_RUN/sessions" \
    hydra.run.dir="$RL_RUN/hydra" \
    "$@"
STEP="$(cat "$RL_RUN/checkpoints/latest_checkpointed_iteration.txt")"
python -m verl.model_merger merge --backend fsdp \
    --local_dir "$RL_RUN/checkpoints/global_step_$STEP/actor" --target_dir "$RL_MODEL"
echo "[medsage] R-GRPO model (step $STEP): $RL_MODEL"
