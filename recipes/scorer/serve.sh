#!/usr/bin/env bash
# Serve the trained consistency scorer ($SCORER, recipes/paths.sh) for the RL reward (one process,
# FastAPI on uvicorn, dynamic batching). Extra arguments are recipe overrides of recipes/scorer/serve.yaml:
#   bash recipes/scorer/serve.sh host=0.0.0.0 port=8765
# With $MEDSAGE_SCORER_API_KEY exported, /score needs it as "Authorization: Bearer <key>".
# Then turn the reward on in the RL launch (README "GPU clusters", step 3; recipes/scorer/reward_kwargs.yaml).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/paths.sh
exec medsage-scorer-serve recipes/scorer/serve.yaml checkpoint="$SCORER" "$@"
