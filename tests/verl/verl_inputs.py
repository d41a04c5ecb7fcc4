"""Inputs of the R-GRPO tests: paths of the verl plugin, the taught session's texts (a wrong first
answer, a self-check, a right retry), images, RL parquet rows in the real schema, and the loop as
verl builds it."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image
from verl.experimental.agent_loop.agent_loop import DictConfigWrap
from verl.utils.dataset.rl_dataset import RLHFDataset

from medsage.data_gen.exports import ABILITY
from medsage.plugins.verl.agent_loop import SelfCheckAgentLoop

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "plugins" / "verl" / "config"
TEMPLATES = REPO / "plugins" / "verl" / "templates"
QUESTION = "Is there a nodule in the left lung? Answer yes or no."
TAU1 = (
    "<LOC>left upper lung</LOC><VISUAL>The left lung is clear.</VISUAL>"
    "<KNOWLEDGE>A nodule is a small round opacity.</KNOWLEDGE><CON>No nodule is seen.</CON><ANSWER>no</ANSWER>"
)
CHECK = (
    "<CHECK><GROUNDING>The region is right.</GROUNDING><ANALYSIS>A small round opacity was missed.</ANALYSIS>"
    "<CONSISTENCY>The conclusion does not follow.</CONSISTENCY></CHECK>"
)
TAU2 = (
    "<LOC>left upper lung</LOC><VISUAL>A small round opacity is seen.</VISUAL>"
    "<KNOWLEDGE>A nodule is a small round opacity.</KNOWLEDGE><CON>A nodule is seen.</CON><ANSWER>yes</ANSWER>"
)


def image(seed: int = 0) -> Image.Image:
    gen = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(84, 84, 3, generator=gen) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def rl_row(index: int, ground_truth: str, img: Image.Image) -> dict:
    """One row of the RL parquet schema documented in recipes/rl/README.md."""
    return {
        "data_source": "phantom_vqa",
        "prompt": [{"role": "user", "content": f"<image>{QUESTION}"}],
        "images": [{"bytes": png_bytes(img)}],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {
            "index": index,
            "answer_type": "yes_no",
            "options": [],
            "question": QUESTION,
            "task_type": "detection",
        },
        "agent_name": "medsage_self_check",
    }


def self_check_loop(config: DictConfig, server_manager, processor) -> SelfCheckAgentLoop:
    """The loop as verl's ``AgentLoopWorker`` builds it; call inside the running event loop."""
    return SelfCheckAgentLoop(
        trainer_config=DictConfigWrap(config),
        server_manager=server_manager,
        tokenizer=processor.tokenizer,
        processor=processor,
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data),
        hf_model_type="qwen2_5_vl",
    )
