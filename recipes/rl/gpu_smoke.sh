#!/usr/bin/env bash
# Run this first on a GPU node: two R-GRPO steps of the paper recipe with vLLM rollouts on one GPU,
# then two checks: the worker log says the vision tower was frozen, and no visual.* weight changed
# between the two checkpoints (each merged into a Hugging Face folder by verl's model merger).
#   bash recipes/rl/gpu_smoke.sh MODEL_PATH [hydra overrides ...]
# RL data: $DATA (default: $RL_DATA/rl of recipes/paths.sh, what the RL build writes); outputs under $OUT.
# The tests run this same script on a CPU with CONFIG=rgrpo_tiny_cpu (the CPU backend) and a tiny model.
set -euo pipefail
source "$(dirname "$0")/../paths.sh"
MODEL="${1:?usage: bash recipes/rl/gpu_smoke.sh MODEL_PATH [hydra overrides ...]}"; shift
DATA="${DATA:-$RL_DATA/rl}"
OUT="${OUT:-outputs/rl/gpu_smoke}"
CONFIG="${CONFIG:-rgrpo_qwen2_5_vl_7b}"
mkdir -p "$OUT"
medsage-rgrpo --config-path="$PWD/recipes/rl" --config-name="$CONFIG" \
    actor_rollout_ref.model.path="$MODEL" \
    data.train_files="$DATA/train.parquet" data.val_files="$DATA/val.parquet" \
    trainer.n_gpus_per_node=1 data.train_batch_size=4 actor_rollout_ref.actor.ppo_mini_batch_size=4 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.4 \
    trainer.total_training_steps=2 trainer.save_freq=1 trainer.test_freq=-1 trainer.val_before_train=false \
    trainer.default_local_dir="$OUT/checkpoints" hydra.run.dir="$OUT/hydra" "$@" 2>&1 | tee "$OUT/train.log"
grep -q "\[medsage\] vision tower frozen" "$OUT/train.log" \
    || { echo "[medsage] FAIL: no 'vision tower frozen' line in $OUT/train.log" >&2; exit 1; }
for step in 1 2; do
    python -m verl.model_merger merge --backend fsdp \
        --local_dir "$OUT/checkpoints/global_step_$step/actor" --target_dir "$OUT/merged_step_$step"
done
python -m medsage.plugins.verl.vision "$OUT/merged_step_1" "$OUT/merged_step_2"
echo "[medsage] GPU smoke run passed: 2 R-GRPO steps with vLLM, vision tower frozen"
