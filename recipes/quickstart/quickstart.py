"""The MEDSAGE quickstart: every stage of the method on the embedded phantom data, on a CPU.

    python recipes/quickstart/quickstart.py recipes/quickstart/quickstart.yaml [--set key=value ...]
        [--from STAGE | --only STAGE]

Each stage calls the same entry points a cluster user calls (the tiny-model builder,
``medsage-data build``, ``llamafactory-cli train``, the R-GRPO self-check loop, the evaluation
suite) and records what it produced in ``run_dir/stages/<stage>.json``; a finished stage is
skipped on the next run, so a killed quickstart resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STAGES = ("model", "data", "benchmark", "align", "sft", "rl", "eval_base", "eval_sft", "report")


def log(stage: str, message: str) -> None:
    print(f"[quickstart:{stage}] {message}", flush=True)


# --------------------------------------------------------------------------------------- stages


def stage_model(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from medsage.plugins.tiny_model import TinySizes, build_tiny_qwen2_5_vl

    path = build_tiny_qwen2_5_vl(run / "base_model", seed=cfg.seed, sizes=TinySizes(**cfg.model))
    return {"base_model": str(path)}


def stage_data(cfg: DictConfig, run: Path) -> dict[str, Any]:
    recipe = yaml.safe_load((REPO / cfg.data.recipe).read_text())
    recipe["output_dir"] = str(run / "data")
    derived = run / "data_recipe.yaml"
    derived.write_text(yaml.safe_dump(recipe, sort_keys=False))
    _call([sys.executable, "-m", "medsage.data_gen.cli", "build", str(derived)], run / "logs" / "data.log")
    stats = json.loads((run / "data" / "card" / "stats.json").read_text())
    return {"data_dir": str(run / "data"), "card": str(run / "data" / "card" / "README.md"), "stats": _headline(stats)}


def stage_benchmark(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from medsage.data_gen.phantom import write_phantom_benchmark

    path = write_phantom_benchmark(run / "benchmark", cfg.benchmark["items"], cfg.benchmark.seed)
    return {"benchmark": str(path), "items": cfg.benchmark["items"]}


def stage_align(cfg: DictConfig, run: Path) -> dict[str, Any]:
    """Stands in for the visual pretraining the paper's Qwen2.5-VL already has: the tiny model's vision
    tower is random, so it first learns to read the phantom from the SFT set's questions answered directly."""
    dataset_dir = _write_answer_set(run / "data" / "sft" / "sage_sft.json", run / "align_data")
    return _llamafactory_train(cfg.align, cfg.seed, run, "align", run / "base_model", "sage_answers", dataset_dir)


def stage_sft(cfg: DictConfig, run: Path) -> dict[str, Any]:
    return _llamafactory_train(cfg.sft, cfg.seed, run, "sft", run / "align_model", "sage_sft", run / "data" / "sft")


def _write_answer_set(sft_json: Path, out_dir: Path) -> Path:
    """The SFT set's questions, each once, with the ANSWER stage alone as the reply (LLaMA-Factory format)."""
    from medsage.data_gen.prompts import LVKC_FORMAT
    from medsage.reward_fns.scaffold import parse

    rows = {}
    for row in json.loads(sft_json.read_text()):
        question = row["messages"][0]["content"].removesuffix("\n" + LVKC_FORMAT)
        answer = parse(row["messages"][1]["content"]).get("ANSWER")
        if answer:
            rows.setdefault((question, *row["images"]), {
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                "images": row["images"]})
    out_dir.mkdir(parents=True, exist_ok=True)
    images = out_dir / "images"
    if not images.exists():
        images.symlink_to((sft_json.parent / "images").resolve(), target_is_directory=True)
    (out_dir / "sage_answers.json").write_text(json.dumps(list(rows.values()), indent=1))
    info = json.loads((sft_json.parent / "dataset_info.json").read_text())
    (out_dir / "dataset_info.json").write_text(json.dumps({"sage_answers": {**info["sage_sft"], "file_name": "sage_answers.json"}}, indent=2))
    return out_dir


