"""Table 1/2 reports beside the published numbers, the recipes shipped in recipes/eval/, and the CLI."""

import csv
from pathlib import Path

import pytest
from eval_formats import write_slake

from medsage.eval.cli import main
from medsage.config import ConfigError, build
from medsage.eval.config import EvalConfig, load_recipe
from medsage.eval.published import TABLE1, TABLE1_BENCHMARKS
from medsage.eval.report import write_reports
from medsage.eval.scoring import ScoredItem, summarize

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "eval"
RIGHT = {"vqa_rad": 7, "slake": 8, "pathvqa": 6, "pmc_vqa": 5, "mmmu_med": 4}  # out of 10 each


def _scored(benchmark: str, right: int) -> list[ScoredItem]:
    return [
        ScoredItem(f"{benchmark}-{i}", benchmark, "yes_no", True, "CT", "Organ", True, i < right, False, 0.0, 0.0)
        for i in range(10)
    ]


def test_table1_puts_ours_with_ci_beside_published_rows(tmp_path):
    summaries = summarize([s for b, r in RIGHT.items() for s in _scored(b, r)], n_resamples=200)
    files = write_reports(summaries, "ours-7b", tmp_path, {"slake": {"localization": 3.0, "visual_analysis": 2.5,
                                                                     "knowledge": 4.0, "reasoning": 3.5}})
    md = files.table1_md.read_text()
    ours_row = next(line for line in md.splitlines() if line.startswith("| **ours-7b**"))
    cells = [c.strip() for c in ours_row.strip("|").split("|")]
    assert cells[3].startswith("70.0 [") and cells[4].startswith("80.0 [") and cells[-1] == "60.0"
    assert "| MEDSAGE (paper) | Medical reasoning | published, not re-measured | 70.4 | 79.8 | 66.7 | 58.3 | 65.8 | 69.8 |" in md
    assert "| InternVL3-8B | General-purpose | published, not re-measured | 67.3 | 69.7 | 65.7 | 52.7 | — | 63.9 |" in md

    rows = list(csv.DictReader(files.table1_csv.open()))
    ours = [r for r in rows if r["group"] == "ours"]
    assert {r["benchmark"]: float(r["accuracy"]) for r in ours} == {b: 10.0 * r for b, r in RIGHT.items()}
    assert all(float(r["ci_low"]) <= float(r["accuracy"]) <= float(r["ci_high"]) for r in ours)
    published = [r for r in rows if r["group"] != "ours"]
    assert len(published) == len(TABLE1) * (len(TABLE1_BENCHMARKS) + 1)
    assert {r["source"] for r in published} == {"published, not re-measured"}

    t2 = files.table2_md.read_text()
    assert "| ours-7b | SLAKE | measured here | 3.000 | 2.500 | 4.000 | 3.500 | 3.250 |" in t2
    assert "| SFT+RL | VQA-RAD | published, not re-measured | 3.830 | 3.447 | 3.652 | 3.453 | 3.033 |" in t2
    assert files.chart_png.stat().st_size > 1000


def test_average_is_left_blank_unless_all_five_benchmarks_were_measured(tmp_path):
    files = write_reports(summarize(_scored("slake", 8), n_resamples=50), "partial", tmp_path)
    ours_row = next(line for line in files.table1_md.read_text().splitlines() if line.startswith("| **partial**"))
    assert ours_row.rstrip(" |").endswith("—") and files.table2_md is None


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_shipped_recipes_validate(recipe):
    config = load_recipe(RECIPES / recipe)
    assert config.max_new_tokens == 1024 or recipe == "phantom_tiny.yaml"
    assert config.temperature == 0.0 and config.benchmarks


def test_recipe_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"model.modle_path: unknown key; valid keys here: path, backend"):
        load_recipe(RECIPES / "table1.yaml", ("model.modle_path=/x",))
    with pytest.raises(ConfigError, match="self_check: expected one of 'never', 'always', got 'sometimes'"):
        load_recipe(RECIPES / "table1.yaml", ("self_check=sometimes",))
    with pytest.raises(ConfigError, match="prompt_style: expected one of 'lvkc', 'plain', got 'cot'"):
        load_recipe(RECIPES / "table1.yaml", ("prompt_style=cot",))
    with pytest.raises(ConfigError, match=r"model.dtype: expected one of 'auto', .*got 'bf16'"):
        load_recipe(RECIPES / "table1.yaml", ("model.dtype=bf16",))
    with pytest.raises(ConfigError, match=r"model.gpu_memory_utilization: expected <= 1, got 1.5"):
        load_recipe(RECIPES / "table1.yaml", ("model.gpu_memory_utilization=1.5",))
    with pytest.raises(ConfigError, match=r"model.base_url: required for the openai backend"):
        load_recipe(RECIPES / "table1.yaml", ("model.backend=openai",))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {path: m}\nbenchmarks: [{name: slake}]\noutput_dir: x\n")
    with pytest.raises(ConfigError, match=r"benchmarks\[0\].path: required, not given"):
        load_recipe(bad)


