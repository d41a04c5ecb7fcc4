#!/usr/bin/env bash
# SFT warm-up on one node with 4 GPUs (paper B.1), in the SFT environment (see README "GPU clusters").
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT on every node and run this same script.
# Extra arguments are LLaMA-Factory overrides, e.g.  bash recipes/sft/train_4gpu.sh model_name_or_path=/models/qwen
set -euo pipefail
cd "$(dirname "$0")/../.."
export FORCE_TORCHRUN=1 NPROC_PER_NODE="${NPROC_PER_NODE:-4}"
exec llamafactory-cli train recipes/sft/qwen2_5vl_7b_lvkc_full.yaml "$@"
