"""No silent damage, stable ids, finished work kept: the build against the stub server on 127.0.0.1,
with cut replies, a refused key, an edited input row, a real kill -9, a second build and a torn line."""

import csv
import hashlib
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from openai_stub import StubReply, StubServer, completion_body, last_user_text

from medsage.data_gen import phantom
from medsage.data_gen.cli import main
from medsage.data_gen.config import load_config
from medsage.data_gen.pipeline import BuildLock, BuildLocked, TrajectoryStore, build
from medsage.reward_fns.scaffold import parse

from build_recipes import write_recipe
from test_pipeline_llm import llm_recipe, stage_reply

PRICES = (2.5, 10.0)  # llm_recipe's USD per million prompt and completion tokens, both models


def _key(request: dict) -> str:
    return hashlib.sha1(json.dumps(request["messages"], sort_keys=True).encode()).hexdigest()


def _cut(request: dict, text: str) -> StubReply:
    body = completion_body(text, request)
    body["choices"][0]["finish_reason"] = "length"
    return StubReply(raw=json.dumps(body))


def _all_text(out: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl"))


def test_cut_and_unclosed_replies_are_asked_again_and_never_exported(tmp_path):
    seen, lock = set(), threading.Lock()

    def responder(request):
        text = last_user_text(request)
        with lock:
            first = _key(request) not in seen
            seen.add(_key(request))
        if first and "medical imaging observer" in text:
            return _cut(request, "<VISUAL>(A) The background is unremarkable. (B) A rounded CUTOFF")
        if first and "Integrate the localization" in text:
            return "<CON>The evidence in the region CUTOFF"  # finish_reason stop, but the stage never closes
        return stage_reply(request)

    with StubServer(responder) as srv:
        stats = build(load_config(llm_recipe(tmp_path / "r.yaml", srv.base_url, str(tmp_path / "out"))), progress=False)
    assert stats.usage["stub-gpt"]["truncated"] > 0 and stats.accepted > 0
    out = tmp_path / "out"
    assert "CUTOFF" not in _all_text(out)
    rows = json.loads((out / "sft" / "sage_sft.json").read_text())
    assert rows and all(parse(r["messages"][1]["content"]).valid for r in rows)
    assert "| truncated |" in (out / "card" / "README.md").read_text()


def test_a_refused_key_stops_the_build_at_once_and_no_key_reaches_disk(tmp_path, monkeypatch, capsys):
    secret = "sk-proj-SECRET0123456789abcdef"
    monkeypatch.setenv("MEDSAGE_TEST_KEY", secret)
    refused = StubReply(status=401, raw=json.dumps({"error": {"message": f"Incorrect API key provided: {secret}"}}))
    with StubServer(lambda request: refused) as srv:
        recipe = llm_recipe(tmp_path / "r.yaml", srv.base_url, str(tmp_path / "out"), api_key_env="MEDSAGE_TEST_KEY")
        assert main(["build", str(recipe), "--no-progress"]) == 3
        assert len(srv.calls) <= 8  # the first wave (concurrency 8), nothing after
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "MEDSAGE_TEST_KEY" in err and secret not in err and "SECRET" not in err
    assert not (tmp_path / "out" / "sft" / "sage_sft.json").exists() and not (tmp_path / "out" / "card").exists()
    assert all(b"SECRET" not in p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())


def test_a_build_that_accepts_nothing_exits_non_zero(tmp_path, capsys):
    def responder(request):
        if "meticulous reviewer" in last_user_text(request):
            return json.dumps({"consistent": False, "issues": ["everything"]})
        return stage_reply(request)

    with StubServer(responder) as srv:
        recipe = llm_recipe(tmp_path / "r.yaml", srv.base_url, str(tmp_path / "out"))
        assert main(["build", str(recipe), "--no-progress"]) == 1
    assert "no trajectory was accepted" in capsys.readouterr().err


def test_every_missing_source_path_is_named_before_any_work(tmp_path, capsys):
    (tmp_path / "DeepLesion").mkdir()
    recipe = write_recipe(tmp_path / "r.yaml", sources=[
        {"kind": "deeplesion", "root": str(tmp_path / "DeepLesion")},
        {"kind": "coco", "root": str(tmp_path / "coco"), "modality": "X-ray"},
        {"kind": "pubmedvision", "json": str(tmp_path / "vqa.json"), "image_root": str(tmp_path)},
    ])
    assert main(["build", str(recipe), "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"medsage-data: {recipe}: sources.1.root: {tmp_path / 'coco'} does not exist; "
                                       f"sources.2.json: {tmp_path / 'vqa.json'} does not exist\n")
    assert not (tmp_path / "out").exists()  # nothing surveyed, locked or written


def _tagged(request):
    """Stage replies whose VISUAL names the image it saw, so every later call can be traced to its image."""
    reply = stage_reply(request)
    image = _image(request)
    if isinstance(reply, str) and reply.startswith("<VISUAL>") and image:
        return reply.replace("</VISUAL>", f" Seen on image {image}.</VISUAL>")
    return reply


def _image(request) -> str | None:
    """The image a call is about: the first image it carries, or the one its VISUAL text names."""
    for message in request["messages"]:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part.get("type") == "image_url":
                return hashlib.sha1(part["image_url"]["url"].encode()).hexdigest()[:8]
    named = re.search(r"Seen on image ([0-9a-f]{8})", json.dumps(request["messages"]))
    return named.group(1) if named else None


def _rewrite(path: Path, edit) -> None:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    fields = list(rows[0])
    rows = edit(rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def test_editing_one_row_re_asks_only_its_samples_and_deleting_one_asks_nothing(tmp_path):
    import base64

    root = phantom.write_deeplesion(tmp_path / "dl", 8, seed=0)
    sources = [{"kind": "deeplesion", "root": str(root)}]
    with StubServer(_tagged) as srv:
        build(load_config(llm_recipe(tmp_path / "r.yaml", srv.base_url, str(tmp_path / "out"), sources)), progress=False)
        first = len(srv.calls)
    rows = list(csv.DictReader((root / "DL_info.csv").open(encoding="utf-8")))
    labels = [r["Coarse_lesion_type"] for r in rows]
    edited = 2
    deleted = next(i for i in range(len(rows)) if i != edited and labels.count(labels[i]) > 1)  # the label space stays

    def edit(rows):
        box = [float(v) for v in rows[edited]["Bounding_boxes"].split(",")]
        rows[edited]["Bounding_boxes"] = ", ".join(f"{v + 2:g}" for v in box)
        return [r for i, r in enumerate(rows) if i != deleted]

    _rewrite(root / "DL_info.csv", edit)
    with StubServer(_tagged) as srv:
        build(load_config(llm_recipe(tmp_path / "r.yaml", srv.base_url, str(tmp_path / "out"), sources)), progress=False)
        asked = {_image(request) for request in srv.calls}
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    (image,) = {s["image"] for s in samples if rows[edited]["File_name"] in s["sample_id"]}
    url = "data:image/png;base64," + base64.b64encode((tmp_path / "out" / "sft" / image).read_bytes()).decode()
    assert first > 0 and asked == {hashlib.sha1(url.encode()).hexdigest()[:8]}  # only the edited row's image
    assert not any(rows[deleted]["File_name"] in s["sample_id"] for s in samples)


def test_kill_9_loses_nothing_and_the_card_bills_exactly_what_the_server_billed(tmp_path):
    billed = {"calls": 0, "cost": 0.0}
    state = {"served": 0, "proc": None, "dead": False}
    lock = threading.Lock()

    def bill(request, text):
        usage = completion_body(text, request)["usage"]
        billed["calls"] += 1
        billed["cost"] += (usage["prompt_tokens"] * PRICES[0] + usage["completion_tokens"] * PRICES[1]) / 1e6

    def killer(request):
        with lock:  # one reply at a time, so the kill happens between billed replies
            if state["dead"]:
                return StubReply(status=503, raw="{}")
            state["served"] += 1
            if state["served"] == 60:
                time.sleep(1.0)  # replies already sent reach the client and its ledger
                state["proc"].kill()
                state["proc"].wait()
                state["dead"] = True
                return StubReply(status=503, raw="{}")
            text = stage_reply(request)
            bill(request, text)
            return text

    with StubServer(killer) as srv:
        recipe = llm_recipe(tmp_path / "r.yaml", srv.base_url, str(tmp_path / "out"), timeout_s=30)
        state["proc"] = subprocess.Popen([sys.executable, "-m", "medsage.data_gen.cli", "build", str(recipe), "--no-progress"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert state["proc"].wait(timeout=300) != 0
    killed_at = billed["calls"]

    def paying(request):
        text = stage_reply(request)
        with lock:
            bill(request, text)
        return text

    with StubServer(paying) as srv:
        recipe = llm_recipe(tmp_path / "r.yaml", srv.base_url, str(tmp_path / "out"), timeout_s=30)
        stats = build(load_config(recipe), progress=False)
    lines = [json.loads(line)["sample_id"] for line in (tmp_path / "out" / "work" / "trajectories.jsonl").read_text().splitlines()]
    assert 0 < killed_at < billed["calls"]
    assert len(lines) == len(set(lines)) == stats.samples and stats.failed_samples == 0  # none lost, none twice
    assert sum(u["calls"] for u in stats.usage.values()) == billed["calls"]
    assert sum(u["cost_usd"] for u in stats.usage.values()) == pytest.approx(billed["cost"], rel=1e-9)


def test_a_second_build_on_one_output_directory_is_refused(tmp_path):
    config = load_config(write_recipe(tmp_path / "r.yaml", sources=[{"kind": "phantom_coco", "n": 3, "seed": 0}]))
    with BuildLock(tmp_path / "out" / "work"):
        with pytest.raises(BuildLocked, match=r"being written by another build \(pid \d+\)"):
            build(config, progress=False)
    assert build(config, progress=False).accepted > 0  # released: the next build runs


def test_a_torn_last_line_is_cut_and_the_rerun_reproduces_the_outputs(tmp_path):
    config = load_config(write_recipe(tmp_path / "r.yaml", sources=[{"kind": "phantom_coco", "n": 4, "seed": 0}]))
    build(config, progress=False)
    out = tmp_path / "out"
    store_path, sft = out / "work" / "trajectories.jsonl", (out / "sft" / "sage_sft.json").read_bytes()
    whole = store_path.read_bytes()
    lines = whole.splitlines(keepends=True)
    store_path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # killed mid-write
    build(config, progress=False)
    assert store_path.read_bytes().endswith(b"\n") and len(store_path.read_bytes().splitlines()) == len(lines)
    assert (out / "sft" / "sage_sft.json").read_bytes() == sft
    store = TrajectoryStore(store_path)
    assert len(store.index) == len(lines)
    store.close()


def test_a_rerun_replays_finished_records_without_decoding_an_image(tmp_path, monkeypatch):
    import medsage.data_gen.pipeline as pipeline

    root = phantom.write_deeplesion(tmp_path / "dl", 6, seed=0)
    config = load_config(write_recipe(tmp_path / "r.yaml", sources=[{"kind": "deeplesion", "root": str(root)}]))
    first = build(config, progress=False)
    decoded = []
    real = pipeline.materialise
    monkeypatch.setattr(pipeline, "materialise", lambda record, *a: decoded.append(record.record_id) or real(record, *a))
    again = build(config, progress=False)
    assert decoded == [] and (again.filtered, again.by_task, again.accepted) == (first.filtered, first.by_task, first.accepted)
    _rewrite(root / "DL_info.csv", lambda rows: [{**r, "Patient_age": "77"} if i == 1 else r for i, r in enumerate(rows)])
    build(config, progress=False)
    assert len(decoded) == 1  # only the edited row's record is worked out again
