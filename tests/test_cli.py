"""Every command has one shape, ``medsage-<tool> [verb] RECIPE.yaml a.b=value ...``: ``--help`` explains
every option without importing a framework, and a user's mistake is one line, ``medsage-<tool>:
message``, exit code 2, before any work and without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
HEAVY = ("torch", "transformers", "verl", "openai", "pandas", "vllm")
# (entry point module, function, argv prefix): the console scripts of setup.py and the quickstart's two scripts.
COMMANDS = {
    "medsage-data": ("medsage.data_gen.cli", "main", ["build"]),
    "medsage-eval": ("medsage.eval.cli", "main", []),
    "medsage-eval leakage": ("medsage.eval.cli", "main", ["leakage"]),
    "medsage-scorer-train": ("medsage.reward_fns.consistency.cli", "train_main", []),
    "medsage-scorer-serve": ("medsage.reward_fns.consistency.cli", "serve_main", []),
    "quickstart": ("quickstart", "main", []),
    "ablation": ("ablation", "main", []),
}
HELP_PROBE = """
import argparse, json, sys
sys.path.insert(0, {folder!r})
parsers = []
parse = argparse.ArgumentParser.parse_intermixed_args
argparse.ArgumentParser.parse_intermixed_args = lambda self, *a, **k: parsers.append(self) or parse(self, *a, **k)
from {module} import {function} as main
try:
    main({argv!r})
except SystemExit as exit:
    code = exit.code
print(json.dumps({{"code": code, "undocumented": [a.dest for p in parsers for a in p._actions if not a.help],
                  "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_documents_every_option_without_importing_a_framework(command):
    module, function, prefix = COMMANDS[command]
    code = HELP_PROBE.format(folder=str(RECIPES / "quickstart"), module=module, function=function,
                             argv=[*prefix, "--help"], heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"code": 0, "undocumented": [], "heavy": []}, result.stderr[-2000:]
    assert "KEY=VALUE" in result.stdout and "RECIPE.yaml" in result.stdout


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("medsage-data", ["build", "recipes/data/sage_rl10k.yaml", "exports.rl_size=10k"],
         "recipes/data/sage_rl10k.yaml: exports.rl_size: expected int, got '10k' (str)"),
        ("medsage-data", ["build", "recipes/data/sage_rl10k.yaml", "generation.backend=gpt4"],
         "generation.backend: expected one of 'offline', 'openai', got 'gpt4'"),
        ("medsage-data", ["build", "nowhere.yaml"], "nowhere.yaml: cannot read the recipe"),
        ("medsage-data", ["build", "recipes/data/sage_rl10k.yaml", "sources.0.root=/nowhere/dl", "sources.1.root=/nowhere/coco"],
         "recipes/data/sage_rl10k.yaml: sources.0.root: /nowhere/dl does not exist; sources.1.root: /nowhere/coco does not exist;"),
        ("medsage-eval", ["recipes/eval/table1.yaml", "benchmarks.1.path=/nowhere/slake"],
         "benchmarks.1.path (slake): /nowhere/slake does not exist"),
        ("medsage-eval", ["leakage", "recipes/eval/table1.yaml", "--train", "x.json", "benchmarks.0.path=/nowhere/vqa-rad"],
         "benchmarks.0.path (vqa_rad): /nowhere/vqa-rad does not exist"),
        ("medsage-eval", ["recipes/eval/table1.yaml", "model.dtype=bf16"], "model.dtype: expected one of 'auto'"),
        ("medsage-eval", ["recipes/eval/table1.yaml", "model.modle_path=/x"], "model.modle_path: unknown key; valid keys here: path,"),
        ("medsage-eval", ["leakage", "recipes/eval/table1.yaml", "--train", "x.json", "self_check=sometimes"],
         "self_check: expected one of 'never', 'always', got 'sometimes'"),
        ("medsage-scorer-train", ["recipes/scorer/train.yaml", "pairs=/x/pairs.jsonl"],
         "pairs: expected a list of str, got '/x/pairs.jsonl' (str)"),
        ("medsage-scorer-train", ["recipes/scorer/train.yaml", "pairs=[/nowhere/pairs.jsonl]"],
         "pairs: no file /nowhere/pairs.jsonl (medsage-data build writes"),
        ("medsage-scorer-serve", ["recipes/scorer/serve.yaml", "dtype=bf16"],
         "dtype: expected one of 'auto', 'float32', 'bfloat16', 'float16', got 'bf16'"),
        ("medsage-scorer-serve", ["recipes/scorer/serve.yaml", "checkpoint=/nowhere", "port=80000"], "port: expected <= 65535"),
        ("medsage-scorer-serve", ["recipes/scorer/serve.yaml", "checkpoint=/nowhere"], "checkpoint: no folder /nowhere"),
        ("quickstart", ["recipes/quickstart/quickstart.yaml", "seed=abc"], "seed: expected int, got 'abc' (str)"),
        ("quickstart", ["recipes/quickstart/quickstart.yaml", "sft.max_stepz=3"], "sft.max_stepz: unknown key"),
        ("ablation", ["recipes/quickstart/ablation.yaml", "arms.grpo=medsage.alpha=0"], "arms.grpo: expected a list of str"),
    ],
)
def test_a_user_mistake_is_one_line_and_exit_code_2(command, args, message, capsys, monkeypatch):
    module, function, _ = COMMANDS[command]
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(RECIPES / "quickstart"))
    main = getattr(__import__(module, fromlist=[function]), function)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{command.split()[0]}: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_evaluation_recipe_error_leaves_no_output_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    from medsage.eval.cli import main

    out = tmp_path / "eval"
    assert main(["recipes/eval/table1.yaml", f"output_dir={out}", "benchmarks.1.path=/nowhere/slake"]) == 2
    assert "/nowhere/slake does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_the_quickstart_checks_the_data_recipe_it_names_before_any_stage(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(RECIPES / "quickstart"))
    from quickstart import main

    data = tmp_path / "data.yaml"
    data.write_text("output_dir: x\nsources: [{kind: phantom_coco, n: 2}]\nexports: {rl_size: 10k}\n")
    assert main(["recipes/quickstart/quickstart.yaml", f"data.recipe={data}", f"run_dir={tmp_path / 'run'}"]) == 2
    assert f"quickstart: {data}: exports.rl_size: expected int, got '10k'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
