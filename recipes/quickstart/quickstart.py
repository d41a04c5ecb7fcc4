"""The MEDSAGE quickstart: every stage of the method on the embedded phantom data, on a CPU.

    python recipes/quickstart/quickstart.py recipes/quickstart/quickstart.yaml [a.b=value ...]
        [--from STAGE | --only STAGE]

Each stage calls the same entry points a cluster user calls (the tiny-model builder,
``medsage-data build``, ``llamafactory-cli train``, ``medsage-rgrpo`` (verl's own trainer loop on
the CPU backend), the evaluation suite) and records what it produced in ``run_dir/stages/<stage>.json``; a finished stage is
skipped on the next run, so a killed quickstart resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from medsage.config import bounded, build, load, parse, recipe_parser, run as run_command  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROG = "quickstart"
STAGES = ("model", "data", "benchmark", "align", "sft", "rl", "eval_base", "eval_sft", "eval_rl", "report")


# --------------------------------------------------------------------------------------- recipe


@dataclass(frozen=True)
class DataSection:
    recipe: str  # a data recipe (recipes/data/), relative to the repository; its output_dir is set here


@dataclass(frozen=True)
class BenchmarkSection:
    items: int = bounded(240, ge=1)
    seed: int = 0


@dataclass(frozen=True)
class TrainSection:
    """A ``llamafactory-cli train`` stage: LLaMA-Factory's own keys, passed through; model, dataset and
    output paths are filled in by the quickstart. ``extra``: any other LLaMA-Factory key."""

    template: str
    finetuning_type: Literal["full", "freeze", "lora"]
    freeze_vision_tower: bool
    freeze_multi_modal_projector: bool
    cutoff_len: int = bounded(ge=1)
    image_max_pixels: int = bounded(ge=1)
    per_device_train_batch_size: int = bounded(ge=1)
    gradient_accumulation_steps: int = bounded(ge=1)
    learning_rate: float = bounded(gt=0)
    max_steps: int = bounded(ge=1)
    logging_steps: int = bounded(ge=1)
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = bounded(0.0, ge=0, le=1)
    extra: dict[str, Any] = field(default_factory=dict)

    def arguments(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}, **self.extra}


@dataclass(frozen=True)
class RLSection:
    recipe: str  # a recipe of recipes/rl/ (its name)
    steps: int = bounded(ge=1)
    overrides: tuple[str, ...] = ()  # hydra overrides of that recipe


@dataclass(frozen=True)
class EvalSection:
    max_new_tokens: int = bounded(400, ge=1)
    batch_size: int = bounded(16, ge=1)
    bootstrap_resamples: int = bounded(1000, ge=1)


@dataclass(frozen=True)
class GoalSection:
    valid_scaffold: float = bounded(0.95, ge=0, le=1)
    yes_no_accuracy: float = bounded(0.8, ge=0, le=1)


@dataclass(frozen=True)
class QuickstartConfig:
    """recipes/quickstart/quickstart.yaml, read by the one recipe loader (medsage.config)."""

    run_dir: str
    data: DataSection
    align: TrainSection
    sft: TrainSection
    rl: RLSection
    seed: int = 0
    model: dict[str, int] = field(default_factory=dict)  # medsage.plugins.tiny_model.TinySizes keys
    benchmark: BenchmarkSection = field(default_factory=BenchmarkSection)
    eval: EvalSection = field(default_factory=EvalSection)
    goals: GoalSection = field(default_factory=GoalSection)

    def __post_init__(self) -> None:
        from medsage.plugins.tiny_model import TinySizes  # torch: imported once the command line is read

        valid = [f.name for f in fields(TinySizes)]
        unknown = [k for k in self.model if k not in valid]
        if unknown:
            raise ValueError(f"model.{unknown[0]}: unknown key; valid keys here: {', '.join(valid)}")


def log(stage: str, message: str) -> None:
    print(f"[quickstart:{stage}] {message}", flush=True)


# --------------------------------------------------------------------------------------- stages


def stage_model(cfg: QuickstartConfig, run: Path) -> dict[str, Any]:
    from medsage.plugins.tiny_model import TinySizes, build_tiny_qwen2_5_vl

    path = build_tiny_qwen2_5_vl(run / "base_model", seed=cfg.seed, sizes=TinySizes(**cfg.model))
    return {"base_model": str(path)}


def stage_data(cfg: QuickstartConfig, run: Path) -> dict[str, Any]:
    command = ["build", str(REPO / cfg.data.recipe), f"output_dir={run / 'data'}", "--no-progress"]
    _call([str(Path(sys.executable).parent / "medsage-data"), *command], run / "logs" / "data.log")
    stats = json.loads((run / "data" / "card" / "stats.json").read_text())
    return {"data_dir": str(run / "data"), "card": str(run / "data" / "card" / "README.md"), "stats": _headline(stats)}


def stage_benchmark(cfg: QuickstartConfig, run: Path) -> dict[str, Any]:
    from medsage.data_gen.phantom import write_phantom_benchmark

    path = write_phantom_benchmark(run / "benchmark", cfg.benchmark.items, cfg.benchmark.seed)
    return {"benchmark": str(path), "items": cfg.benchmark.items}


def stage_align(cfg: QuickstartConfig, run: Path) -> dict[str, Any]:
    """Stands in for the visual pretraining the paper's Qwen2.5-VL already has: the tiny model's vision
    tower is random, so it first learns to read the phantom from the SFT set's questions answered directly."""
    dataset_dir = _write_answer_set(run / "data" / "sft" / "sage_sft.json", run / "align_data")
    return _llamafactory_train(cfg.align, cfg.seed, run, "align", run / "base_model", "sage_answers", dataset_dir)


