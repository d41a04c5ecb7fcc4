"""The paper's SFT recipe is valid LLaMA-Factory configuration (every key known, values typed)."""

import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sft" / "qwen2_5vl_7b_lvkc_full.yaml"
# What a CPU machine cannot honour; everything else is parsed exactly as the cluster would parse it.
CPU_OVERRIDES = {"deepspeed": None, "bf16": False, "use_cpu": True, "gradient_checkpointing": False}


def test_recipe_has_the_paper_settings():
    cfg = yaml.safe_load(RECIPE.read_text())
    assert cfg["template"] == "qwen2_vl" and cfg["finetuning_type"] == "full"
    assert cfg["freeze_vision_tower"] is True and cfg["freeze_language_model"] is False
    assert (cfg["learning_rate"], cfg["num_train_epochs"], cfg["cutoff_len"]) == (1e-5, 4.0, 4096)
    assert (cfg["per_device_train_batch_size"], cfg["gradient_accumulation_steps"]) == (4, 16)
    assert cfg["bf16"] is True and cfg["gradient_checkpointing"] is True
    ds = json.loads((REPO / cfg["deepspeed"]).read_text())
    assert ds["zero_optimization"]["stage"] == 3


def test_every_recipe_key_parses_with_llamafactory(tiny_model_dir, tmp_path, monkeypatch):
    from llamafactory.hparams import get_train_args

    monkeypatch.delenv("ALLOW_EXTRA_ARGS", raising=False)
    cfg = {**yaml.safe_load(RECIPE.read_text()), **CPU_OVERRIDES}
    cfg.update(model_name_or_path=str(tiny_model_dir), output_dir=str(tmp_path / "out"))
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(cfg)
    assert finetuning_args.freeze_vision_tower and finetuning_args.finetuning_type == "full"
    assert data_args.template == "qwen2_vl" and data_args.cutoff_len == 4096
    assert training_args.learning_rate == 1e-5 and training_args.gradient_accumulation_steps == 16


def test_a_misspelled_key_is_rejected(tiny_model_dir, tmp_path, monkeypatch):
    from llamafactory.hparams import get_train_args

    monkeypatch.delenv("ALLOW_EXTRA_ARGS", raising=False)
    cfg = {**yaml.safe_load(RECIPE.read_text()), **CPU_OVERRIDES, "freeze_vison_tower": True}
    cfg.update(model_name_or_path=str(tiny_model_dir), output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="freeze_vison_tower"):
        get_train_args(cfg)
