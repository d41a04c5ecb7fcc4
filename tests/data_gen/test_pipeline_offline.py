"""The whole build with the offline generator, through the real readers, into the real export formats."""

import json
import shutil
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image

from medsage.data_gen import phantom
from medsage.data_gen.cli import main
from medsage.data_gen.config import load_config
from medsage.data_gen.exports import AGENT_NAME
from medsage.data_gen.pipeline import build
from medsage.reward_fns.rewards import compute_score
from medsage.reward_fns.scaffold import STAGES, parse

from build_recipes import write_recipe


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    recipe = write_recipe(tmp_path_factory.mktemp("build") / "recipe.yaml")
    assert main(["build", str(recipe), "--no-progress"]) == 0
    return load_config(recipe)


def _out(config) -> Path:
    return Path(config.output_dir)


def test_sft_export_is_verified_lvkc_with_images_relative_to_dataset_dir(built):
    sft = _out(built) / "sft"
    info = json.loads((sft / "dataset_info.json").read_text())
    rows = json.loads((sft / info["sage_sft"]["file_name"]).read_text())
    assert info["sage_sft"]["formatting"] == "sharegpt" and len(rows) > 40
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and user["content"].count("<image>") == len(row["images"]) == 1
        assert parse(assistant["content"]).valid
        Image.open(sft / row["images"][0]).verify()


def test_every_exported_trajectory_passes_the_rules_and_negatives_do_not(built):
    lines = (_out(built) / "work" / "trajectories.jsonl").read_text().splitlines()
    trajectories = [t for line in lines for t in json.loads(line)["trajectories"]]
    good = [t for t in trajectories if "negative" not in t["generator"]]
    bad = [t for t in trajectories if "negative" in t["generator"]]
    assert good and all(t["accepted"] and not t["reasons"] for t in good)
    assert bad and not any(t["accepted"] for t in bad)
    kinds = {t["generator"].rsplit(":", 1)[1]: t["reasons"] for t in bad}
    assert set(kinds) == {"contradicting_answer", "dropped_stage", "label_leak"}  # the corruption module's kinds
    assert kinds["contradicting_answer"] == ["wrong_answer"]
    assert kinds["dropped_stage"][0].startswith("invalid_scaffold:missing")
    assert kinds["label_leak"] == ["label_leak:VISUAL"]


def _readme_table(text: str, header: str) -> dict[str, str]:
    """First column -> last column of the markdown table under the line starting with ``header``."""
    lines = text[text.index(header):].splitlines()[2:]
    rows = [line.split("|")[1:-1] for line in lines[: next(i for i, l in enumerate(lines) if not l.startswith("|"))]]
    return {name.strip().strip("`"): cells[-1] for name, *cells in rows}


def test_rl_row_schema_is_one_across_exporter_parquet_reward_and_readme(built):
    """The exporter's RLRow, the parquet schema it writes, the fields the reward reads and the
    README's tables name the same columns and extra_info fields."""
    import pyarrow.parquet as pq

    from medsage.data_gen.exports import ABILITY, RL_SCHEMA, RLExtraInfo, RLRow

    columns, extra = [f.name for f in fields(RLRow)], [f.name for f in fields(RLExtraInfo)]
    assert RL_SCHEMA.names == columns and RL_SCHEMA.field("extra_info").type.names == extra
    assert pq.read_schema(_out(built) / "rl" / "train.parquet").remove_metadata() == RL_SCHEMA
    readme = (Path(__file__).parents[2] / "recipes" / "rl" / "README.md").read_text()
    documented = _readme_table(readme, "| column |")
    assert list(documented) == columns and f"`{ABILITY}`" in documented["ability"]
    assert list(_readme_table(readme, "| `extra_info` field |")) == extra

    row = pd.read_parquet(_out(built) / "rl" / "train.parquet").iloc[0]
    assert row.ability == ABILITY and row.data_source.startswith("medsage/")
    mc = next(r for r in pd.read_parquet(_out(built) / "rl" / "train.parquet").itertuples()
              if r.extra_info["answer_type"] == "multiple_choice")
    options = list(mc.extra_info["options"])
    letter = mc.reward_model["ground_truth"]
    answer_text = options["ABCDEFGH".index(letter)]
    # The reward reads the written options: the option text alone earns the letter's credit.
    info = {**mc.extra_info, "options": options}
    assert compute_score(mc.data_source, f"<ANSWER>{answer_text}</ANSWER>", letter, info)["accuracy"] == 1.0
    wrong = next(o for o in options if o != answer_text)
    assert compute_score(mc.data_source, f"<ANSWER>{wrong}</ANSWER>", letter, info)["accuracy"] == 0.0


