# The cluster pipeline's paths in one place (README "GPU clusters"): each stage reads what the one
# before it writes. Every launch script in recipes/ sources this file and passes these paths to its
# tool; the recipes' own path values are the same defaults (a test keeps them equal). To move a run,
# set MEDSAGE_OUT (or any one variable) before the scripts, e.g.  export MEDSAGE_OUT=/scratch/medsage
MEDSAGE_OUT="${MEDSAGE_OUT:-outputs}"
SFT_DATA="${SFT_DATA:-$MEDSAGE_OUT/data/sage_sft20k}"        # data: sft/, scorer/pairs.jsonl, card/
RL_DATA="${RL_DATA:-$MEDSAGE_OUT/data/sage_rl10k}"           # data: rl/train.parquet, rl/val.parquet
SFT_MODEL="${SFT_MODEL:-$MEDSAGE_OUT/sft/qwen2_5vl_7b_lvkc}"  # SFT: the fine-tuned model (HF folder)
SCORER="${SCORER:-$MEDSAGE_OUT/scorer}"                       # scorer: HF folder + eval.json
RL_RUN="${RL_RUN:-$MEDSAGE_OUT/rl/rgrpo_qwen2_5_vl_7b}"       # R-GRPO: checkpoints/, sessions/
RL_MODEL="${RL_MODEL:-$RL_RUN/huggingface}"                   # R-GRPO: the last checkpoint as an HF folder
EVAL_DIR="${EVAL_DIR:-$MEDSAGE_OUT/eval}"                     # evaluation: one folder per table
