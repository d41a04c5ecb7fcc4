"""The vLLM offline backend end to end through ``medsage-eval``, against a test double of vLLM
0.24.0's API (tests/eval/fake_vllm: the real signatures and message checks, generation by the tiny
Qwen2.5-VL through transformers on CPU), with data parallel 1 and 2. The GPU check with the real
vLLM is in recipes/eval/README.md."""

import json
import os
import sys
from pathlib import Path

import pytest

from medsage.data_gen.phantom import write_phantom_benchmark
from medsage.eval.backends import GenerationParams, HFBackend, VLLMBackend, VLLMOptions, rank_devices, to_openai_messages
from medsage.eval.benchmarks import load_benchmark
from medsage.eval.cli import main
from medsage.eval.prompts import Turn, first_turn

FAKE_VLLM = Path(__file__).resolve().parent / "fake_vllm"
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "eval" / "phantom_tiny.yaml"
N_ITEMS, MAX_NEW_TOKENS, CHUNK = 7, 8, 3


def _put_fake_vllm_on_path(mp: pytest.MonkeyPatch, log: Path) -> None:
    """This process imports the double from sys.path; spawned rank processes find it on PYTHONPATH."""
    mp.syspath_prepend(str(FAKE_VLLM))
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(FAKE_VLLM), os.environ.get("PYTHONPATH")) if p))
    mp.setenv("FAKE_VLLM_LOG", str(log))
    mp.delitem(sys.modules, "vllm", raising=False)


@pytest.fixture
def engine_log(tmp_path, monkeypatch):
    log = tmp_path / "engines.jsonl"
    _put_fake_vllm_on_path(monkeypatch, log)
    yield log
    sys.modules.pop("vllm", None)


def _events(log: Path, event: str) -> list[dict]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["event"] == event]


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory) -> Path:
    return write_phantom_benchmark(tmp_path_factory.mktemp("phantom"), n=N_ITEMS, seed=0)


@pytest.fixture(scope="module")
def per_item(phantom_dir, tiny_model_dir, tmp_path_factory) -> list[str]:
    """What the double answers for each phantom item asked alone (one conversation per chat call)."""
    with pytest.MonkeyPatch.context() as mp:
        _put_fake_vllm_on_path(mp, tmp_path_factory.mktemp("log") / "engines.jsonl")
        import vllm

        llm = vllm.LLM(str(tiny_model_dir))
        params = vllm.SamplingParams(temperature=0.0, max_tokens=MAX_NEW_TOKENS)
        items = load_benchmark("phantom", phantom_dir)
        texts = [llm.chat(to_openai_messages(first_turn(i, "lvkc")), params, use_tqdm=False)[0].outputs[0].text
                 for i in items]
    sys.modules.pop("vllm", None)
    assert len(set(texts)) > 1, "the items' answers must differ for the order checks to mean anything"
    return texts


def _run_cli(model: Path, bench: Path, out: Path, *overrides: str) -> list[str]:
    code = main([str(RECIPE), "model.backend=vllm", f"model.path={model}",
                 f"benchmarks=[{{name: phantom, path: {bench}}}]", f"output_dir={out}",
                 f"max_new_tokens={MAX_NEW_TOKENS}", f"chunk_size={CHUNK}",
                 "bootstrap_resamples=50", *overrides])
    assert code == 0
    assert "Phantom" in (out / "table1.md").read_text() and (out / "summary.json").is_file()
    records = [json.loads(line) for line in (out / "predictions" / "phantom.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [i.id for i in load_benchmark("phantom", bench)]
    return [r["responses"][0] for r in records]


def test_double_answers_what_the_hf_backend_answers(per_item, phantom_dir, tiny_model_dir):
    """Both engines render the same chat for the tiny model, so greedy answers agree item by item."""
    items = load_benchmark("phantom", phantom_dir)
    hf = HFBackend(tiny_model_dir, batch_size=1)
    params = GenerationParams(max_new_tokens=MAX_NEW_TOKENS)
    assert hf.generate([first_turn(i, "lvkc") for i in items], params) == per_item


def test_vllm_backend_one_rank_through_the_cli(per_item, phantom_dir, tiny_model_dir, engine_log, tmp_path):
    assert _run_cli(tiny_model_dir, phantom_dir, tmp_path / "out") == per_item
    (init,) = _events(engine_log, "init")
    assert init["pid"] == os.getpid() and init["cuda_visible_devices"] == os.environ.get("CUDA_VISIBLE_DEVICES")
    assert init["max_model_len"] == 8192 and init["limit_mm_per_prompt"] == {"image": 7}
    assert init["tensor_parallel_size"] == 1 and init["gpu_memory_utilization"] == 0.9
    assert [c["conversations"] for c in _events(engine_log, "chat")] == [3, 3, 1]  # one chat call per chunk


def test_vllm_backend_two_ranks_pinned_to_their_own_gpu(per_item, phantom_dir, tiny_model_dir, engine_log, tmp_path,
                                                        monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,7")  # the job's GPUs: rank 0 gets 6, rank 1 gets 7
    assert _run_cli(tiny_model_dir, phantom_dir, tmp_path / "out", "model.data_parallel_size=2") == per_item
    inits = _events(engine_log, "init")
    assert sorted(i["cuda_visible_devices"] for i in inits) == ["6", "7"]
    pids = {i["pid"]: i["cuda_visible_devices"] for i in inits}
    assert len(pids) == 2 and os.getpid() not in pids
    served = {"6": 0, "7": 0}
    for chat in _events(engine_log, "chat"):
        served[pids[chat["pid"]]] += chat["conversations"]
    assert served == {"6": 5, "7": 2}  # interleaved shards of chunks of 3, 3 and 1 items (rank 1 gets none of the last)
    for pid in pids:  # the run closed its rank processes
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_multi_image_and_assistant_turns_render_as_in_the_hf_backend(phantom_dir, tiny_model_dir, engine_log):
    items = load_benchmark("phantom", phantom_dir, limit=2)
    conversation = [Turn("user", "Compare the two slices.", (items[0].images[0], items[1].images[0])),
                    Turn("assistant", "<LOC>liver</LOC>"), Turn("user", "Review your answer.")]
    params = GenerationParams(max_new_tokens=MAX_NEW_TOKENS)
    backend = VLLMBackend(VLLMOptions(str(tiny_model_dir)))
    assert backend.generate([conversation], params) == HFBackend(tiny_model_dir).generate([conversation], params)
    too_many = VLLMBackend(VLLMOptions(str(tiny_model_dir), max_images_per_prompt=1))
    with pytest.raises(ValueError, match=r"At most 1 image\(s\)"):
        too_many.generate([conversation], params)


def test_a_rank_that_cannot_start_raises_its_own_error(tiny_model_dir, engine_log, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    backend = VLLMBackend(VLLMOptions(str(tiny_model_dir), data_parallel_size=2, gpu_memory_utilization=1.5))
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        backend.generate([[Turn("user", "hello")]], GenerationParams(max_new_tokens=2))
    assert backend._ranks == []


def test_rank_devices_split_the_jobs_gpus_into_tensor_parallel_groups():
    assert rank_devices(2, 1, None) == ["0", "1"]
    assert rank_devices(2, 2, "4,5,6,7") == ["4,5", "6,7"]
    assert rank_devices(1, 2, "3, 1") == ["3,1"]
    with pytest.raises(ValueError, match="needs 4 GPUs; CUDA_VISIBLE_DEVICES='0,1' names 2"):
        rank_devices(4, 1, "0,1")
