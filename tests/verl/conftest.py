"""Fixtures for the R-GRPO tests: the composed trainer config, RL parquet rows in the real schema,
and a tiny Qwen2.5-VL policy taught (a few hundred CPU steps) to answer wrong first, write a
self-check when asked, and answer right on the retry, so every path of the loop runs on a real model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
from verl_inputs import CHECK, CONFIG_DIR, QUESTION, REPO, TAU1, TAU2, TEMPLATES, image, rl_row

from medsage.plugins.verl.settings import render_instruction


@pytest.fixture(scope="session")
def rl_parquet(tmp_path_factory) -> Path:
    """Two prompts: the taught policy's first answer ("no") is right for row 0, wrong for row 1."""
    path = tmp_path_factory.mktemp("rl_data") / "train.parquet"
    pd.DataFrame([rl_row(0, "no", image(0)), rl_row(1, "yes", image(1))]).to_parquet(path)
    return path


@pytest.fixture
def make_config(tmp_path):
    """Compose the R-GRPO trainer config exactly as the entry point does, plus test overrides."""

    def make(model_dir: Path, *overrides: str) -> DictConfig:
        base = [
            f"actor_rollout_ref.model.path={model_dir}",
            f"medsage.self_check_template={TEMPLATES / 'self_check.jinja'}",
            f"medsage.retry_template={TEMPLATES / 'retry.jinja'}",
            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={REPO / 'plugins/verl/agent_loops.yaml'}",
            "actor_rollout_ref.rollout.prompt_length=256",
            "actor_rollout_ref.rollout.response_length=512",
            "actor_rollout_ref.rollout.temperature=0",
            "actor_rollout_ref.rollout.n=1",
        ]
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return compose("rgrpo", overrides=base + list(overrides))

    return make


def _teaching_sequence(tokenizer, processor, img: Image.Image) -> tuple[list[int], list[int]]:
    """The token stream the loop builds for a wrong-first session, and its assistant-token mask."""
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen2_5_vl", processor=processor)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    messages = [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": QUESTION}]}]
    ids = builder.build_initial_tokens(messages, images=[img])
    labels = [0] * len(ids)
    turns = [
        (TAU1, render_instruction(TEMPLATES / "self_check.jinja")),
        (CHECK, render_instruction(TEMPLATES / "retry.jinja")),
        (TAU2, None),
    ]
    for reply, instruction in turns:
        reply_ids = tokenizer.encode(reply, add_special_tokens=False) + [im_end]
        ids, labels = ids + reply_ids, labels + [1] * len(reply_ids)
        if instruction is None:
            break
        previous = messages + [{"role": "assistant", "content": reply}]
        messages = previous + [{"role": "user", "content": instruction}]
        merged = builder.merge_context_tokens(previous, messages, ids)
        labels += [0] * (len(merged.token_ids) - len(ids))
        ids = merged.token_ids
    return ids, labels


@pytest.fixture(scope="session")
def policy_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny Qwen2.5-VL after a short SFT on the wrong-first / self-check / right-retry session."""
    out = tmp_path_factory.mktemp("taught_policy")
    for item in tiny_model_dir.iterdir():
        shutil.copy(item, out / item.name)
    processor = AutoProcessor.from_pretrained(out)
    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    examples = []
    for seed in range(2):
        img = image(seed)
        ids, labels = _teaching_sequence(processor.tokenizer, processor, img)
        vision = processor.image_processor(images=[img], return_tensors="pt")
        input_ids = torch.tensor([ids])
        target = torch.where(torch.tensor([labels]).bool(), input_ids, torch.tensor(-100))
        examples.append(
            dict(
                input_ids=input_ids,
                labels=target,
                pixel_values=vision["pixel_values"],
                image_grid_thw=vision["image_grid_thw"],
                mm_token_type_ids=(input_ids == model.config.image_token_id).long(),
            )
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.train()
        for step in range(400):
            loss = model(**examples[step % len(examples)]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if loss.item() < 0.01:
                break
    model.eval()
    model.save_pretrained(out)
    return out
