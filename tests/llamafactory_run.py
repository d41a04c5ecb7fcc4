"""Run ``llamafactory-cli train`` unchanged, on CPU, the way the tests need it: a short SFT whose losses come back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

CPU_SFT = {
    "stage": "sft", "do_train": True, "finetuning_type": "full", "freeze_vision_tower": True,
    "template": "qwen2_vl", "image_max_pixels": 112 * 112, "preprocessing_num_workers": 1,
    "dataloader_num_workers": 0, "overwrite_output_dir": True, "save_strategy": "no", "logging_steps": 1,
    "report_to": "none", "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
    "learning_rate": 1.0e-3, "max_steps": 2, "use_cpu": True, "bf16": False,
}


def train_sft(model_dir: Path, dataset_dir: Path, dataset: str, output_dir: Path, **overrides: Any) -> list[float]:
    """The logged training losses; fails the test with the log's tail when the CLI fails.

    No DISABLE_VERSION_CHECK: the pinned stack must satisfy LLaMA-Factory's own version gate.
    CUDA_VISIBLE_DEVICES="" keeps the run on CPU on a GPU machine too (it places the model by device).
    """
    recipe = {**CPU_SFT, "model_name_or_path": str(model_dir), "dataset_dir": str(dataset_dir),
              "dataset": dataset, "output_dir": str(output_dir), **overrides}
    path = output_dir.parent / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cli = Path(sys.executable).with_name("llamafactory-cli")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([str(cli), "train", str(path)], env=env, cwd=output_dir.parent,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    logs = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    return [entry["loss"] for entry in logs if "loss" in entry]
