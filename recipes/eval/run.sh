#!/usr/bin/env bash
# Evaluate the R-GRPO model ($RL_MODEL, recipes/paths.sh) with a recipe of recipes/eval/, reports in
# $EVAL_DIR/<recipe>. Extra arguments are recipe overrides and win, e.g.:
#   bash recipes/eval/run.sh table1                                   # paper Table 1
#   bash recipes/eval/run.sh table1 model.path=outputs/sft/qwen2_5vl_7b_lvkc output_dir=outputs/eval/table1_sft
#   bash recipes/eval/run.sh table2                                   # paper Table 2 (judge key: $OPENAI_API_KEY)
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/paths.sh
NAME="${1:?usage: bash recipes/eval/run.sh table1|table2|omnimedvqa [a.b=value ...]}"; shift
exec medsage-eval "recipes/eval/$NAME.yaml" model.path="$RL_MODEL" output_dir="$EVAL_DIR/$NAME" "$@"
