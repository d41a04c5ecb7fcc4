#!/usr/bin/env bash
# Train the consistency scorer (paper A.4) on the SFT build's pairs, into $SCORER (recipes/paths.sh).
#   bash recipes/scorer/train.sh [a.b=value ...]      # e.g. backbone=/models/Qwen2.5-VL-3B-Instruct
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/paths.sh
exec medsage-scorer-train recipes/scorer/train.yaml "pairs=[$SFT_DATA/scorer/pairs.jsonl]" output_dir="$SCORER" "$@"