def test_cli_runs_a_recipe_with_overrides(tiny_model_dir, tmp_path, capsys):
    rows = [{"question": "Is the liver enlarged?", "answer": "Yes", "answer_type": "CLOSED", "q_lang": "en"},
            {"question": "Which organ?", "answer": "Liver", "answer_type": "OPEN", "q_lang": "en"}]
    bench = write_slake(tmp_path / "bench", rows)
    out = tmp_path / "out"
    code = main([str(RECIPES / "phantom_tiny.yaml"), f"model.path={tiny_model_dir}",
                 f"benchmarks=[{{name: phantom, path: {bench}}}]", f"output_dir={out}", "max_new_tokens=4"])
    assert code == 0
    assert "Phantom" in capsys.readouterr().out
    assert len((out / "predictions" / "phantom.jsonl").read_text().splitlines()) == 2


def test_cli_reports_a_missing_benchmark_file_without_a_traceback(tmp_path, capsys):
    code = main([str(RECIPES / "phantom_tiny.yaml"), f"benchmarks=[{{name: slake, path: {tmp_path}}}]",
                 f"output_dir={tmp_path / 'out'}"])
    assert code == 2
    assert "test.json" in capsys.readouterr().err


def test_cli_names_every_missing_benchmark_and_then_a_missing_model_before_loading_anything(tmp_path, capsys):
    recipe = str(RECIPES / "phantom_tiny.yaml")
    benchmarks = f"benchmarks=[{{name: slake, path: {tmp_path / 'slake'}}}, {{name: phantom, path: {tmp_path / 'p'}}}]"
    assert main([recipe, benchmarks, f"output_dir={tmp_path / 'out'}"]) == 2
    assert capsys.readouterr().err == (f"medsage-eval: benchmarks.0.path (slake): {tmp_path / 'slake'} does not exist; "
                                       f"benchmarks.1.path (phantom): {tmp_path / 'p'} does not exist\n")
    bench = write_slake(tmp_path / "bench", [{"question": "Which organ?", "answer": "Liver", "answer_type": "OPEN", "q_lang": "en"}])
    model = tmp_path / "rl" / "huggingface"  # what a launch script writes after training: not there yet
    assert main([recipe, f"benchmarks=[{{name: phantom, path: {bench}}}]", f"model.path={model}",
                 f"output_dir={tmp_path / 'out'}"]) == 2
    assert capsys.readouterr().err == f"medsage-eval: model.path: {model} is not a folder\n"


def test_judge_section_takes_every_endpoint_key_and_checks_them():
    base = {"model": {"path": "m"}, "benchmarks": [{"name": "slake", "path": "x"}], "output_dir": "out"}
    endpoint = {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-4.1", "max_retries": 2, "price_input_per_m": 2.0}
    judge = {"endpoint": endpoint, "limit": 10, "with_image": False}
    spec = build(EvalConfig, {**base, "reasoning_judge": judge}, "r.yaml").reasoning_judge
    assert (spec.endpoint.model, spec.endpoint.max_retries, spec.endpoint.price_input_per_m) == ("gpt-4.1", 2, 2.0)
    assert (spec.limit, spec.with_image) == (10, False)
    with pytest.raises(ConfigError, match=r"r.yaml: open_judge.endpoint.modle: unknown key"):
        build(EvalConfig, {**base, "open_judge": {**judge, "endpoint": {**endpoint, "modle": "x"}}}, "r.yaml")
    with pytest.raises(ConfigError, match="r.yaml: open_judge.endpoint: .*concurrency >= 1"):
        build(EvalConfig, {**base, "open_judge": {**judge, "endpoint": {**endpoint, "concurrency": 0}}}, "r.yaml")