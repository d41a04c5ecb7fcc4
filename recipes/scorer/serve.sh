#!/usr/bin/env bash
# Serve a trained consistency scorer for the RL reward (one process, dynamic batching).
# Usage: recipes/scorer/serve.sh outputs/scorer [port]
# Then add to the verl launch (see recipes/scorer/reward_kwargs.yaml):
#   reward.custom_reward_function.reward_kwargs.reward_weights.consistency=0.1
#   +reward.custom_reward_function.reward_kwargs.consistency.url=http://$(hostname):${PORT}
set -euo pipefail
CHECKPOINT=${1:?usage: serve.sh CHECKPOINT [PORT]}
PORT=${2:-8765}
exec medsage-scorer-serve "$CHECKPOINT" --host 0.0.0.0 --port "$PORT" --max-batch-size 64 --max-wait-ms 5
