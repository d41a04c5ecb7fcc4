# Sourced by tests/run.sh and recipes/quickstart/run.sh: make sure $VENV holds the locked stack.
# Creates it on first use (2-4 minutes) and again whenever constraints.txt or setup.py change.
# Needs Python 3.11 or 3.12 and the package registry: the locked stack installs on nothing else
# (llamafactory 0.9.5, numpy 2.4.6 and scipy 1.17.1 need >= 3.11; verl 0.9.1 needs < 3.13), and pip
# would only say "ResolutionImpossible". $PYTHON picks the interpreter; without it the first of
# python3, python3.12 and python3.11 that fits is used.
VENV="${MEDSAGE_VENV:-.venv}"
_stamp="$(cat constraints.txt setup.py pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.medsage-stamp" 2>/dev/null)" != "$_stamp" ]; then
  _fits='import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))'
  _seen=""
  for _candidate in ${PYTHON:-python3 python3.12 python3.11}; do
    if "$_candidate" -c "$_fits" 2>/dev/null; then PYTHON="$_candidate"; _seen=""; break; fi
    _seen="$_seen $_candidate ($("$_candidate" -V 2>/dev/null || echo "not found"))"
  done
  if [ -n "$_seen" ]; then
    echo "[medsage] the locked stack needs Python 3.11 or 3.12 (llamafactory 0.9.5 and numpy 2.4.6 need >= 3.11," \
         "verl 0.9.1 needs < 3.13); tried:$_seen. Set PYTHON=/path/to/python3.11 (or 3.12) and rerun." >&2
    exit 1
  fi
  echo "[medsage] creating $VENV with the pinned stack and $("$PYTHON" -V) (about 2-4 minutes on first run)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[sft,rl,data,dev]"
  echo "$_stamp" > "$VENV/.medsage-stamp"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PATH="$PWD/$VENV/bin:$PATH"
