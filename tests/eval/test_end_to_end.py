"""End to end on the phantom benchmark with the tiny Qwen2.5-VL through the HF backend; a run
interrupted mid-way and resumed writes the same report as an uninterrupted one."""

import json
from pathlib import Path

import pytest

from medsage.data_gen.phantom import write_phantom_benchmark
from medsage.eval.backends import GenerationParams, HFBackend
from medsage.eval.config import BenchmarkSpec, EvalConfig, ModelSpec
from medsage.eval.evaluate import predict_setup, run_evaluation
from medsage.eval.predictions import PredictionStore, PredictSetup, generate_chunk
from medsage.eval.benchmarks import load_benchmark

N_ITEMS = 6
REPORT_FILES = ("table1.md", "table1.csv", "breakdown.md", "breakdown.csv", "summary.json")


class Crash(RuntimeError):
    pass


class CrashAfter:
    """Wraps a real backend and dies on its (calls+1)-th generate call, as a killed job would."""

    def __init__(self, backend, calls: int):
        self.backend, self.calls_left = backend, calls

    def generate(self, conversations, params):
        if self.calls_left == 0:
            raise Crash("killed")
        self.calls_left -= 1
        return self.backend.generate(conversations, params)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory) -> Path:
    return write_phantom_benchmark(tmp_path_factory.mktemp("phantom"), n=N_ITEMS, seed=0)


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return HFBackend(tiny_model_dir, batch_size=3)


def _config(phantom_dir: Path, out: Path, model: Path, **overrides) -> EvalConfig:
    fields = dict(max_new_tokens=12, chunk_size=2, bootstrap_resamples=200) | overrides
    return EvalConfig(
        model=ModelSpec(path=str(model), label="tiny"),
        benchmarks=(BenchmarkSpec("phantom", str(phantom_dir)),),
        output_dir=out,
        **fields,
    )


def _reports(out: Path) -> dict[str, str]:
    return {name: (out / name).read_text() for name in REPORT_FILES}


def test_phantom_end_to_end_interrupted_and_resumed_gives_the_same_report(phantom_dir, tiny_model_dir, backend, tmp_path):
    straight = run_evaluation(_config(phantom_dir, tmp_path / "straight", tiny_model_dir), backend)
    overall = next(s for s in straight.summaries if s.by == "all")
    assert overall.benchmark == "phantom" and overall.n == N_ITEMS
    assert overall.closed_n == 4 and overall.open_n == 2  # phantom: two thirds closed yes/no
    assert 0.0 <= overall.accuracy.value <= 1.0 and 0.0 <= overall.parse_failure_rate <= 1.0
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["fallback_answers"] == {"phantom": {"n": overall.fallback_n, "of": N_ITEMS}}
    assert straight.files.chart_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table1 = straight.files.table1_md.read_text()
    assert "Phantom" in table1 and "published, not re-measured" in table1 and "70.4" in table1

    config = _config(phantom_dir, tmp_path / "resumed", tiny_model_dir)
    with pytest.raises(Crash):
        run_evaluation(config, CrashAfter(backend, calls=1))  # chunk 1 written, chunk 2 lost
    written = (config.output_dir / "predictions" / "phantom.jsonl").read_text().splitlines()
    assert len(written) == 2
    with (config.output_dir / "predictions" / "phantom.jsonl").open("a") as f:
        f.write('{"id": "phantom-9", "bench')  # the torn line of a write the kill interrupted
    resumed_backend = CrashAfter(backend, calls=2)  # exactly the two missing chunks may run
    run_evaluation(config, resumed_backend)
    assert resumed_backend.calls_left == 0
    assert _reports(config.output_dir) == _reports(tmp_path / "straight")

    records = [json.loads(line) for line in (config.output_dir / "predictions" / "phantom.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [f"phantom-{i}" for i in range(N_ITEMS)]


def test_resuming_under_another_setup_is_refused(phantom_dir, tiny_model_dir, backend, tmp_path):
    run_evaluation(_config(phantom_dir, tmp_path, tiny_model_dir), backend)
    other = _config(phantom_dir, tmp_path, tiny_model_dir, max_new_tokens=13)
    with pytest.raises(ValueError, match="made by another setup"):
        run_evaluation(other, backend)


def test_new_weights_in_the_same_folder_are_another_setup(phantom_dir, tiny_model_dir, backend, tmp_path):
    """Retraining into the same checkpoint folder must not resume the old weights' predictions."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    run_evaluation(_config(phantom_dir, tmp_path / "out", model), backend)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same folder, rewritten weights (as a new SFT run leaves them)
    with pytest.raises(ValueError, match="made by another setup"):
        run_evaluation(_config(phantom_dir, tmp_path / "out", model), backend)


def test_self_check_always_feeds_each_turn_back_with_the_image(phantom_dir, backend):
    items = load_benchmark("phantom", phantom_dir, limit=2)
    seen = []

    class Recording:
        def generate(self, conversations, params):
            seen.append([list(c) for c in conversations])
            return backend.generate(conversations, params)

    setup = PredictSetup("tiny", "hf", params=GenerationParams(max_new_tokens=6), self_check_turns=("Review: <CHECK>", "Retry."))
    preds = generate_chunk(items, Recording(), setup)
    assert [len(p.responses) for p in preds] == [3, 3]
    assert [t.role for t in seen[2][0]] == ["user", "assistant", "user", "assistant", "user"]
    last = seen[2][0]
    assert last[1].text == preds[0].responses[0] and last[3].text == preds[0].responses[1]
    assert last[2].text == "Review: <CHECK>" and last[4].text == "Retry." and last[0].images == items[0].images


def test_self_check_always_uses_the_rgrpo_instruction_templates(phantom_dir, tiny_model_dir, tmp_path):
    templates = Path(__file__).resolve().parents[2] / "plugins" / "verl" / "templates"
    config = _config(phantom_dir, tmp_path, tiny_model_dir, self_check="always",
                     self_check_template=str(templates / "self_check.jinja"), retry_template=str(templates / "retry.jinja"))
    check, retry = predict_setup(config).self_check_turns
    assert "<CHECK><GROUNDING>" in check and "<ANSWER>" in retry
    assert predict_setup(config).run_key != predict_setup(_config(phantom_dir, tmp_path, tiny_model_dir)).run_key


def test_batched_generation_equals_per_sample_generation(phantom_dir, backend):
    items = load_benchmark("phantom", phantom_dir, limit=3)
    setup = PredictSetup("tiny", "hf", params=GenerationParams(max_new_tokens=8))
    batched = generate_chunk(items, backend, setup)
    single = [generate_chunk([item], backend, setup)[0] for item in items]
    assert [p.responses for p in batched] == [p.responses for p in single]


def test_torn_line_elsewhere_than_the_end_is_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a"\n{"id": "b", "benchmark": "x", "run_key": "k", "responses": ["r"]}\n')
    with pytest.raises(ValueError, match=r"p\.jsonl, line 1: not a prediction record"):
        PredictionStore(path, "k").load()
