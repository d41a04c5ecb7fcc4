#!/usr/bin/env bash
# The test command (README): on first use it creates .venv with the locked stack, then runs pytest.
# Needs Python 3.11 or 3.12 and the package registry (recipes/env.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source recipes/env.sh
exec "$VENV/bin/python" -m pytest "$@"
