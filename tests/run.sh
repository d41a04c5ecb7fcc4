#!/usr/bin/env bash
# The test command (README): on first use it creates .venv with the locked stack, then runs pytest.
# Needs only Python >= 3.10 and the package registry. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MEDSAGE_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
stamp="$(cat constraints.txt setup.py | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.medsage-stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "[medsage] creating $VENV with the pinned stack (about 2-4 minutes on first run)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[sft,rl,data,dev]"
  echo "$stamp" > "$VENV/.medsage-stamp"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" -m pytest "$@"
