# Sourced by tests/run.sh and recipes/quickstart/run.sh: make sure $VENV holds the locked stack.
# Creates it on first use (2-4 minutes) and again whenever constraints.txt or setup.py change.
# Needs only Python >= 3.10 and the package registry.
VENV="${MEDSAGE_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "[medsage] needs Python >= 3.10 ($PYTHON is $("$PYTHON" -V 2>&1))" >&2; exit 1; }
_stamp="$(cat constraints.txt setup.py pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.medsage-stamp" 2>/dev/null)" != "$_stamp" ]; then
  echo "[medsage] creating $VENV with the pinned stack (about 2-4 minutes on first run)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[sft,rl,data,dev]"
  echo "$_stamp" > "$VENV/.medsage-stamp"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PATH="$PWD/$VENV/bin:$PATH"
