"""The OpenAI-compatible backend and both judges against an OpenAI-compatible server on 127.0.0.1."""

import json
import threading
from pathlib import Path

import pytest
from eval_formats import write_pmc_vqa, write_slake
from openai_stub import StubServer, last_user_text, slow_first_read

from medsage.eval.benchmarks import load_benchmark
from medsage.eval.config import BenchmarkSpec, EvalConfig, JudgeSpec, ModelSpec
from medsage.eval.evaluate import run_evaluation
from medsage.eval.judge import judge_reasoning, parse_reasoning_scores
from medsage.data_gen.llm_client import LLMConfig
from medsage.reward_fns.scaffold import Scaffold

QUESTIONS = [  # question, reference, answer_type, the stub model's answer
    ("Is the liver enlarged?", "Yes", "CLOSED", "Yes, it is enlarged."),
    ("Is there a pneumothorax?", "No", "CLOSED", "Normal lungs."),  # unparseable yes/no: a parse failure
    ("Which organ is abnormal?", "Liver", "OPEN", "The liver."),  # matcher: right
    ("What is the lesion?", "Hemangioma", "OPEN", "A vascular tumour of the liver."),  # matcher wrong, judge right
    ("Where is the mass?", "Left lung", "OPEN", "Right kidney."),  # both wrong
]
JUDGE_SCORES = {"localization": 4, "visual_analysis": 3, "knowledge": 5, "reasoning": 2}


def lvkc(answer: str) -> str:
    return Scaffold("The left upper region.", "A dense area.", "Dense areas are blood.", "Hence.", answer).render()


def vlm_responder(request):
    text = last_user_text(request)
    for question, _, _, answer in QUESTIONS:
        if text.startswith(question):
            return lvkc(answer)
    raise AssertionError(f"unexpected prompt {text!r}")


def judge_responder(request):
    text = last_user_text(request)
    if text.startswith("You grade answers"):
        return "1" if "vascular tumour" in text or "The liver" in text else "0"
    return "Scores: " + json.dumps(JUDGE_SCORES)


@pytest.fixture
def slake_dir(tmp_path):
    rows = [{"question": q, "answer": a, "answer_type": t, "q_lang": "en"} for q, a, t, _ in QUESTIONS]
    return write_slake(tmp_path / "slake", rows)


def _config(slake_dir, out, model_url, judge_url):
    judge = JudgeSpec(endpoint=LLMConfig(base_url=judge_url, model="gpt-judge"))
    return EvalConfig(
        model=ModelSpec(path="medsage-7b", backend="openai", base_url=model_url, label="served"),
        benchmarks=(BenchmarkSpec("slake", str(slake_dir)),),
        output_dir=out,
        bootstrap_resamples=100,
        open_judge=judge,
        reasoning_judge=judge,
    )


def test_openai_backend_and_judges_end_to_end_then_rerun_from_cache(slake_dir, tmp_path):
    with StubServer(vlm_responder) as vlm, StubServer(judge_responder) as judge:
        config = _config(slake_dir, tmp_path / "out", vlm.base_url, judge.base_url)
        result = run_evaluation(config)
        overall = next(s for s in result.summaries if s.by == "all")
        assert overall.accuracy.value == pytest.approx(3 / 5)  # yes, liver (matcher + judge), hemangioma (judge)
        assert overall.parse_failure_rate == pytest.approx(1 / 5)
        assert overall.open_accuracy == pytest.approx(2 / 3) and overall.open_scored_by == "judge"
        assert overall.closed_accuracy == pytest.approx(1 / 2)
        assert result.reasoning == {"slake": pytest.approx({k: float(v) for k, v in JUDGE_SCORES.items()})}
        table2 = result.files.table2_md.read_text()
        assert "| served | SLAKE | measured here | 4.000 | 3.000 | 5.000 | 2.000 | 3.500 |" in table2

        # the model request carries the image as a data URL ahead of the text
        content = vlm.calls[0]["messages"][0]["content"]
        assert content[0]["image_url"]["url"].startswith("data:image/") and content[-1]["type"] == "text"
        # open judge saw only open questions with an answer; reasoning judge saw every response with its image
        open_prompts = [c for c in judge.calls if last_user_text(c).startswith("You grade answers")]
        assert len(open_prompts) == 3 and len(judge.calls) == 3 + 5

        calls_before = (len(vlm.calls), len(judge.calls))
        again = run_evaluation(config)
        assert (len(vlm.calls), len(judge.calls)) == calls_before  # predictions resumed, judge cached
        assert [s.accuracy for s in again.summaries] == [s.accuracy for s in result.summaries]


def test_judge_replies_are_validated_and_retried(tmp_path):
    replies = iter(["I would say 7/5", '{"localization": 2, "visual_analysis": 2, "knowledge": 2, "reasoning": 2}'])
    write_pmc_vqa(tmp_path / "pmc", [("What modality?", ["CT", "MRI", "X-ray", "US"], "A")])
    items = load_benchmark("pmc_vqa", tmp_path / "pmc")
    with StubServer(lambda request: next(replies)) as judge:
        config = LLMConfig(base_url=judge.base_url, model="j", backoff_base_s=0.01, cache_path=tmp_path / "c.sqlite")
        scores = judge_reasoning(config, items, [lvkc("A")], with_image=False)
        assert scores[items[0].id].average == 2.0
        assert len(judge.calls) == 2
        assert isinstance(judge.calls[0]["messages"][0]["content"], list)


