#!/usr/bin/env bash
# SFT warm-up on one node with 4 GPUs (paper B.1), in the SFT environment (see README "GPU clusters").
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT on every node and run this same script.
# Reads the SFT build ($SFT_DATA/sft) and writes the model to $SFT_MODEL (recipes/paths.sh).
# Extra arguments are LLaMA-Factory overrides, e.g.  bash recipes/sft/train_4gpu.sh model_name_or_path=/models/qwen
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/paths.sh
DATASET_DIR="$SFT_DATA/sft"
for arg in "$@"; do case "$arg" in dataset_dir=*) DATASET_DIR="${arg#dataset_dir=}" ;; esac; done
# Said here in one line, not by each of the ranks torchrun would start
[ -f "$DATASET_DIR/dataset_info.json" ] || { echo "recipes/sft/train_4gpu.sh: no SFT data at $DATASET_DIR" \
    "(no dataset_info.json): bash recipes/data/build.sh sage_sft20k writes it" >&2; exit 2; }
export FORCE_TORCHRUN=1 NPROC_PER_NODE="${NPROC_PER_NODE:-4}"
exec llamafactory-cli train recipes/sft/qwen2_5vl_7b_lvkc_full.yaml dataset_dir="$SFT_DATA/sft" output_dir="$SFT_MODEL" "$@"
