"""The SFT export is accepted by ``llamafactory-cli train`` unchanged: two steps on the tiny model."""

import math

from medsage.data_gen.config import load_config
from medsage.data_gen.pipeline import build

from build_recipes import write_recipe
from llamafactory_run import train_sft


def test_llamafactory_trains_two_steps_on_the_sft_export(tiny_model_dir, tmp_path):
    recipe = write_recipe(tmp_path / "data.yaml",
                          sources=[{"kind": "phantom_deeplesion", "n": 3, "seed": 0}, {"kind": "phantom_coco", "n": 2, "seed": 1}])
    build(load_config(recipe), progress=False)
    sft, out = tmp_path / "out" / "sft", tmp_path / "trained"
    losses = train_sft(tiny_model_dir, sft, "sage_sft", out, cutoff_len=1024)
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
