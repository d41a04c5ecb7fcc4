"""One evaluation run: load benchmarks, predict (resumable), judge (cached), score, report.

Output folder layout::

    predictions/<benchmark>.jsonl   model turns per question, appended chunk by chunk
    judge_cache.sqlite              every judge reply, keyed by request (a rerun pays nothing)
    scored/<benchmark>.jsonl        per-question verdicts (rewritten each run from the above)
    summary.json                    every GroupSummary (+ Table 2 means when judged)
    table1.md/.csv, breakdown.md/.csv, table1.png, table2.md/.csv

Everything after prediction is recomputed from the prediction files and the judge cache, so an
interrupted and resumed run writes the same report as an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from medsage.config import ConfigError, missing_model
from medsage.data_gen.llm_client import LLMConfig

from .backends import Backend, GenerationParams, HFBackend, OpenAIBackend, VLLMBackend, VLLMOptions
from .benchmarks import Item, load_benchmarks
from .config import EvalConfig, JudgeSpec, ModelSpec
from .judge import judge_open_answers, judge_reasoning
from .predictions import PredictionStore, PredictSetup, checkpoint_fingerprint, predict
from .published import TABLE2_DIMENSIONS
from .report import ReportFiles, write_reports
from .scoring import GroupSummary, ScoredItem, score_item, summarize, summarize_group


@dataclass(frozen=True)
class EvalResult:
    summaries: list[GroupSummary]
    reasoning: dict[str, dict[str, float]]
    first_attempt_accuracy: dict[str, float]  # per benchmark, only with self-check on
    files: ReportFiles


def build_backend(spec: ModelSpec) -> Backend:
    """The inference engine a recipe's ``model`` section names."""
    if spec.backend == "hf":
        return HFBackend(spec.path, batch_size=spec.batch_size, device=spec.device, dtype=spec.dtype)
    if spec.backend == "openai":
        return OpenAIBackend(
            LLMConfig(base_url=spec.base_url or "", model=spec.path, api_key_env=spec.api_key_env,
                      concurrency=spec.concurrency, timeout_s=spec.timeout_s)
        )
    return VLLMBackend(
        VLLMOptions(
            spec.path, spec.tensor_parallel_size, spec.data_parallel_size, spec.gpu_memory_utilization, spec.max_model_len
        )
    )


def predict_setup(config: EvalConfig) -> PredictSetup:
    """What decides the predictions; with ``self_check: always`` it carries R-GRPO's rendered instructions."""
    params = GenerationParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature)
    turns: tuple[str, ...] = ()
    if config.self_check == "always":
        from medsage.plugins.verl.settings import render_instruction

        turns = (render_instruction(config.self_check_template), render_instruction(config.retry_template))
    checkpoint = checkpoint_fingerprint(config.model.path) if config.model.backend != "openai" else ""
    return PredictSetup(config.model.path, config.model.backend, config.prompt_style, params, turns, checkpoint)


def _judge_config(spec: JudgeSpec, out_dir: Path) -> LLMConfig:
    return replace(spec.endpoint, cache_path=out_dir / "judge_cache.sqlite")


def _reasoning_means(spec: JudgeSpec, config: EvalConfig, items: list[Item], responses: list[str]) -> dict[str, float]:
    n = len(items) if spec.limit is None else spec.limit
    scores = judge_reasoning(_judge_config(spec, config.output_dir), items[:n], responses[:n], spec.with_image)
    return {d: sum(getattr(s, d) for s in scores.values()) / len(scores) for d in TABLE2_DIMENSIONS} if scores else {}


def _write_scored(path: Path, scored: list[ScoredItem]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(s)) + "\n" for s in scored), encoding="utf-8")


@dataclass(frozen=True)
class BenchmarkOutcome:
    """One benchmark's per-item scores; Table 2 means ({} without a reasoning judge); and, with
    self-check on, the first attempt's accuracy (by the matcher) to set against the final one."""

    scored: list[ScoredItem]
    reasoning: dict[str, float]
    first_attempt_accuracy: float | None


def evaluate_benchmark(config: EvalConfig, items: list[Item], backend: Backend, setup: PredictSetup) -> BenchmarkOutcome:
    """Predict, judge and score one benchmark."""
    name = items[0].benchmark
    store = PredictionStore(config.output_dir / "predictions" / f"{name}.jsonl", setup.run_key)
    predictions = predict(items, backend, setup, store, config.chunk_size)
    responses = [p.final for p in predictions]
    verdicts: Mapping[str, bool] = {}
    if config.open_judge is not None:
        verdicts = judge_open_answers(_judge_config(config.open_judge, config.output_dir), items, responses, config.prompt_style)
    scored = [score_item(i, r, config.prompt_style, verdicts.get(i.id)) for i, r in zip(items, responses)]
    _write_scored(config.output_dir / "scored" / f"{name}.jsonl", scored)
    reasoning = _reasoning_means(config.reasoning_judge, config, items, responses) if config.reasoning_judge else {}
    first = None
    if setup.self_check_turns:
        first_scored = [score_item(i, p.first, config.prompt_style) for i, p in zip(items, predictions)]
        first = summarize_group(first_scored, name, n_resamples=1).accuracy.value  # per question, as the final one
    return BenchmarkOutcome(scored, reasoning, first)


def run_evaluation(config: EvalConfig, backend: Backend | None = None) -> EvalResult:
    """The whole run of a recipe; ``backend`` replaces the recipe's engine (tests, notebooks). An
    engine built here is closed here; one passed in stays open for its owner. Nothing is written before the
    benchmarks and the model are found: a recipe error leaves no output folder behind."""
    for b in config.benchmarks:
        if int(b.options.get("samples", 1)) > 1 and not config.temperature:
            raise ValueError(f"benchmark {b.name}: options.samples > 1 needs sampled decoding (temperature > 0)")
    benchmarks = load_benchmarks(config.benchmarks)
    missing = missing_model("model.path", config.model.path) if backend is None and config.model.backend != "openai" else []
    if missing:
        raise ConfigError(missing[0])
    config.output_dir.mkdir(parents=True, exist_ok=True)
    setup = predict_setup(config)
    owned = backend is None
    backend = backend or build_backend(config.model)
    scored: list[ScoredItem] = []
    reasoning: dict[str, dict[str, float]] = {}
    first_attempt: dict[str, float] = {}
    try:
        for items in benchmarks:
            if not items:
                continue
            outcome = evaluate_benchmark(config, items, backend, setup)
            scored += outcome.scored
            if outcome.reasoning:
                reasoning[items[0].benchmark] = outcome.reasoning
            if outcome.first_attempt_accuracy is not None:
                first_attempt[items[0].benchmark] = outcome.first_attempt_accuracy
    finally:
        if owned:
            backend.close()
    summaries = summarize(scored, config.bootstrap_resamples, config.seed)
    summary = {
        "run_key": setup.run_key,
        # what was asked and how answers were read: enough to show each prediction beside its question
        "label": config.model.label,
        "prompt_style": config.prompt_style,
        "benchmarks": [asdict(b) for b in config.benchmarks],
        "summaries": [asdict(s) for s in summaries],
        "reasoning": reasoning,
        "first_attempt_accuracy": first_attempt,
        # answers not read from where the prompt style asks for them (no <ANSWER> stage), per benchmark
        "fallback_answers": {s.benchmark: {"n": s.fallback_n, "of": s.n} for s in summaries if s.by == "all"},
    }
    (config.output_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    files = write_reports(summaries, config.model.label, config.output_dir, reasoning)
    return EvalResult(summaries, reasoning, first_attempt, files)
