"""RL rows carry the SFT image budget, and the RL prompts verl would drop as overlong are counted."""

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf
from transformers import AutoProcessor

from medsage.data_gen.config import load_config
from medsage.data_gen.exports import measure_rl_prompts
from medsage.data_gen.pipeline import build

from build_recipes import write_recipe

BUDGET = 80 * 80  # under the tiny processor's own 112x112, so the recipe's budget decides the size


def _image_tokens(processor, images) -> list[int]:
    grid = processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"]
    return (grid.prod(dim=-1) // processor.image_processor.merge_size**2).tolist()


def _sft_image_tokens(processor, sft_dir: Path, paths: list[str]) -> list[int]:
    """The image as LLaMA-Factory's qwen2_vl plugin prepares it for SFT at image_max_pixels=BUDGET."""
    from llamafactory.data.mm_plugin import get_mm_plugin

    plugin = get_mm_plugin("qwen2_vl", image_token="<|image_pad|>")
    images = plugin._regularize_images([str(sft_dir / p) for p in paths], image_max_pixels=BUDGET,
                                       image_min_pixels=32 * 32)["images"]
    return _image_tokens(processor, images)


def test_rl_images_match_sft_and_overlong_prompts_are_counted(tiny_model_dir, tmp_path):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    recipe = write_recipe(tmp_path / "r.yaml",
                          sources=[{"kind": "phantom_deeplesion", "n": 4, "seed": 0}, {"kind": "phantom_coco", "n": 3, "seed": 1}],
                          exports={"rl_size": 12, "val_fraction": 0.2, "rl_image_max_pixels": BUDGET,
                                   "rl_processor": str(tiny_model_dir), "rl_max_prompt_length": 100_000})
    stats = build(load_config(recipe), progress=False)
    out = tmp_path / "out"
    rl_files = [str(out / "rl" / f"{split}.parquet") for split in ("train", "val")]
    processor = AutoProcessor.from_pretrained(tiny_model_dir)

    # The image verl's dataset (and so the agent loop, vLLM and the trainer) hands the processor.
    config = OmegaConf.create({"max_prompt_length": 100_000, "filter_overlong_prompts": False, "cache_dir": str(tmp_path / "c")})
    dataset = RLHFDataset(rl_files, processor.tokenizer, config, processor)
    rl_images = [RLHFDataset._process_multi_modal_info(dataset[i]["raw_prompt"], 14, config)[0][0] for i in range(len(dataset))]
    paths = [row[0]["path"] for f in rl_files for row in pd.read_parquet(f).images]
    sft_tokens = _sft_image_tokens(processor, out / "sft", paths)
    assert len(rl_images) == len(paths) == stats.rl_prompts["rows"] > 0
    assert _image_tokens(processor, rl_images) == sft_tokens
    assert set(sft_tokens) == {9}  # 256x256 at 80x80 pixels -> 84x84 on the patch grid, not the 16 tokens of 112x112

    # The card's count is verl's filter's: lower the budget below the longest prompt and compare.
    longest = stats.rl_prompts["longest"]
    assert stats.rl_prompts["over"] == 0 and "0 of 12 RL prompts exceed 100000 tokens" in (out / "card" / "README.md").read_text()
    budget = measure_rl_prompts(out / "rl", str(tiny_model_dir), longest - 1)
    assert 0 < budget.over < budget.rows and budget.longest == longest
    filtered = RLHFDataset(rl_files, processor.tokenizer, OmegaConf.merge(config, {
        "max_prompt_length": longest - 1, "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1}), processor)
    assert len(filtered) == budget.rows - budget.over


def test_the_paper_data_recipes_carry_the_sft_recipes_image_budget():
    import yaml

    from medsage.data_gen.config import ExportConfig

    repo = Path(__file__).resolve().parents[2]
    sft = yaml.safe_load((repo / "recipes" / "sft" / "qwen2_5vl_7b_lvkc_full.yaml").read_text())["image_max_pixels"]
    assert ExportConfig().rl_image_max_pixels == sft
    for name in ("sage_rl10k", "sage_sft20k"):
        assert load_config(repo / "recipes" / "data" / f"{name}.yaml").exports.rl_image_max_pixels == sft