def _llamafactory_train(section: DictConfig, seed: int, run: Path, name: str, model: Path, dataset: str, dataset_dir: Path) -> dict[str, Any]:
    """``llamafactory-cli train`` with the recipe section's own keys plus paths filled in here."""
    out = run / f"{name}_model"
    args = {
        **OmegaConf.to_container(section),
        "model_name_or_path": str(model),
        "stage": "sft",
        "do_train": True,
        "dataset": dataset,
        "dataset_dir": str(dataset_dir),
        "output_dir": str(out),
        "overwrite_output_dir": True,
        "save_strategy": "no",
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "seed": seed,
    }
    recipe = run / f"{name}_recipe.yaml"
    recipe.write_text(yaml.safe_dump(args, sort_keys=False))
    progress = lambda: _train_progress(out / "trainer_log.jsonl", section.max_steps)  # noqa: E731
    cli = str(Path(sys.executable).parent / "llamafactory-cli")
    _call([cli, "train", str(recipe)], run / "logs" / f"{name}.log", {"CUDA_VISIBLE_DEVICES": ""}, progress)
    losses = _losses(out / "trainer_log.jsonl")
    _plot_loss(losses, run / "report" / f"{name}_loss.png")
    return {f"{name}_model": str(out), "recipe": str(recipe), "steps": losses[-1][0], "first_loss": losses[0][1], "final_loss": losses[-1][1]}