def test_samples_are_unique_and_cover_every_task_type(built):
    lines = (_out(built) / "work" / "trajectories.jsonl").read_text().splitlines()
    ids = [json.loads(line)["sample_id"] for line in lines]
    assert len(ids) == len(set(ids))
    tasks = Counter(i.split("::")[1].split(":")[0] for i in ids)
    assert set(tasks) == {"multiple_choice", "yes_no", "open", "localization", "source_qa"}
    counts = [tasks[t] for t in ("multiple_choice", "yes_no", "open", "localization")]
    assert min(counts) >= sum(counts) / 8, tasks  # dealt by content: balanced on average, never empty


def test_rl_parquet_loads_in_verl_and_its_reference_earns_full_accuracy(built, tiny_model_dir):
    from transformers import AutoProcessor, AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    rl = _out(built) / "rl"
    train, val = pd.read_parquet(rl / "train.parquet"), pd.read_parquet(rl / "val.parquet")
    assert len(train) + len(val) == 24 and len(val) > 0
    assert not set(train.extra_info.map(lambda e: e["sample_id"].split("::")[0])) & set(
        val.extra_info.map(lambda e: e["sample_id"].split("::")[0]))
    tasks = Counter(train.extra_info.map(lambda e: e["task_type"])) + Counter(val.extra_info.map(lambda e: e["task_type"]))
    available = Counter(json.loads(line)["task_type"] for line in (rl.parent / "samples.jsonl").read_text().splitlines())
    assert all(n >= min(available[t], 24 // len(tasks)) for t, n in tasks.items()), (tasks, available)  # as even as it can be
    assert set(train.agent_name) == {AGENT_NAME}
    registry = yaml.safe_load((Path(__file__).parents[2] / "plugins" / "verl" / "agent_loops.yaml").read_text())
    assert AGENT_NAME in {entry["name"] for entry in registry}  # the name verl runs the self-check loop by
    assert set(val.agent_name) == {"single_turn_agent"}  # validation never self-checks

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    config = OmegaConf.create({"max_prompt_length": 2048, "filter_overlong_prompts": True,
                               "filter_overlong_prompts_workers": 1, "cache_dir": str(rl / "cache")})
    dataset = RLHFDataset(str(rl / "train.parquet"), tokenizer, config, processor)
    assert len(dataset) == len(train)
    for i in range(len(dataset)):
        row = dataset[i]
        content = row["raw_prompt"][0]["content"]
        assert [part["type"] for part in content][:1] == ["image"] and isinstance(content[0]["image"], Image.Image)
        extra = row["extra_info"]
        assert extra["answer_type"] in ("multiple_choice", "yes_no", "open") and extra["question"]
        reference = "".join(f"<{tag}>{extra['stages'][tag]}</{tag}>" for tag in STAGES)
        score = compute_score(row["data_source"], reference, row["reward_model"]["ground_truth"], extra)
        assert score["accuracy"] == 1.0, (reference, row["reward_model"])


def test_scorer_pairs_and_card(built):
    out = _out(built)
    pairs = [json.loads(line) for line in (out / "scorer" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["positive"] != p["negative"] and p["negative_reason"] for p in pairs)
    assert set(pairs[0]) == {"sample_id", "question", "positive", "negative", "negative_reason"}
    card = (out / "card" / "README.md").read_text()
    assert "offline-rule-based" in card and "rule-based offline generator" in card
    for plot in ("by_source", "by_modality", "by_task", "acceptance", "rejection_reasons"):
        assert Image.open(out / "card" / f"{plot}.png").size[0] > 100


def test_rerun_resumes_and_reproduces_the_outputs(built, tmp_path):
    out = _out(built)
    before = {p: (out / p).read_bytes() for p in ("sft/sage_sft.json", "scorer/pairs.jsonl", "work/trajectories.jsonl")}
    rl_before = pd.read_parquet(out / "rl" / "train.parquet")
    build(built, progress=False)
    assert {p: (out / p).read_bytes() for p in before} == before
    pd.testing.assert_frame_equal(pd.read_parquet(out / "rl" / "train.parquet"), rl_before)


def test_leaked_training_images_are_reported_and_dropped(tmp_path):
    recipe = write_recipe(tmp_path / "a.yaml", sources=[{"kind": "phantom_coco", "n": 6, "seed": 4}])
    stats = build(load_config(recipe), progress=False)
    sft = tmp_path / "out" / "sft"
    image = sorted((sft / "images").rglob("*.png"))[0]
    (tmp_path / "bench").mkdir()
    Image.open(image).convert("RGB").resize((300, 300)).save(tmp_path / "bench" / "copy.jpg", quality=80)
    shutil.rmtree(tmp_path / "out")
    recipe = write_recipe(tmp_path / "b.yaml", sources=[{"kind": "phantom_coco", "n": 6, "seed": 4}],
                          leakage={"eval_dirs": [str(tmp_path / "bench")], "max_distance": 20})
    leaked = build(load_config(recipe), progress=False)
    assert [m["eval_image"] for m in leaked.leaks] == [str(tmp_path / "bench" / "copy.jpg")]
    assert leaked.filtered["benchmark_leak"] == 1
    rows = json.loads((sft / "sage_sft.json").read_text())
    assert all(r["images"][0] != str(image.relative_to(sft)) for r in rows)
    assert sum(stats.by_source.values()) > sum(leaked.by_source.values())


def test_recipe_errors_name_the_key(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", generation={"backend": "offline", "trajectories": 3})
    with pytest.raises(ValueError, match=r"generation.trajectories: unknown key"):
        load_config(recipe)
    recipe = write_recipe(tmp_path / "r.yaml", sources=[{"kind": "dicom"}])
    with pytest.raises(ValueError, match=r"sources\[0\]\.kind"):
        load_config(recipe)


@pytest.mark.parametrize("name", ["quickstart.yaml", "sage_sft20k.yaml", "sage_rl10k.yaml"])
def test_shipped_recipes_load(name):
    config = load_config(Path(__file__).parents[2] / "recipes" / "data" / name)
    assert config.sources and config.generation.trajectories_per_sample >= 1


def test_multi_image_records_are_skipped_and_named_in_the_card(tmp_path):
    """Samples carry one image each; PubMedVision records with several are counted, never silently lost."""
    path = phantom.write_pubmedvision(tmp_path / "pmv", 3, seed=5)
    records = json.loads(path.read_text())
    records[1]["image"] = [records[1]["image"][0], records[2]["image"][0]]
    path.write_text(json.dumps(records))
    recipe = write_recipe(tmp_path / "r.yaml", sources=[{"kind": "pubmedvision", "json": str(path)}])
    stats = build(load_config(recipe), progress=False)
    assert stats.read["0:pubmedvision"]["reasons"] == {"multi_image": 1} and stats.read["0:pubmedvision"]["kept"] == 2
    assert "1 record(s) with several images were skipped (`multi_image`)" in (tmp_path / "out" / "card" / "README.md").read_text()
    rows = json.loads((tmp_path / "out" / "sft" / "sage_sft.json").read_text())
    assert all(len(r["images"]) == 1 for r in rows) and len({r["images"][0] for r in rows}) == 2


def test_caps_sample_by_seed_per_source_and_in_total_and_an_unpicked_rows_removal_moves_nothing(tmp_path):
    from medsage.data_gen.pipeline import Builder

    root = phantom.write_deeplesion(tmp_path / "dl", 12, seed=0)
    recipe = write_recipe(tmp_path / "r.yaml", max_records=7, exports={"rl_size": 10, "sft_size": 5},
                          sources=[{"kind": "deeplesion", "root": str(root), "max_records": 4},
                                   {"kind": "phantom_coco", "n": 10, "seed": 1}])
    _, selected = Builder(load_config(recipe), progress=False).survey()
    assert len(selected[0]) == 4 and len(selected[0]) + len(selected[1]) == 7
    lines = (root / "DL_info.csv").read_text().splitlines(keepends=True)
    unpicked = next(i for i, line in enumerate(lines[1:], start=1) if not any(line.startswith(r.split("/")[1]) for r in selected[0]))
    (root / "DL_info.csv").write_text("".join(lines[:unpicked] + lines[unpicked + 1:]))
    assert Builder(load_config(recipe), progress=False).survey()[1] == selected
    stats = build(load_config(recipe), progress=False)
    assert stats.filtered["not_sampled:max_records"] == 11 + 10 - 7
    assert stats.outputs["sft/sage_sft.json"] == 5 and len(json.loads((tmp_path / "out" / "sft" / "sage_sft.json").read_text())) == 5