def stage_sft(cfg: QuickstartConfig, run: Path) -> dict[str, Any]:
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


def _llamafactory_train(section: TrainSection, seed: int, run: Path, name: str, model: Path, dataset: str, dataset_dir: Path) -> dict[str, Any]:
    """``llamafactory-cli train`` with the recipe section's own keys plus paths filled in here."""
    out = run / f"{name}_model"
    args = {
        **section.arguments(),
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


def stage_rl(cfg: QuickstartConfig, run: Path) -> dict[str, Any]:
    return train_rl(cfg, run, run / "rl", run / "rl_model", [])


def train_rl(cfg: QuickstartConfig, run: Path, out: Path, model_out: Path, arm: list[str]) -> dict[str, Any]:
    """R-GRPO from the SFT model: ``medsage-rgrpo`` (verl's own ``fit()`` on the CPU backend); the last
    checkpoint's Hugging Face export lands at ``model_out``.
    ``arm`` holds hydra overrides applied last (the ablation's switches)."""
    overrides = [
        f"actor_rollout_ref.model.path={run / 'sft_model'}",
        f"data.train_files={run / 'data' / 'rl' / 'train.parquet'}",
        f"data.val_files={run / 'data' / 'rl' / 'val.parquet'}",
        f"trainer.default_local_dir={out / 'checkpoints'}",
        f"hydra.run.dir={out / 'hydra'}",  # verl's hydra log beside the run, not in ./outputs/<date>/<time>
        f"trainer.total_training_steps={cfg.rl.steps}",
        f"trainer.save_freq={cfg.rl.steps}",
        "trainer.logger=[console,file]",
        f"medsage.sessions_dir={out / 'sessions'}",
        f"data.seed={cfg.seed}",
        *cfg.rl.overrides,
        *arm,
    ]
    cli = str(Path(sys.executable).parent / "medsage-rgrpo")
    command = [cli, f"--config-path={REPO / 'recipes' / 'rl'}", f"--config-name={cfg.rl.recipe}", *overrides]
    metrics_file = out / "metrics.jsonl"
    progress = lambda: _rl_progress(metrics_file, cfg.rl.steps)  # noqa: E731
    _call(command, out / "rl.log", {"VERL_FILE_LOGGER_PATH": str(metrics_file)}, progress)
    # verl's own Hugging Face export of the last checkpoint (recipe: checkpoint.save_contents has hf_model),
    # float32 as trained; verl's model merger would cast to bf16 and blur the SFT vs R-GRPO comparison.
    exported = out / "checkpoints" / f"global_step_{cfg.rl.steps}" / "actor" / "huggingface"
    shutil.copytree(exported, model_out, dirs_exist_ok=True)
    _declare_stored_dtype(model_out)
    steps = _rl_metrics(metrics_file)
    _plot_rl(steps, out / "rl_curves.png")
    return {"rl_model": str(model_out), "sessions": str(out / "sessions"), "metrics_file": str(metrics_file),
            "log": str(out / "rl.log"), "curves": str(out / "rl_curves.png"), "steps": len(steps), "metrics": steps}


def _declare_stored_dtype(model_dir: Path) -> None:
    """verl's export writes float32 weights under a config that says bfloat16 (the dtype its empty model
    was built with); loaded as the config says, the R-GRPO model would be evaluated in bfloat16 and
    the SFT model in float32. The config is made to say what the weights are."""
    from safetensors import safe_open

    with safe_open(str(next(model_dir.glob("*.safetensors"))), "pt") as weights:
        stored = str(weights.get_tensor(next(iter(weights.keys()))).dtype).removeprefix("torch.")

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: stored if k in ("dtype", "torch_dtype") and isinstance(v, str) else fix(v) for k, v in node.items()}
        return node

    config_file = model_dir / "config.json"
    config_file.write_text(json.dumps(fix(json.loads(config_file.read_text())), indent=2))


