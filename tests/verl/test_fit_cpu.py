"""verl's own trainer loop (``fit()``) on the CPU backend, run by the script a user runs first on a
cluster (``recipes/rl/gpu_smoke.sh``) with the CPU recipe: two R-GRPO steps of the installed
``medsage-rgrpo`` on the tiny Qwen2.5-VL taught to answer wrong first and right after a self-check
(tests/verl/conftest.py), both checkpoints merged by verl's model merger, the vision tower checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText

from verl_inputs import REPO
from safetensors.torch import load_file, save_file

from medsage.plugins.verl.sessions import SELF_CHECK, read_sessions
from medsage.plugins.verl.vision import changed_tensors
from medsage.plugins.verl.vision import main as vision_main

ALPHA = 0.2
STEPS = 2


@pytest.fixture(scope="module")
def fit_run(policy_dir, rl_parquet, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fit")
    overrides = [
        "data.train_batch_size=2",
        "data.max_prompt_length=256",
        "data.max_response_length=512",
        "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.actor.optim.lr=1e-4",
        f"medsage.alpha={ALPHA}",
        "medsage.attempt_max_tokens=160",
        f"medsage.sessions_dir={out / 'sessions'}",
        f"trainer.total_training_steps={STEPS}",
        f"trainer.total_epochs={STEPS}",
        "trainer.logger=[console,file]",
    ]
    data = out / "data"
    data.mkdir()
    for split in ("train", "val"):
        shutil.copy(rl_parquet, data / f"{split}.parquet")
    scripts = sysconfig.get_path("scripts")
    env = {**os.environ, "PATH": f"{scripts}:{os.environ['PATH']}", "CONFIG": "rgrpo_tiny_cpu", "DATA": str(data),
           "OUT": str(out), "VERL_FILE_LOGGER_PATH": str(out / "metrics.jsonl")}
    command = ["bash", str(REPO / "recipes" / "rl" / "gpu_smoke.sh"), str(policy_dir), *overrides]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "GPU smoke run passed" in result.stdout and "0 in the vision tower" in result.stdout
    return out


def test_language_model_moves_and_the_vision_tower_does_not(fit_run, policy_dir):
    """Bit for bit, on verl's float32 Hugging Face export of the last checkpoint (the merger casts to bf16)."""
    exported = fit_run / "checkpoints" / f"global_step_{STEPS}" / "actor" / "huggingface"
    before = AutoModelForImageTextToText.from_pretrained(policy_dir, dtype=torch.float32).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(exported, dtype=torch.float32).state_dict()
    assert before.keys() == after.keys()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert any(".language_model.layers." in n or n.startswith("lm_head") for n in changed)
    vision = [n for n in before if ".visual." in n]
    assert vision and not changed.intersection(vision), sorted(changed.intersection(vision))[:5]


def test_a_corrected_session_gets_exactly_alpha_on_its_self_check_tokens(fit_run):
    records = read_sessions(fit_run / "sessions")
    assert {r.step for r in records} == set(range(1, STEPS + 1))
    corrected = [r for r in records if r.r_sc == 1.0]
    assert corrected, [(r.stop_reason, r.first_correct, r.final_correct) for r in records]
    for record in records:
        checks = [s for s in record.spans if s.kind == SELF_CHECK]
        want = ALPHA if record.r_sc == 1.0 else 0.0
        assert all(s.advantage == pytest.approx(want, abs=1e-6) for s in checks), record


def test_every_step_logs_the_self_check_metrics(fit_run):
    steps = [json.loads(line) for line in (fit_run / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1))
    for step in steps:
        metrics = step["data"]
        for key in ("medsage/self_check_rate", "medsage/correction_rate", "medsage/first_accuracy",
                    "medsage/final_accuracy", "medsage/effective_group_rate", "actor/pg_loss", "actor/kl_loss"):
            assert key in metrics, key
    assert any(step["data"]["medsage/correction_rate"] > 0 for step in steps)  # the taught policy self-corrects


def test_the_vision_check_fails_when_the_tower_moved(fit_run, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(fit_run / f"merged_step_{STEPS}", moved)
    weights = next(moved.glob("*.safetensors"))
    tensors = load_file(weights)
    name = next(n for n in tensors if ".visual." in n)
    tensors[name] = tensors[name] + 1
    save_file(tensors, weights, metadata={"format": "pt"})
    tower, rest = changed_tensors(fit_run / f"merged_step_{STEPS}", moved)
    assert (tower, rest) == ([name], [])
    assert vision_main([str(fit_run / f"merged_step_{STEPS}"), str(moved)]) == 1
