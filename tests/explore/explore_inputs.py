"""Small real inputs for the explorer (a data build's committed samples, R-GRPO session records and two
evaluation runs of the phantom benchmark, each written by the toolkit's own writers), and readers of a
built site's data scripts."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from PIL import Image

from medsage.data_gen.exports import SamplesWriter, Verified
from medsage.data_gen.instructions import Sample
from medsage.data_gen.pipeline import TrajectoryStore
from medsage.data_gen.records import ROI, Record
from medsage.data_gen.trajectories import Trajectory
from medsage.eval.config import BenchmarkSpec, EvalConfig, ModelSpec
from medsage.eval.evaluate import run_evaluation
from medsage.plugins.verl.sessions import FIRST_ATTEMPT, INJECTED, RETRY, SELF_CHECK, SessionRecord, Span, write_step
from medsage.reward_fns.scaffold import Grounding, Scaffold

WIDTH, HEIGHT = 200, 100  # a known image size: grid coordinates scale by 0.2 in x and 0.1 in y


def response(answer: str, box: tuple[float, ...] | None = (100, 250, 500, 750), point=None, kind="region") -> str:
    grounding = Grounding(kind, box_2d=box, point=point) if box or point else None
    return Scaffold("look here", "a round focus", "cysts are round", f"so {answer}", answer,
                    preamble="This is a CT image.", groundings=(grounding,) if grounding else ()).render()


def trajectory(sample_id: str, roi_kind: str, text: str, accepted: bool, reasons: tuple[str, ...] = ()) -> Trajectory:
    return Trajectory(sample_id, roi_kind, "anatomic", text, "offline-rule-based", accepted, reasons)


def sample(n: int, source: str, modality: str, task: str, image: str) -> Sample:
    record = Record(f"{source}/{n}", source, Path(f"/raw/{n}.png"), modality,
                    rois=(ROI("lesion", (20.0, 30.0, 60.0, 70.0)), ROI("lesion", text="the left lobe", kind="text")))
    options = {"A": "Liver", "B": "Kidney"} if task == "multiple_choice" else {}
    answer = "B" if options else "Yes"
    return Sample(f"{source}/{n}::{task}:0", record, image, WIDTH, HEIGHT, task, f"Question {n}?", answer,
                  "Kidney" if options else "Yes", "kidney", options)


def write_build(out: Path) -> Path:
    """A data build's output as the explorer reads it, written by the build's own writers: ``sft/images``,
    ``work/trajectories.jsonl`` (each committed sample with its verified trajectories) and ``samples.jsonl``."""
    image = "images/deeplesion/abc.png"
    (out / "sft" / image).parent.mkdir(parents=True)
    Image.new("L", (WIDTH, HEIGHT), 90).save(out / "sft" / image)
    store, listing = TrajectoryStore(out / "work" / "trajectories.jsonl"), SamplesWriter(out / "samples.jsonl")
    for n, (source, modality, task) in enumerate([("deeplesion", "CT", "yes_no"), ("roboflow", "X-ray", "multiple_choice"),
                                                  ("deeplesion", "CT", "open")]):
        s = sample(n, source, modality, task, image)
        found = [trajectory(s.sample_id, "perturbed", response(s.answer), True),
                 trajectory(s.sample_id, "global", response(s.answer, box=(0, 0, 1000, 1000)), n != 2),
                 trajectory(s.sample_id, "text", response(s.answer, box=None, point=(500, 500)), n == 0 or n == 1)]
        if n == 2:
            found[2] = trajectory(s.sample_id, "text", "<LOC>x</LOC><ANSWER>No</ANSWER>", False, ("invalid_scaffold:missing",))
        asyncio.run(store.add(Verified(s, tuple(found))))  # the build commits samples from its event loop
        listing.add(Verified(s, tuple(found)))
    store.close()
    listing.close()
    with (out / "work" / "trajectories.jsonl").open("a") as f:
        f.write('{"sample_id": "torn')  # a build still writing: its unfinished line is not read
    return out


def session(step: int, uid: str, stop: str, r_sc: float, advantages: tuple[float, ...]) -> SessionRecord:
    kinds = [FIRST_ATTEMPT] if stop == "accepted" else [FIRST_ATTEMPT, INJECTED, SELF_CHECK, INJECTED, RETRY]
    spans = [Span(kind, f"{kind} text of {uid}", 10 + k, a) for k, (kind, a) in enumerate(zip(kinds, advantages))]
    return SessionRecord(step, uid, f"question {uid}", "Yes", 1.0 if r_sc or stop == "accepted" else 0.0, r_sc,
                         stop == "accepted", stop == "accepted" or r_sc == 1.0, stop,
                         {"accuracy": 1.0, "format": 0.5}, spans)


SESSIONS = [
    session(1, "p1", "accepted", 0.0, (0.8,)),
    session(1, "p1", "retried", 1.0, (0.0, 0.0, 0.2, 0.0, 0.8)),
    session(1, "p2", "retried", 0.0, (0.0, 0.0, 0.0, 0.0, -1.5)),
    session(2, "p1", "budget_before_retry", 0.0, (0.0, 0.0, 0.0)),
]


def write_sessions(out: Path) -> Path:
    for step in (1, 2):
        write_step(out, step, [r for r in SESSIONS if r.step == step])
    return out


class Scripted:
    """A backend that answers every question with a scripted LVKC response, by the question's text."""

    def __init__(self, answer):
        self.answer = answer

    def generate(self, conversations, params):
        return [self.answer(conversation[-1].text) for conversation in conversations]

    def close(self) -> None:
        pass


def run_eval(benchmark: Path, out: Path, label: str, answer, limit: int | None = None, style: str = "lvkc") -> Path:
    config = EvalConfig(ModelSpec(path=str(out / "no-checkpoint"), label=label),
                        (BenchmarkSpec("phantom", str(benchmark), limit),), out, prompt_style=style, bootstrap_resamples=50)
    run_evaluation(config, backend=Scripted(answer))
    return out


def base_answer(question: str) -> str:
    """Says Yes to everything (wrong on No and open items); writes no <ANSWER> for lung questions."""
    return "I cannot tell." if "lung" in question else response("Yes")


def trained_answer(question: str) -> str:
    """Yes to every yes/no question, Liver to every open one."""
    return response("Liver" if "Which organ" in question else "Yes")


_REGISTER = re.compile(r'^MEDSAGE\.register\("([^"]+)", (.*)\);\n$', re.DOTALL)


def registered(path: Path):
    """The value a data script registers."""
    m = _REGISTER.match(path.read_text(encoding="utf-8"))
    assert m, f"{path} is not a MEDSAGE.register(...) script"
    return json.loads(m.group(2))


def bodies(site: Path, kind: str) -> list[dict]:
    """Every entry of a page, in order, read back from its chunk files."""
    meta = registered(site / "data" / kind / "meta.js")
    chunks = -(-meta["n"] // meta["chunk"])
    return [b for k in range(chunks) for b in registered(site / "data" / kind / f"c{k}.js")]


def facet_values(site: Path, kind: str, name: str) -> list[str]:
    """Each entry's value of one facet, decoded from the meta file's codes."""
    meta = registered(site / "data" / kind / "meta.js")
    facet = next(f for f in meta["facets"] if f["name"] == name)
    return [facet["values"][ord(c) - meta["code_base"]] for c in facet["codes"]]


def flag_values(site: Path, kind: str, name: str) -> list[bool]:
    meta = registered(site / "data" / kind / "meta.js")
    return [c == "1" for c in next(f for f in meta["flags"] if f["name"] == name)["bits"]]