# Per-step curves of the report: what R-GRPO did at each step (verl's own metric names and medsage's).
RL_CURVES = {
    "reward": "critic/score/mean",
    "first-attempt accuracy": "medsage/first_accuracy",
    "final accuracy": "medsage/final_accuracy",
    "format reward": "medsage/reward/format/mean",
    "self-check rate": "medsage/self_check_rate",
    "correction rate r_sc": "medsage/correction_rate",
    "groups with advantage": "medsage/effective_group_rate",
}


def _rl_metrics(metrics_file: Path) -> list[dict[str, float]]:
    """verl's file logger: one JSON line per step, ``{"step": k, "data": {metric: value}}``."""
    if not metrics_file.exists():
        return []
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    return [{"step": r["step"], **{k: float(v) for k, v in r["data"].items() if isinstance(v, (int, float))}} for r in rows]


def _rl_progress(metrics_file: Path, steps: int) -> list[str]:
    return ["starting Ray, the actor, reference and rollout workers (under a minute on 2 cores)"] + [
        f"step {m['step']}/{steps}: reward {m.get('critic/score/mean', 0):.3f}, first-attempt accuracy "
        f"{m.get('medsage/first_accuracy', 0):.2f}, self-check rate {m.get('medsage/self_check_rate', 0):.2f}"
        for m in _rl_metrics(metrics_file)]


