#!/usr/bin/env bash
# The main job (README): the whole MEDSAGE pipeline on the embedded phantom data, on this machine.
#   bash recipes/quickstart/run.sh                       # resumes: finished stages are skipped
#   bash recipes/quickstart/run.sh --from sft            # redo SFT and everything after it
#   bash recipes/quickstart/run.sh sft.max_steps=100 run_dir=outputs/qs2   # any recipe key, a.b=value
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/env.sh
exec "$VENV/bin/python" recipes/quickstart/quickstart.py recipes/quickstart/quickstart.yaml "$@"