@pytest.mark.parametrize(
    ("reply", "valid"),
    [
        ('{"localization": 5, "visual_analysis": 1, "knowledge": 3, "reasoning": 4}', True),
        ('{"localization": 6, "visual_analysis": 1, "knowledge": 3, "reasoning": 4}', False),
        ('{"localization": 5, "visual_analysis": 1, "knowledge": 3}', False),
        ('{"localization": true, "visual_analysis": 1, "knowledge": 3, "reasoning": 4}', False),
        ("no json here", False),
    ],
)
def test_parse_reasoning_scores(reply, valid):
    assert (parse_reasoning_scores(reply) is not None) == valid


def test_self_check_always_reports_first_attempt_beside_final_accuracy(slake_dir, tmp_path):
    templates = Path(__file__).resolve().parents[2] / "plugins" / "verl" / "templates"
    answers = {q: (ref, a) for q, ref, _, a in QUESTIONS}

    def responder(request):
        messages = request["messages"]
        question = next(q for q in answers if last_user_text({"messages": messages[:1]}).startswith(q))
        reference, answer = answers[question]
        if len(messages) == 1:
            return lvkc("Right kidney.")  # every first attempt is wrong (or unreadable)
        if len(messages) == 3:
            assert "<CHECK>" in last_user_text(request)
            return "<CHECK><GROUNDING>Wrong organ.</GROUNDING><ANALYSIS>ok</ANALYSIS><CONSISTENCY>ok</CONSISTENCY></CHECK>"
        return lvkc(reference if question.startswith("Is the liver") else answer)

    with StubServer(responder) as vlm:
        config = EvalConfig(
            model=ModelSpec(path="m", backend="openai", base_url=vlm.base_url),
            benchmarks=(BenchmarkSpec("slake", str(slake_dir)),),
            output_dir=tmp_path / "out",
            bootstrap_resamples=50,
            self_check="always",
            self_check_template=str(templates / "self_check.jinja"),
            retry_template=str(templates / "retry.jinja"),
        )
        result = run_evaluation(config)
        assert len(vlm.calls) == 3 * len(QUESTIONS)
    assert result.first_attempt_accuracy == {"slake": 0.0}
    final = next(s for s in result.summaries if s.by == "all")
    assert final.accuracy.value == pytest.approx(2 / 5)  # "Yes" and "The liver." after the retry
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["first_attempt_accuracy"] == {"slake": 0.0}


def test_a_model_that_answers_nothing_yields_empty_text_not_a_crash():
    from medsage.eval.backends import GenerationParams, OpenAIBackend
    from medsage.eval.prompts import Turn

    with StubServer(lambda request: "") as srv:
        backend = OpenAIBackend(LLMConfig(base_url=srv.base_url, model="silent-vlm", max_retries=0))
        texts = backend.generate([[Turn("user", "Is there a lesion?")]], GenerationParams())
        assert len(srv.calls) == 1
    assert texts == [""]


def test_the_judge_reads_images_off_the_event_loop(tmp_path, monkeypatch):
    """Images on network storage take a while to read: one item's slow image must not hold back the other
    items' requests. The first image's read waits until the judge has received the second item's request,
    which can only happen while the event loop runs on (a read on the loop waits out its 10 s and fails)."""
    write_pmc_vqa(tmp_path / "pmc", [("What modality?", ["CT", "MRI", "X-ray", "US"], "A"),
                                     ("Which plane?", ["Axial", "Coronal", "Sagittal", "Oblique"], "B")])
    items = load_benchmark("pmc_vqa", tmp_path / "pmc")
    second_request = threading.Event()
    waited = slow_first_read(monkeypatch, lambda path: path == Path(items[0].images[0]), until=second_request)

    def responder(request: dict) -> str:
        if "Which plane?" in last_user_text(request):
            second_request.set()
        return json.dumps(JUDGE_SCORES)

    with StubServer(responder) as judge:
        config = LLMConfig(base_url=judge.base_url, model="j", backoff_base_s=0.01)
        scores = judge_reasoning(config, items, [lvkc("A"), lvkc("B")], with_image=True)
    assert [scores[item.id].average for item in items] == [3.5, 3.5]
    assert waited and second_request.is_set()


def test_the_openai_backend_reads_images_off_the_event_loop(tmp_path, monkeypatch):
    """As for the judge: the first conversation's image read waits until the server has received the
    second conversation's request."""
    from medsage.eval.backends import GenerationParams, OpenAIBackend
    from medsage.eval.prompts import Turn

    images = [tmp_path / "first.png", tmp_path / "second.png"]
    for image in images:
        image.write_bytes(b"\x89PNG\r\n\x1a\n" + image.name.encode())
    second_request = threading.Event()
    waited = slow_first_read(monkeypatch, lambda path: path == images[0], until=second_request)

    def responder(request: dict) -> str:
        if "second" in last_user_text(request):
            second_request.set()
        return "Yes"

    conversations = [[Turn("user", f"Is there a lesion? ({image.stem})", images=(str(image),))] for image in images]
    with StubServer(responder) as srv:
        texts = OpenAIBackend(LLMConfig(base_url=srv.base_url, model="vlm")).generate(conversations, GenerationParams())
    assert texts == ["Yes", "Yes"] and waited and second_request.is_set()