def _plot_rl(steps: list[dict[str, float]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, key in RL_CURVES.items():
        ax.plot([s["step"] for s in steps], [s.get(key, float("nan")) for s in steps], marker=".", label=label)
    ax.set(xlabel="R-GRPO step", ylabel="value (per step)", title="R-GRPO on CPU (verl fit)", ylim=(-0.05, 1.05))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def stage_eval(model_dir: str, label: str) -> Callable[[QuickstartConfig, Path], dict[str, Any]]:
    return lambda cfg, run: evaluate(cfg, run, run / model_dir, run / f"eval_{model_dir}", label)


def evaluate(cfg: QuickstartConfig, run: Path, model: Path, out: Path, label: str) -> dict[str, Any]:
    """The evaluation suite on the held-out phantom benchmark, and each item's verdict."""
    from medsage.eval.config import EvalConfig
    from medsage.eval.evaluate import run_evaluation

    recipe = {
        "model": {"backend": "hf", "path": str(model), "label": label, "device": "cpu", "batch_size": cfg.eval.batch_size},
        "benchmarks": [{"name": "phantom", "path": str(run / "benchmark")}],
        "output_dir": str(out),
        "max_new_tokens": cfg.eval.max_new_tokens,
        "bootstrap_resamples": cfg.eval.bootstrap_resamples,
    }
    result = run_evaluation(build(EvalConfig, recipe, "quickstart eval"))
    headline = _eval_headline(result.summaries, out / "predictions" / "phantom.jsonl")
    return {"reports": str(out), **headline, "correct": _item_correctness(run / "benchmark", out)}


# The evaluated models, in training order, as the report names them.
EVALUATED = {"eval_base": "base (untrained)", "eval_sft": "after SFT", "eval_rl": "after SFT + R-GRPO"}


def stage_report(cfg: QuickstartConfig, run: Path) -> dict[str, Any]:
    done = {name: _read_marker(run, name) for name in STAGES if name != "report"}
    report = run / "report" / "README.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    _plot_learning(
        {label: done[stage] for stage, label in EVALUATED.items()}, run / "report" / "learning_signal.png"
    )
    explorer = _explore(run)
    report.write_text(_report_markdown(cfg, done, run))
    return {"report": str(report), "explorer": str(explorer)}


def _explore(run: Path) -> Path:
    """``medsage-explore`` over the data, the RL sessions and the SFT and SFT + R-GRPO evaluations (side by side)."""
    from medsage.explore.cli import main as explore

    out = run / "report" / "explore"
    folders = [run / "data", run / "rl" / "sessions", run / "eval_sft_model", run / "eval_rl_model"]
    if explore([*map(str, folders), "--out", str(out)]) != 0:
        raise RuntimeError(f"medsage-explore could not show {', '.join(map(str, folders))}")
    return out / "index.html"


# ------------------------------------------------------------------------------------- helpers


def _call(cmd: list[str], log_file: Path, env: dict[str, str] | None = None,
          progress: Callable[[], list[str]] = list) -> None:
    """Run one framework command, its output in ``log_file``. ``progress`` lists the progress lines so far
    (one per logged step); each is printed once, including steps that finished between two polls."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    shown = 0
    with log_file.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO)
        while True:
            finished = proc.poll() is not None
            lines = progress()
            for line in lines[shown:]:
                print(f"    {line}", flush=True)
            shown = len(lines)
            if finished:
                break
            time.sleep(5)
    if proc.returncode != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}; log {log_file}:\n{tail}")


def _losses(trainer_log: Path) -> list[tuple[int, float]]:
    if not trainer_log.exists():
        return []
    rows = [json.loads(line) for line in trainer_log.read_text().splitlines() if line.strip()]
    return [(r["current_steps"], r["loss"]) for r in rows if "loss" in r]


def _train_progress(trainer_log: Path, max_steps: int) -> list[str]:
    return ["loading model and data"] + [f"step {step}/{max_steps}, loss {loss:.3f}" for step, loss in _losses(trainer_log)]


def _headline(stats: dict[str, Any]) -> dict[str, Any]:
    keep = ("accepted", "rejection_reasons", "outputs", "by_task", "by_source")
    return {k: stats[k] for k in keep if k in stats}


def _item_correctness(benchmark: Path, eval_dir: Path) -> dict[str, bool]:
    """Each item's verdict by the evaluation's own scorer, for paired comparisons between models."""
    from medsage.eval.benchmarks import load_benchmark
    from medsage.eval.scoring import score_item

    items = {item.id: item for item in load_benchmark("phantom", benchmark)}
    lines = (eval_dir / "predictions" / "phantom.jsonl").read_text().splitlines()
    finals = {row["id"]: row["responses"][-1] for row in map(json.loads, filter(None, lines))}
    return {i: score_item(items[i], response).correct for i, response in finals.items()}


def _paired_difference(before: dict[str, bool], after: dict[str, bool], resamples: int) -> dict[str, float]:
    """Accuracy of ``after`` minus ``before`` on the same items, with a bootstrap interval over items."""
    from medsage.eval.scoring import bootstrap_ci

    shared = sorted(set(before) & set(after))
    return asdict(bootstrap_ci([float(after[i]) - float(before[i]) for i in shared], resamples))


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


def _plot_learning(models: dict[str, dict[str, Any]], path: Path) -> None:
    names = ("valid scaffold", "yes/no accuracy", "overall accuracy")
    value = lambda d: (d["valid_scaffold_rate"], (d["yes_no_accuracy"] or {}).get("value", 0.0), d["accuracy"]["value"])  # noqa: E731
    fig, ax = plt.subplots(figsize=(6.5, 3))
    width = 0.8 / len(models)
    for k, (label, headline) in enumerate(models.items()):
        ax.bar([x - 0.4 + (k + 0.5) * width for x in range(len(names))], value(headline), width=width, label=label)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="yes/no chance")
    ax.set_xticks(list(range(len(names))), names)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _pct(estimate: dict[str, float] | None) -> str:
    if not estimate:
        return "n/a"
    return f"{100 * estimate['value']:.1f}% [{100 * estimate['low']:.1f}, {100 * estimate['high']:.1f}]"


def _report_markdown(cfg: QuickstartConfig, done: dict[str, dict[str, Any]], run: Path) -> str:
    sft, rl = done["eval_sft"], done["rl"]
    rl_change = _paired_difference(sft["correct"], done["eval_rl"]["correct"], cfg.eval.bootstrap_resamples)
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
        "Every sample, RL session and prediction (SFT and SFT + R-GRPO side by side), in the HTML explorer:"
        " [`explore/index.html`](explore/index.html).",
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
        *_rl_section(cfg, rl, run),
        "## Evaluation on held-out phantom patients (shared matcher)",
        f"| model | valid scaffold | yes/no accuracy (n={sft['yes_no_n']}, 95% CI) | overall accuracy (n={sft['n']}) | open accuracy | parse failures |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {EVALUATED[stage]} | {_rate(d['valid_scaffold_rate'])} | {_pct(d['yes_no_accuracy'])} | {_pct(d['accuracy'])} |"
            f" {_rate(d['open_accuracy'])} | {_rate(d['parse_failure_rate'])} |"
            for stage, d in ((stage, done[stage]) for stage in EVALUATED)
        ),
        "| chance | | 50.0% | | | |",
        "",
        f"**What R-GRPO did to accuracy:** {_rl_verdict(rl_change, rl)}",
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


def _rl_section(cfg: QuickstartConfig, rl: dict[str, Any], run: Path) -> list[str]:
    """Per-step table and curves, what limited the learning signal, and three example sessions."""
    from medsage.plugins.verl.sessions import RETRY, SELF_CHECK, read_sessions

    from medsage.reward_fns.scaffold import parse

    steps = rl["metrics"]
    records = read_sessions(rl["sessions"])
    retries = [s.text for r in records for s in r.spans if s.kind == RETRY]
    checks = [s.tokens for r in records for s in r.spans if s.kind == SELF_CHECK]
    valid_retries = sum(parse(text).valid for text in retries) / max(len(retries), 1)
    columns = {**RL_CURVES, "tau1 cut at its cap": "medsage/capped/tau1", "policy loss": "actor/pg_loss"}
    mean = lambda key: sum(s.get(key, 0.0) for s in steps) / max(len(steps), 1)  # noqa: E731
    return [
        "## R-GRPO (paper 3.3) with verl's own trainer loop on this CPU",
        f"`medsage-rgrpo` with `recipes/rl/{cfg.rl.recipe}.yaml` from the SFT model: {rl['steps']} steps of verl's"
        " `fit()` (self-check agent loop, R-GRPO advantage, FSDP2 actor and reference, KL loss, weight sync to the"
        " rollout server); the last checkpoint exported as a Hugging Face folder by verl's checkpoint manager."
        f" Sessions per step: `{Path(rl['sessions']).name}/`; every verl metric per step: `rl/metrics.jsonl`.",
        "",
        "| step | " + " | ".join(columns) + " |",
        "| --- | " + " | ".join("---" for _ in columns) + " |",
        *(f"| {s['step']} | " + " | ".join(f"{s.get(k, float('nan')):.3f}" for k in columns.values()) + " |" for s in steps),
        "",
        f"![]({os.path.relpath(rl['curves'], run / 'report')})",
        "",
        "**Where the learning signal went.** "
        f"{100 * mean('medsage/effective_group_rate'):.0f}% of prompt groups had sessions with different rewards"
        " (GRPO learns only from those: a group of equal rewards gets advantage 0);"
        f" the first attempt was wrong in {100 * mean('medsage/self_check_rate'):.0f}% of sessions, and"
        f" {100 * mean('medsage/correction_rate'):.0f}% of sessions were corrected by the retry (r_sc = 1);"
        f" {100 * mean('medsage/capped/tau1'):.0f}% of first attempts hit their token cap."
        f" Of {len(retries)} retries, {100 * valid_retries:.0f}% were a valid five-stage response (self-checks averaged"
        f" {sum(checks) / max(len(checks), 1):.0f} tokens). R-GRPO gives a rejected first attempt advantage 0 (eqs."
        " 10-12): a wrong first answer is only ever corrected through the retry, so a model that cannot yet write a"
        " self-check and a retry learns about its first answers only from the sessions that got them right.",
        "",
        "### Three sessions of the last step",
        "Spans as the update saw them, with the advantage per token each received (paper eqs. 10-12).",
        "",
        *(line for record in _example_sessions(records) for line in _session_lines(record)),
    ]


def _example_sessions(records: list) -> list:
    """A corrected retry, a retry that stayed wrong and an accepted first attempt, from the last step."""
    last = [r for r in records if r.step == max((r.step for r in records), default=0)]
    wanted = (lambda r: r.r_sc == 1.0, lambda r: r.stop_reason == "retried" and not r.final_correct,
              lambda r: r.stop_reason == "accepted")
    chosen: list = []
    for want in wanted:
        match = next((r for r in last if want(r) and r not in chosen), None)
        if match is not None:
            chosen.append(match)
    return chosen + [r for r in last if r not in chosen][: 3 - len(chosen)]


def _session_lines(record) -> list[str]:
    lines = [
        f"**{record.stop_reason}**: reference `{record.ground_truth}`, reward {record.reward:.2f}, r_sc {record.r_sc:.0f}."
        f" Question: {(record.question or '')[:300]}",
        "",
    ]
    for span in record.spans:
        lines += [f"- *{span.kind.replace('_', ' ')}* ({span.tokens} tokens, advantage {span.advantage:+.3f} per token)",
                  "", "  ```", *("  " + t for t in span.text[:700].splitlines()), "  ```", ""]
    return lines


def _rl_verdict(change: dict[str, float], rl: dict[str, Any]) -> str:
    """The paired change from SFT to SFT + R-GRPO, said as the interval allows."""
    points = f"{100 * change['value']:+.1f} points [{100 * change['low']:+.1f}, {100 * change['high']:+.1f}]"
    if change["low"] > 0:
        return f"accuracy rose by {points} (paired over the same items, 95% interval)."
    if change["high"] < 0:
        return f"accuracy fell by {points} (paired over the same items, 95% interval)."
    return (f"a change of {points} (paired over the same items, 95% interval), not distinguishable from no change"
            f" after {rl['steps']} steps; the table above shows how much signal each step carried.")


def _marker(run: Path, name: str) -> Path:
    return run / "stages" / f"{name}.json"


def _read_marker(run: Path, name: str) -> dict[str, Any]:
    path = _marker(run, name)
    if not path.exists():
        raise RuntimeError(f"stage '{name}' has not finished ({path} missing); run it first")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------ pipeline

RUNNERS: dict[str, Callable[[QuickstartConfig, Path], dict[str, Any]]] = {
    "model": stage_model,
    "data": stage_data,
    "benchmark": stage_benchmark,
    "align": stage_align,
    "sft": stage_sft,
    "rl": stage_rl,
    "eval_base": stage_eval("base_model", "tiny Qwen2.5-VL, untrained"),
    "eval_sft": stage_eval("sft_model", "tiny Qwen2.5-VL after SFT"),
    "eval_rl": stage_eval("rl_model", "tiny Qwen2.5-VL after SFT + R-GRPO"),
    "report": stage_report,
}


# What a redone stage clears first; an interrupted stage (no marker yet) keeps its partial work.
STAGE_OUTPUTS = {
    "rl": ("rl", "rl_model"),
    "eval_base": ("eval_base_model",),
    "eval_sft": ("eval_sft_model",),
    "eval_rl": ("eval_rl_model",),
}


def load_config(path: Path, overrides: list[str]) -> QuickstartConfig:
    """The recipe with ``a.b=value`` overrides, checked whole before any stage runs, with the data
    recipe it names (the data stage runs minutes after the first stage starts)."""
    from medsage.data_gen.config import load_config as load_data_recipe

    cfg = load(QuickstartConfig, path, overrides)
    load_data_recipe(REPO / cfg.data.recipe)
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(PROG, __doc__, "recipes/quickstart/quickstart.yaml")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--from", dest="start", choices=STAGES, help="redo this stage and every later one")
    which.add_argument("--only", choices=STAGES, help="run (or redo) this stage alone; later stages keep their results")
    args = parse(parser, argv)
    return run_command(PROG, lambda: _run(load_config(args.recipe, args.overrides), args.only, args.start))


def _run(cfg: QuickstartConfig, only: str | None, start: str | None) -> int:
    """Run the chosen stages; a finished stage (its marker exists) is skipped unless chosen by name."""
    run = (REPO / cfg.run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    # Each run keeps its own datasets cache: the phantom data is deterministic, so two runs at once
    # would otherwise write the same cache entries (LLaMA-Factory's and verl's loaders both use it).
    os.environ["HF_DATASETS_CACHE"] = str(run / "cache" / "datasets")
    chosen = [only] if only else STAGES[STAGES.index(start):] if start else STAGES
    for name in chosen:
        marker = _marker(run, name)
        if marker.exists() and not (only or start):
            log(name, f"done earlier, skipped ({marker})")
            continue
        if marker.exists() and name in STAGE_OUTPUTS:
            for output in STAGE_OUTPUTS[name]:
                shutil.rmtree(run / output, ignore_errors=True)
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