def stage_rl(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from medsage.plugins.verl.local_rollout import compose_config, run_local_rollouts

    config = compose_config(run / "sft_model", REPO, list(cfg.rl.overrides))
    result = run_local_rollouts(
        config,
        run / "data" / "rl" / "train.parquet",
        prompts=cfg.rl.prompts,
        sessions_per_prompt=cfg.rl.sessions_per_prompt,
        temperature=cfg.rl.temperature,
    )
    sessions = run / "rl" / "sessions.jsonl"
    sessions.parent.mkdir(parents=True, exist_ok=True)
    sessions.write_text("".join(json.dumps(asdict(s)) + "\n" for s in result.sessions))
    return {"sessions": str(sessions), "metrics": result.metrics}


def stage_eval(model_dir: str, label: str) -> Callable[[DictConfig, Path], dict[str, Any]]:
    def run_eval(cfg: DictConfig, run: Path) -> dict[str, Any]:
        from medsage.eval.config import config_from_dict
        from medsage.eval.evaluate import run_evaluation

        out = run / f"eval_{model_dir}"
        recipe = {
            "model": {"backend": "hf", "path": str(run / model_dir), "label": label, "device": "cpu",
                      "batch_size": cfg.eval.batch_size},
            "benchmarks": [{"name": "phantom", "path": str(run / "benchmark")}],
            "output_dir": str(out),
            "max_new_tokens": cfg.eval.max_new_tokens,
            "bootstrap_resamples": cfg.eval.bootstrap_resamples,
        }
        result = run_evaluation(config_from_dict(recipe, "quickstart eval"))
        return {"reports": str(out), **_eval_headline(result.summaries, out / "predictions" / "phantom.jsonl")}

    return run_eval


def stage_report(cfg: DictConfig, run: Path) -> dict[str, Any]:
    done = {name: _read_marker(run, name) for name in STAGES if name != "report"}
    report = run / "report" / "README.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    _plot_learning(done["eval_base"], done["eval_sft"], run / "report" / "learning_signal.png")
    report.write_text(_report_markdown(cfg, done, run))
    return {"report": str(report)}


# ------------------------------------------------------------------------------------- helpers


def _call(cmd: list[str], log_file: Path, env: dict[str, str] | None = None, progress: Callable[[], str] | None = None) -> None:
    """Run one framework command, its output in ``log_file``; a progress line every few seconds."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO)
        while proc.poll() is None:
            time.sleep(10)
            if progress is not None:
                print(f"    {progress()}", flush=True)
    if proc.returncode != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}; log {log_file}:\n{tail}")


def _losses(trainer_log: Path) -> list[tuple[int, float]]:
    if not trainer_log.exists():
        return []
    rows = [json.loads(line) for line in trainer_log.read_text().splitlines() if line.strip()]
    return [(r["current_steps"], r["loss"]) for r in rows if "loss" in r]


def _train_progress(trainer_log: Path, max_steps: int) -> str:
    losses = _losses(trainer_log)
    return f"step {losses[-1][0]}/{max_steps}, loss {losses[-1][1]:.3f}" if losses else "loading model and data"


def _headline(stats: dict[str, Any]) -> dict[str, Any]:
    keep = ("accepted", "rejection_reasons", "outputs", "by_task", "by_source")
    return {k: stats[k] for k in keep if k in stats}


def _eval_headline(summaries: list, predictions: Path) -> dict[str, Any]:
    """Accuracy with its interval, overall and on balanced yes/no, and the valid-scaffold rate."""
    from medsage.reward_fns.scaffold import parse

    overall = next(s for s in summaries if s.by == "all")
    yes_no = next((s for s in summaries if s.by == "answer_kind" and s.key == "yes_no"), None)
    responses = [json.loads(line)["responses"][-1] for line in predictions.read_text().splitlines() if line.strip()]
    return {
        "n": overall.n,
        "accuracy": asdict(overall.accuracy),
        "yes_no_n": yes_no.n if yes_no else 0,
        "yes_no_accuracy": asdict(yes_no.accuracy) if yes_no else None,
        "open_accuracy": overall.open_accuracy,
        "parse_failure_rate": overall.parse_failure_rate,
        "valid_scaffold_rate": sum(parse(r).valid for r in responses) / max(len(responses), 1),
        "example_response": responses[0] if responses else "",
    }


def _plot_loss(losses: list[tuple[int, float]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([s for s, _ in losses], [v for _, v in losses], marker=".")
    ax.set(xlabel="step", ylabel="training loss", title="SFT (llamafactory-cli, CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_learning(base: dict[str, Any], sft: dict[str, Any], path: Path) -> None:
    names = ("valid scaffold", "yes/no accuracy", "overall accuracy")
    value = lambda d: (d["valid_scaffold_rate"], (d["yes_no_accuracy"] or {}).get("value", 0.0), d["accuracy"]["value"])  # noqa: E731
    fig, ax = plt.subplots(figsize=(6, 3))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], value(base), width=0.4, label="base (untrained)")
    ax.bar([x + 0.2 for x in xs], value(sft), width=0.4, label="after SFT")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="yes/no chance")
    ax.set_xticks(list(xs), names)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _pct(estimate: dict[str, float] | None) -> str:
    if not estimate:
        return "n/a"
    return f"{100 * estimate['value']:.1f}% [{100 * estimate['low']:.1f}, {100 * estimate['high']:.1f}]"


def _report_markdown(cfg: DictConfig, done: dict[str, dict[str, Any]], run: Path) -> str:
    base, sft, rl = done["eval_base"], done["eval_sft"], done["rl"]
    goals = cfg.goals
    met = lambda ok: "met" if ok else "not met"  # noqa: E731
    yn = (sft["yes_no_accuracy"] or {}).get("value", 0.0)
    rel = lambda p: Path(p).resolve().relative_to(run.resolve()).as_posix()  # noqa: E731
    lines = [
        "# MEDSAGE quickstart report",
        "",
        "Every stage ran on this machine's CPU with a tiny Qwen2.5-VL (random initial weights) on the",
        "embedded phantom data. Numbers show that the pipeline works and learns; they say nothing about",
        "the paper's 7B results.",
        "",
        "## Stages",
        "| stage | seconds | outputs |",
        "| --- | --- | --- |",
        *(f"| {n} | {done[n]['seconds']:.0f} | {', '.join(f'`{rel(v)}`' for k, v in done[n].items() if isinstance(v, str) and k != 'example_response' and Path(v).exists())} |" for n in done),
        "",
        "## Data (paper 3.1, A.3): stage text by the offline rule-based generator",
        f"Data card: [`{rel(done['data']['card'])}`](../{rel(done['data']['card'])}). Headline: `{json.dumps(done['data']['stats'].get('outputs', {}))}`",
        "",
        "## Visual alignment through llamafactory-cli (quickstart only)",
        "The paper starts from a pretrained Qwen2.5-VL; the tiny model's vision tower is random. This stage",
        "stands in for that pretraining: every parameter trains on the SFT set's questions answered directly.",
        f"{done['align']['steps']} steps; logged loss {done['align']['first_loss']:.3f} -> {done['align']['final_loss']:.3f}.",
        "",
        "![](align_loss.png)",
        "",
        "## SFT (paper 3.2) through llamafactory-cli, vision tower frozen as in the paper",
        f"{done['sft']['steps']} steps; logged loss {done['sft']['first_loss']:.3f} -> {done['sft']['final_loss']:.3f}.",
        "",
        "![](sft_loss.png)",
        "",
        "## Self-check rollouts (paper 3.3) with the SFT model",
        f"{cfg.rl.prompts} RL prompts x {cfg.rl.sessions_per_prompt} sessions through the R-GRPO agent loop;"
        " rewards, r_sc and the masked advantage as the trainer would use them.",
        "",
        "| metric | value |",
        "| --- | --- |",
        *(f"| {k} | {v:.3f} |" for k, v in rl["metrics"].items()),
        "",
        "## Evaluation on held-out phantom patients (shared matcher)",
        f"| model | valid scaffold | yes/no accuracy (n={sft['yes_no_n']}, 95% CI) | overall accuracy | open accuracy | parse failures |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {name} | {_rate(d['valid_scaffold_rate'])} | {_pct(d['yes_no_accuracy'])} | {_pct(d['accuracy'])} |"
            f" {_rate(d['open_accuracy'])} | {_rate(d['parse_failure_rate'])} |"
            for name, d in (("base (untrained)", base), ("after SFT", sft))
        ),
        "| chance | | 50.0% | | | |",
        "",
        "![](learning_signal.png)",
        "",
        "## Learning signal against the goals",
        f"- valid scaffold after SFT {100 * sft['valid_scaffold_rate']:.1f}% (goal {100 * goals.valid_scaffold:.0f}%): "
        f"{met(sft['valid_scaffold_rate'] >= goals.valid_scaffold)}",
        f"- balanced yes/no accuracy after SFT {100 * yn:.1f}% (goal {100 * goals.yes_no_accuracy:.0f}%, chance 50%): "
        f"{met(yn >= goals.yes_no_accuracy)}",
        "",
        "One response of the SFT model:",
        "",
        "```",
        sft["example_response"][:1500],
        "```",
        "",
    ]
    return "\n".join(lines)


def _marker(run: Path, name: str) -> Path:
    return run / "stages" / f"{name}.json"


def _read_marker(run: Path, name: str) -> dict[str, Any]:
    path = _marker(run, name)
    if not path.exists():
        raise RuntimeError(f"stage '{name}' has not finished ({path} missing); run it first")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------ pipeline

RUNNERS: dict[str, Callable[[DictConfig, Path], dict[str, Any]]] = {
    "model": stage_model,
    "data": stage_data,
    "benchmark": stage_benchmark,
    "align": stage_align,
    "sft": stage_sft,
    "rl": stage_rl,
    "eval_base": stage_eval("base_model", "tiny Qwen2.5-VL, untrained"),
    "eval_sft": stage_eval("sft_model", "tiny Qwen2.5-VL after SFT"),
    "report": stage_report,
}


# What a redone stage clears first; an interrupted stage (no marker yet) keeps its partial work.
STAGE_OUTPUTS = {"rl": "rl", "eval_base": "eval_base_model", "eval_sft": "eval_sft_model"}


def load_config(path: Path, overrides: list[str]) -> DictConfig:
    """The recipe with ``key=value`` overrides; an unknown key is an error, not a silent no-op."""
    cfg = OmegaConf.load(path)
    OmegaConf.set_struct(cfg, True)
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    except Exception as err:  # omegaconf raises several types for a bad key or value
        raise SystemExit(f"{path}: bad --set override: {err}") from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--from", dest="start", choices=STAGES, help="redo this stage and every later one")
    which.add_argument("--only", choices=STAGES, help="run (or redo) this stage alone; later stages keep their results")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    run = (REPO / cfg.run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    # Each run keeps its own datasets cache: the phantom data is deterministic, so two runs at once
    # would otherwise write the same cache entries (LLaMA-Factory's and verl's loaders both use it).
    os.environ["HF_DATASETS_CACHE"] = str(run / "cache" / "datasets")
    chosen = [args.only] if args.only else STAGES[STAGES.index(args.start):] if args.start else STAGES
    for name in chosen:
        marker = _marker(run, name)
        if marker.exists() and not (args.only or args.start):
            log(name, f"done earlier, skipped ({marker})")
            continue
        if marker.exists() and name in STAGE_OUTPUTS:
            shutil.rmtree(run / STAGE_OUTPUTS[name], ignore_errors=True)
        log(name, "running")
        start = time.time()
        summary = {**RUNNERS[name](cfg, run), "seconds": time.time() - start}
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(summary, indent=1))
        log(name, f"finished in {summary['seconds']:.0f} s")
    log("report", f"{run / 'report' / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
