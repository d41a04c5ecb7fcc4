"""The SFT export is accepted by ``llamafactory-cli train`` unchanged: two steps on the tiny model."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

from medsage.data_gen.config import load_config
from medsage.data_gen.pipeline import build

from conftest import write_recipe


def test_llamafactory_trains_two_steps_on_the_sft_export(tiny_model_dir, tmp_path):
    recipe = write_recipe(tmp_path / "data.yaml",
                          sources=[{"kind": "phantom_deeplesion", "n": 3, "seed": 0}, {"kind": "phantom_coco", "n": 2, "seed": 1}])
    build(load_config(recipe), progress=False)
    sft, out = tmp_path / "out" / "sft", tmp_path / "trained"
    train = {
        "model_name_or_path": str(tiny_model_dir), "image_max_pixels": 112 * 112, "stage": "sft", "do_train": True,
        "finetuning_type": "full", "freeze_vision_tower": True, "dataset": "sage_sft", "dataset_dir": str(sft),
        "template": "qwen2_vl", "cutoff_len": 1024, "preprocessing_num_workers": 1, "dataloader_num_workers": 0,
        "output_dir": str(out), "overwrite_output_dir": True, "save_strategy": "no", "logging_steps": 1,
        "report_to": "none", "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-3, "max_steps": 2, "use_cpu": True, "bf16": False,
    }
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(train))
    cli = Path(sys.executable).with_name("llamafactory-cli")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([str(cli), "train", str(tmp_path / "sft.yaml")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    logs = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in logs if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
