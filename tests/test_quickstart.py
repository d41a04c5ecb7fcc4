"""The quickstart end to end in a CI-sized configuration: every stage runs, resumes, and reports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForImageTextToText

from medsage.plugins.verl.sessions import read_sessions

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "recipes" / "quickstart" / "quickstart.py"
RECIPE = REPO / "recipes" / "quickstart" / "quickstart.yaml"
STAGES = ("model", "data", "benchmark", "align", "sft", "rl", "eval_base", "eval_sft", "eval_rl", "report")
sys.path.insert(0, str(SCRIPT.parent))
import ablation  # noqa: E402  (recipes/quickstart)
import quickstart as script  # noqa: E402

CI_SIZE = {
    "model.text_hidden": 64, "model.text_layers": 2, "model.text_heads": 2, "model.text_kv_heads": 1,
    "model.text_intermediate": 128, "benchmark.items": 6, "align.max_steps": 2, "align.logging_steps": 1, "sft.max_steps": 3, "sft.logging_steps": 1,
    "rl.steps": 2, "eval.max_new_tokens": 32, "eval.bootstrap_resamples": 50,
    # R-GRPO at CI size: 2 prompts x 2 sessions, short attempts (the recipe's keys are verl's and medsage's).
    "rl.overrides": "[data.max_response_length=160,medsage.attempt_max_tokens=64,medsage.self_check_max_tokens=16,"
                    "actor_rollout_ref.rollout.n=2,data.train_batch_size=2,actor_rollout_ref.actor.ppo_mini_batch_size=2,"
                    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4,"
                    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4,"
                    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4]",
}


def quickstart(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    sets = [f"{k}={v}" for k, v in {**CI_SIZE, "run_dir": run_dir}.items()]
    return subprocess.run([sys.executable, str(SCRIPT), str(RECIPE), *sets, *extra], capture_output=True, text=True, cwd=REPO)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("quickstart")
    done = quickstart(run)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run, done.stdout


def test_every_stage_runs_and_reports_progress(finished_run):
    run, stdout = finished_run
    for stage in STAGES:
        assert f"[quickstart:{stage}] finished" in stdout
        assert "seconds" in json.loads((run / "stages" / f"{stage}.json").read_text())
    assert "step 3/3" in stdout and "step 2/2" in stdout  # the SFT and alignment progress lines
    assert "step 2/2: reward" in stdout  # the R-GRPO progress line, printed once per step
    assert stdout.count("step 1/2: reward") == 1


def _changed(after: Path, before: Path) -> list[str]:
    a, b = (AutoModelForImageTextToText.from_pretrained(p) for p in (after, before))
    return [n for (n, x), (_, y) in zip(a.named_parameters(), b.named_parameters(), strict=True) if not x.equal(y)]


def test_align_trains_the_vision_tower_and_sft_freezes_it_as_the_paper_does(finished_run):
    run, _ = finished_run
    aligned = _changed(run / "align_model", run / "base_model")
    assert any(".visual.blocks." in n for n in aligned) and any(".visual.merger." in n for n in aligned)
    tuned = _changed(run / "sft_model", run / "align_model")
    assert any(n.startswith("lm_head") or ".language_model.layers." in n for n in tuned)  # the language model trained
    assert not any(".visual." in n for n in tuned)  # tower and projector frozen (appendix B.1)
    answers = json.loads((run / "align_data" / "sage_answers.json").read_text())
    assert answers and all("<LOC>" not in r["messages"][1]["content"] and "Answer in five" not in r["messages"][0]["content"]
                           for r in answers)


def test_report_holds_numbers_for_every_stage(finished_run):
    run, _ = finished_run
    report = (run / "report" / "README.md").read_text()
    for stage in STAGES[:-1]:
        assert f"| {stage} | " in report
    assert "## R-GRPO (paper 3.3) with verl's own trainer loop" in report and "What R-GRPO did to accuracy" in report
    assert "| base (untrained) |" in report and "| after SFT |" in report and "| after SFT + R-GRPO |" in report
    assert (run / "report" / "sft_loss.png").stat().st_size > 0 and (run / "report" / "align_loss.png").stat().st_size > 0
    assert (run / "report" / "learning_signal.png").stat().st_size > 0
    assert "(explore/index.html)" in report  # the explorer over the data, the RL sessions and both evaluations
    assert all((run / "report" / "explore" / f"{page}.html").is_file() for page in ("index", "samples", "sessions", "predictions"))
    sft = json.loads((run / "stages" / "eval_sft.json").read_text())
    assert sft["n"] == 6 and 0.0 <= sft["valid_scaffold_rate"] <= 1.0
    rl = json.loads((run / "stages" / "rl.json").read_text())
    assert rl["steps"] == 2 and [m["step"] for m in rl["metrics"]] == [1, 2]
    assert all("medsage/self_check_rate" in m and "medsage/effective_group_rate" in m for m in rl["metrics"])
    records = read_sessions(rl["sessions"])
    assert len(records) == 2 * 2 * 2 and all(r.r_sc in (0.0, 1.0) and r.spans for r in records)  # steps x prompts x n
    assert all(r.question and r.ground_truth is not None for r in records)
    assert json.loads((run / "stages" / "eval_rl.json").read_text())["n"] == 6


def test_rl_updates_the_language_model_and_keeps_the_vision_tower(finished_run):
    run, _ = finished_run
    tuned = _changed(run / "rl_model", run / "sft_model")
    assert any(n.startswith("lm_head") or ".language_model.layers." in n for n in tuned)
    assert not any(".visual." in n for n in tuned)


def test_a_second_run_resumes_by_skipping_finished_stages(finished_run):
    run, _ = finished_run
    again = quickstart(run)
    assert again.returncode == 0
    assert all(f"[quickstart:{stage}] done earlier, skipped" in again.stdout for stage in STAGES)


def test_only_redoes_one_stage(finished_run):
    run, _ = finished_run
    before = (run / "stages" / "benchmark.json").stat().st_mtime_ns
    again = quickstart(run, "--only", "benchmark")
    assert again.returncode == 0 and "[quickstart:benchmark] finished" in again.stdout
    assert "[quickstart:sft]" not in again.stdout
    assert (run / "stages" / "benchmark.json").stat().st_mtime_ns > before


def test_a_redone_eval_stage_predicts_again_instead_of_reusing(finished_run):
    run, _ = finished_run
    predictions = run / "eval_sft_model" / "predictions" / "phantom.jsonl"
    stale_marker = predictions.with_name("stale.txt")
    stale_marker.write_text("left by the previous run")
    again = quickstart(run, "--only", "eval_sft")
    assert again.returncode == 0 and "predict phantom" in again.stderr + again.stdout
    assert predictions.exists() and not stale_marker.exists()


def test_unknown_setting_is_rejected_up_front(tmp_path):
    bad = quickstart(tmp_path, "sft.max_stepz=3")
    assert bad.returncode == 2 and "quickstart.yaml: sft.max_stepz: unknown key" in bad.stderr
    bad = quickstart(tmp_path, "seed=abc")
    assert bad.returncode == 2 and "quickstart.yaml: seed: expected int, got 'abc'" in bad.stderr
    assert not (tmp_path / "stages").exists()


def test_the_ablation_command_trains_an_arm_and_resumes(finished_run):
    """CI-sized: one real arm (plain GRPO, 2 steps) from the finished quickstart's SFT model; the alpha
    arms run the same stage with another override (tests/verl/test_entry_point.py), their rows below."""
    run, _ = finished_run
    recipe = run / "ablation_ci.yaml"
    recipe.write_text(yaml.safe_dump({
        "quickstart": str(RECIPE),
        "quickstart_overrides": [f"{k}={v}" for k, v in {**CI_SIZE, "run_dir": run}.items()],
        "steps": 2,
        "arms": {"grpo": ["medsage.self_check=false"]},
    }))
    command = [sys.executable, str(REPO / "recipes" / "quickstart" / "ablation.py"), str(recipe)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (run / "ablation" / "README.md").read_text()
    assert "| SFT |" in table and "| SFT + RL |" in table and "| SFT + RL + Self |" not in table
    assert (run / "ablation" / "figure5.png").stat().st_size > 0
    grpo = json.loads((run / "ablation" / "grpo" / "arm.json").read_text())
    assert grpo["self_check_rate"] == 0.0 and grpo["steps"] == 2  # plain GRPO never self-checks
    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and "ablation:grpo] done earlier, skipped" in again.stdout, again.stdout[-3000:]
    assert json.loads((run / "ablation" / "grpo" / "arm.json").read_text()) == grpo


def test_the_ablation_tables_and_figure_hold_every_arm(tmp_path):
    """Tables 5 and 4 in the paper's layout from arm results (the shape run_arm returns), published beside ours."""
    items = [f"q{k}" for k in range(10)]
    def row(right: int, alpha=None, rate=0.0) -> dict:
        return {"correct": {q: k < right for k, q in enumerate(items)}, "n": len(items), "steps": 2,
                "accuracy": {"value": right / 10, "low": 0.0, "high": 1.0}, "alpha": alpha, "self_check_rate": rate}
    sft = row(6)
    arms = {"grpo": row(7), "alpha_0": row(6, alpha=0.0), "alpha_0.2": row(8, alpha=0.2, rate=0.25), "alpha_0.3": row(5, alpha=0.3)}
    table = ablation.tables(sft, arms, resamples=50)
    lines = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert lines["| SFT"].startswith("| SFT | 60.0% [0.0, 100.0] | —") and "| 67.3 | 77.4 | 64.7 | 69.8 |" in lines["| SFT"]
    assert "70.0% [0.0, 100.0] | +10.0 [" in lines["| SFT + RL"]
    assert "80.0% [0.0, 100.0] | +20.0 [" in lines["| SFT + RL + Self"] and "| 70.4 | 79.8 | 66.7 | 72.3 |" in lines["| SFT + RL + Self"]
    assert lines["| Base only (alpha = 0)"].startswith("| Base only (alpha = 0) | 0.0% | 60.0% [0.0, 100.0] | +0.0 [")
    assert lines["| Base + SC (alpha = 0.2)"].startswith("| Base + SC (alpha = 0.2) | 25.0% |")
    assert lines["| Base + SC (alpha = 0.3)"].endswith("| — | — | — | — |")  # not in the paper: nothing published
    order = [k for k in lines if k.startswith("| Base")]
    assert order == ["| Base only (alpha = 0)", "| Base + SC (alpha = 0.2)", "| Base + SC (alpha = 0.3)"]
    ablation.figure5(arms, tmp_path / "figure5.png")
    assert (tmp_path / "figure5.png").read_bytes()[:4] == b"\x89PNG"


def test_progress_prints_every_step_even_when_several_finish_between_two_polls(tmp_path, capsys):
    """A fast machine finishes several steps inside one 5 s poll; each step's line must still appear once."""
    log = tmp_path / "trainer_log.jsonl"
    writer = "import json,sys; open(sys.argv[1],'w').write(''.join(json.dumps({'current_steps':k,'loss':1/k})+'\\n' for k in (1,2,3)))"
    script._call([sys.executable, "-c", writer, str(log)], tmp_path / "run.log",
                 progress=lambda: script._train_progress(log, 3))
    printed = capsys.readouterr().out
    assert [printed.count(f"step {k}/3, loss") for k in (1, 2, 3)] == [1, 1, 1]
    assert printed.count("loading model and data") == 1
