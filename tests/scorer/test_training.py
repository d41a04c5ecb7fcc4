"""Contrastive training on a tiny local backbone: held-out separation per corruption kind, the
checkpoint as an HF folder, and resuming."""

import json

import pytest
import torch
from scorer_data import tiny_train_config

from medsage.config import ConfigError, load
from medsage.reward_fns.consistency import CORRUPTION_KINDS, ScoreItem
from medsage.reward_fns.consistency.model import ConsistencyScorer
from medsage.reward_fns.consistency.pairs import FILTERED
from medsage.reward_fns.consistency.train import EVAL_FILE, TrainConfig, auc, train


def test_held_out_auc_reaches_0_9_on_every_kind(trained_scorer):
    out, metrics = trained_scorer
    assert set(metrics) == {*CORRUPTION_KINDS, FILTERED, "all"}
    for kind, m in metrics.items():
        assert m.auc >= 0.9, (kind, m)
        assert m.pairwise_accuracy >= 0.9, (kind, m)
        assert m.negatives > 0
    written = json.loads((out / EVAL_FILE).read_text())
    assert written["all"]["auc"] == pytest.approx(metrics["all"].auc)


def test_checkpoint_is_an_hf_folder_that_reloads_to_the_same_scores(trained_scorer, tiny_model_dir):
    out, _ = trained_scorer
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    from transformers import AutoModel

    assert AutoModel.from_pretrained(out).config.model_type == "qwen2_5_vl"
    items = [ScoreItem("Is there a cyst in the liver?", "<LOC>The left liver</LOC>"), ScoreItem("q", "")]
    first, second = ConsistencyScorer.load(out), ConsistencyScorer.load(out)
    assert first.score(items) == second.score(items)
    assert first.score(items) != ConsistencyScorer.from_backbone(tiny_model_dir).score(items)  # the head was trained


def test_batched_scores_equal_one_at_a_time_scores(trained_scorer):
    scorer = ConsistencyScorer.load(trained_scorer[0])
    items = [ScoreItem("q" * (i % 5), "word " * (3 * i)) for i in range(9)]
    batched = scorer.score(items, batch_size=4)
    assert batched == pytest.approx([scorer.score([i])[0] for i in items], abs=1e-5)
    assert all(0.0 <= s <= 1.0 for s in batched)


def test_resuming_continues_exactly_where_training_stopped(tiny_model_dir, pairs_file, tmp_path):
    settings = dict(max_steps=4, save_every=2, batch_size=4, micro_batch_size=2)
    straight = tmp_path / "straight"
    train(tiny_train_config(tiny_model_dir, pairs_file, straight, **settings))
    resumed = tmp_path / "resumed"
    train(tiny_train_config(tiny_model_dir, pairs_file, resumed, **{**settings, "max_steps": 2}))
    train(tiny_train_config(tiny_model_dir, pairs_file, resumed, **settings))
    state = torch.load(resumed / "last" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 4
    items = [ScoreItem("Is there a stone in the kidney?", "<CON>The kidney has a calcified deposit</CON>")]
    assert ConsistencyScorer.load(resumed).score(items) == pytest.approx(ConsistencyScorer.load(straight).score(items), abs=1e-6)


def test_recipe_keys_are_checked(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("backbone: b\noutput_dir: o\npairs: [p.jsonl]\nlearning_rat: 1.0\n")
    with pytest.raises(ConfigError, match="learning_rat: unknown key"):
        load(TrainConfig, recipe)
    recipe.write_text("backbone: b\noutput_dir: o\npairs: /x/pairs.jsonl\n")
    with pytest.raises(ConfigError, match=r"pairs: expected a list of str, got '/x/pairs.jsonl' \(str\)"):
        load(TrainConfig, recipe)
    recipe.write_text("backbone: b\noutput_dir: o\npairs: [p.jsonl]\n")
    with pytest.raises(ConfigError, match=r"pooling: expected one of 'last', 'mean', got 'max'"):
        load(TrainConfig, recipe, ["pooling=max"])
    with pytest.raises(ConfigError, match=r"dtype: expected one of 'float32', 'bfloat16', 'float16', got 'bf16'"):
        load(TrainConfig, recipe, ["dtype=bf16"])
    with pytest.raises(ConfigError, match=r"corruptions: unknown kind\(s\) \['typo'\]"):
        load(TrainConfig, recipe, ["corruptions=[typo]"])
    assert load(TrainConfig, recipe, ["epochs=3", "pooling=mean"]).epochs == 3


def test_auc_counts_ties_half():
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.5], [0.5]) == 0.5
    assert auc([0.1], [0.9]) == 0.0


def test_shipped_recipes_load():
    from pathlib import Path

    import yaml

    from medsage.reward_fns import RewardWeights
    from medsage.reward_fns.consistency import ConsistencyConfig

    recipes = Path(__file__).parents[2] / "recipes" / "scorer"
    config = load(TrainConfig, recipes / "train.yaml")
    assert config.corruptions == CORRUPTION_KINDS and config.learning_rate == 1e-5
    kwargs = yaml.safe_load((recipes / "reward_kwargs.yaml").read_text())
    assert RewardWeights.from_config(kwargs["reward_weights"]).consistency > 0
    assert ConsistencyConfig.from_mapping(kwargs["consistency"]).on_unreachable == "zero"
