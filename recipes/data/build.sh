#!/usr/bin/env bash
# Build SAGE-sft or SAGE-rl (paper 3.1, A.3) where the next stages read it (recipes/paths.sh).
#   bash recipes/data/build.sh sage_sft20k [a.b=value ...]    # -> $SFT_DATA: sft/, scorer/, card/
#   bash recipes/data/build.sh sage_rl10k  [a.b=value ...]    # -> $RL_DATA: rl/, card/
# Extra arguments are recipe overrides, e.g. sources.0.root=/data/DeepLesion.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/paths.sh
NAME="${1:?usage: bash recipes/data/build.sh sage_sft20k|sage_rl10k [a.b=value ...]}"; shift
case "$NAME" in
    sage_sft20k) DIR="$SFT_DATA" ;;
    sage_rl10k) DIR="$RL_DATA" ;;
    *) echo "recipes/data/build.sh: unknown set '$NAME' (sage_sft20k or sage_rl10k)" >&2; exit 2 ;;
esac
exec medsage-data build "recipes/data/$NAME.yaml" output_dir="$DIR" "$@"
