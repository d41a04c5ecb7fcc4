#!/usr/bin/env bash
# R-GRPO on 4 GPUs of one node with the paper's settings (recipes/rl/rgrpo_qwen2_5_vl_7b.yaml).
# Run from the repository root in the RL environment (verl[vllm]; see README, "GPU clusters").
# Extra hydra overrides pass through, e.g.:
#   bash recipes/rl/run_rgrpo_qwen2_5_vl_7b.sh medsage.alpha=0            # Table 4, base reward only
#   bash recipes/rl/run_rgrpo_qwen2_5_vl_7b.sh medsage.self_check=false   # Table 5, plain GRPO
# Multi-node: start Ray on every node first (head: `ray start --head`; workers:
# `ray start --address=<head-ip>:6379`), then run this on the head with
#   trainer.nnodes=<N> trainer.n_gpus_per_node=<GPUs per node>
set -euo pipefail
cd "$(dirname "$0")/../.."

python -m medsage.plugins.verl.main \
    --config-path="$PWD/recipes/rl" \
    --config-name=rgrpo_qwen2_5_vl_7b \
    "$@"
