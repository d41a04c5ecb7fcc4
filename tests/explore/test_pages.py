"""What each page of the explorer holds, read back from the files the site loads."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from PIL import Image

from medsage.explore import site
from medsage.explore.cli import build_site, main
from medsage.reward_fns.scaffold import STAGES

from explore_inputs import HEIGHT, SESSIONS, WIDTH, bodies, facet_values, flag_values, registered, run_eval


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_site([inputs["build"], inputs["sessions"], inputs["base"], inputs["trained"]], out)
    return out


def test_sample_rois_are_drawn_at_their_pixels_on_the_known_image_size(built):
    first = bodies(built, "samples")[0]
    assert (first["width"], first["height"]) == (WIDTH, HEIGHT)
    rois = {(r["who"], r["kind"]): r for r in first["rois"]}
    # the source's pixel box as is; box_2d [100, 250, 500, 750] -> x 250*0.2, y 100*0.1, 500*0.2 wide, 400*0.1 high
    assert rois["annotation", "annotated"] | {} == {"label": "lesion", "kind": "annotated", "who": "annotation",
                                                   "x": 20.0, "y": 30.0, "w": 40.0, "h": 40.0}
    assert {k: rois["T1", "perturbed"][k] for k in "xywh"} == {"x": 50.0, "y": 10.0, "w": 100.0, "h": 40.0}
    assert {k: rois["T2", "global"][k] for k in "xywh"} == {"x": 0.0, "y": 0.0, "w": WIDTH, "h": HEIGHT}
    assert (rois["T3", "text"]["cx"], rois["T3", "text"]["cy"]) == (100.0, 50.0)  # point [y 500, x 500]
    assert (built / first["image"]).is_file()


def test_a_large_image_is_shown_as_a_thumbnail_while_boxes_keep_its_original_pixels(tmp_path):
    Image.new("RGB", (2000, 1000)).save(tmp_path / "big.png")
    store = site.ImageStore(tmp_path / "site")
    rel, width, height = store.add(tmp_path / "big.png", "x/big.png")
    assert (width, height) == (2000, 1000)  # the SVG's viewBox: shapes stay in the original pixels
    assert Image.open(tmp_path / "site" / rel).size == (site.MAX_SIDE, site.MAX_SIDE // 2)
    assert store.add(tmp_path / "big.png", "x/big.png") == (rel, width, height)


def test_sample_shows_question_stages_and_both_verdicts_with_reasons(built):
    samples = bodies(built, "samples")
    assert [s["id"] for s in samples] == ["deeplesion/0::yes_no:0", "roboflow/1::multiple_choice:0", "deeplesion/2::open:0"]
    choice = samples[1]
    assert (choice["question"], choice["options"], choice["answer"], choice["answer_text"]) == (
        "Question 1?", {"A": "Liver", "B": "Kidney"}, "B", "Kidney")
    accepted = choice["trajectories"][0]
    assert [tag for tag, _ in accepted["segments"]] == ["", *STAGES] and "problems" not in accepted
    assert dict(accepted["segments"])["ANSWER"] == "B"
    broken = samples[2]["trajectories"][2]
    assert broken["accepted"] is False and broken["reasons"] == ["invalid_scaffold:missing"]
    assert "missing <VISUAL>" in broken["problems"] and broken["raw"].startswith("<LOC>x</LOC>")
    assert samples[0]["text_rois"] == ["the left lobe"]


def test_sample_facets_hold_source_task_modality_and_verdicts(built):
    assert facet_values(built, "samples", "source") == ["deeplesion", "roboflow", "deeplesion"]
    assert facet_values(built, "samples", "task_type") == ["yes_no", "multiple_choice", "open"]
    assert facet_values(built, "samples", "modality") == ["CT", "X-ray", "CT"]
    assert facet_values(built, "samples", "verdicts") == ["all accepted", "all accepted", "some rejected"]


def test_sessions_are_grouped_by_step_and_prompt_with_the_records_spans_and_advantages(built):
    groups = bodies(built, "sessions")
    assert [(g["step"], g["uid"], len(g["sessions"])) for g in groups] == [(1, "p1", 2), (1, "p2", 1), (2, "p1", 1)]
    shown = [s for g in groups for s in g["sessions"]]
    for record, s in zip(SESSIONS, shown):
        assert s["spans"] == [asdict(span) for span in record.spans]
        assert (s["reward"], s["r_sc"], s["stop_reason"], s["reward_parts"]) == (
            record.reward, record.r_sc, record.stop_reason, record.reward_parts)
    assert flag_values(built, "sessions", "retried") == [True, True, False]
    assert flag_values(built, "sessions", "corrected") == [True, False, False]
    assert flag_values(built, "sessions", "budget_stopped") == [False, False, True]
    assert registered(built / "data" / "sessions" / "meta.js")["extra"]["advantage_scale"] == 1.5


def test_predictions_line_two_runs_up_with_answer_reference_and_verdict(built, inputs):
    items = bodies(built, "predictions")
    assert len(items) == 6
    base, trained = zip(*((i["runs"][0], i["runs"][1]) for i in items))
    assert [r["label"] for r in items[0]["runs"]] == ["base", "trained"]
    assert [(r["answer"], r["verdict"]) for r in trained] == [
        ("Yes", "right"), ("Yes", "right"), ("Liver", "right"), ("Yes", "wrong"), ("Yes", "wrong"), ("Liver", "wrong")]
    assert [i["reference"] for i in items] == ["Yes", "Yes", "Liver", "No", "No", "Kidney"]
    failures = [r for r in base if r["verdict"] == "parse failure"]
    assert len(failures) == 1 and failures[0]["turns"][0]["raw"] == "I cannot tell." and failures[0]["turns"][0]["problems"]
    assert flag_values(built, "predictions", "parse_failure") == [r["verdict"] == "parse failure" for r in base]
    assert flag_values(built, "predictions", "wrong") == [
        b["verdict"] != "right" or t["verdict"] != "right" for b, t in zip(base, trained)]
    assert facet_values(built, "predictions", "change") == [
        "stayed right", "fixed", "fixed", "stayed wrong", "stayed wrong", "stayed wrong"]
    # the scorer's own record says which answers came from a fallback extraction
    said = [[json.loads(line).get("fallback", False) for line in (run / "scored" / "phantom.jsonl").read_text().splitlines()]
            for run in (inputs["base"], inputs["trained"])]
    assert flag_values(built, "predictions", "fallback") == [a or b for a, b in zip(*said)]
    assert [r["fallback"] for r in base] == said[0]
    first = items[0]
    assert first["reference"] and first["question"] and (built / first["image"]).is_file()
    assert [(r["who"], r["x"], r["y"]) for r in first["rois"]] == [
        ("R1", 250 * first["width"] / 1000, 100 * first["height"] / 1000),
        ("R2", 250 * first["width"] / 1000, 100 * first["height"] / 1000)]


def test_chunks_hold_entries_in_order_and_the_meta_codes_every_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(site, "CHUNK", 7)
    entries = [site.Entry({"i": i}, {"parity": "odd" if i % 2 else "even"}, {"big": i > 20}) for i in range(30)]
    summary = site.write_page(site.Page("samples", "Samples", {"parity": "parity"}, {"big": "big"}, iter(entries), ("x",)), tmp_path)
    assert (summary.entries, summary.chunks) == (30, 5)
    assert [b["i"] for b in bodies(tmp_path, "samples")] == list(range(30))
    assert facet_values(tmp_path, "samples", "parity") == ["odd" if i % 2 else "even" for i in range(30)]
    assert flag_values(tmp_path, "samples", "big") == [i > 20 for i in range(30)]


def test_cli_finds_each_kind_in_a_run_directory_and_refuses_an_empty_folder(inputs, tmp_path, capsys):
    assert main([str(inputs["root"]), "--out", str(tmp_path / "site")]) == 0
    printed = capsys.readouterr().out
    assert "Samples: 3 entries" in printed and "RL sessions: 3 entries" in printed and "Predictions: 6 entries" in printed
    index = (tmp_path / "site" / "index.html").read_text()
    assert all(f'href="{kind}.html"' in index for kind in ("samples", "sessions", "predictions"))
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "holds no data build" in capsys.readouterr().err


def test_an_eval_run_that_does_not_name_its_benchmarks_is_refused_with_why(inputs, tmp_path, capsys):
    old = tmp_path / "old_eval"
    (old / "predictions").mkdir(parents=True)
    summary = json.loads((inputs["base"] / "summary.json").read_text())
    (old / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "benchmarks"}))
    assert main([str(old), "--out", str(tmp_path / "site")]) == 2
    assert "does not name its benchmarks" in capsys.readouterr().err


def test_a_run_with_fewer_questions_and_plain_answers_lines_up_by_id(inputs, tmp_path):
    plain = run_eval(inputs["benchmark"], tmp_path / "eval_plain", "plain", lambda question: "Yes", limit=2, style="plain")
    build_site([inputs["base"], plain], tmp_path / "site")
    items = bodies(tmp_path / "site", "predictions")
    assert [len(i["runs"]) for i in items] == [2] * 6
    assert [i["runs"][1].get("missing", False) for i in items] == [False, False, True, True, True, True]
    assert items[0]["runs"][1]["turns"] == [{"name": "answer", "segments": [["", "Yes"]]}]  # no stages asked, none checked
    assert facet_values(tmp_path / "site", "predictions", "change")[2:] == ["not in both"] * 4
