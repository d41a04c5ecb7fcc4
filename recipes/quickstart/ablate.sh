#!/usr/bin/env bash
# The paper's ablations (Tables 4 and 5, Figure 5) on the quickstart's phantom data; run the quickstart first.
#   bash recipes/quickstart/ablate.sh                      # resumes: finished arms are skipped
#   bash recipes/quickstart/ablate.sh steps=2              # any key of recipes/quickstart/ablation.yaml
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/env.sh
exec "$VENV/bin/python" recipes/quickstart/ablation.py recipes/quickstart/ablation.yaml "$@"
