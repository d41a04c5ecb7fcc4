"""LLM label imputation (paper A.3.1) against an OpenAI-compatible server on 127.0.0.1."""

import csv
import hashlib
import json
import re
import threading
from collections import Counter
from pathlib import Path

import pytest
from openai_stub import StubReply, StubServer, last_user_text

from medsage.data_gen import phantom
from medsage.data_gen.config import load_config
from medsage.data_gen.imputation import IMPUTED, parse_label
from medsage.data_gen.instructions import SOURCE_QA
from medsage.data_gen.pipeline import build

from build_recipes import write_recipe

UNLABELED_ROWS = {1, 2, 3, 4}  # of six DeepLesion rows: Coarse_lesion_type -1
DECISIONS = ("label", "label", "null", "too_long", "malformed")  # cycled over distinct images


def deeplesion_with_unlabeled_rows(root: Path) -> Path:
    """A DeepLesion export (phantom pixels) where some lesions carry type -1, as in the real DL_info.csv;
    written once (a rerun's recipe finds the same files)."""
    if (root / "DL_info.csv").is_file():
        return root
    phantom.write_deeplesion(root, 6, seed=3)
    path = root / "DL_info.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    for i in UNLABELED_ROWS:
        rows[i]["Coarse_lesion_type"] = "-1"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


class Labeller:
    """A vision model naming findings; each distinct image gets the next behaviour of ``DECISIONS``, always."""

    def __init__(self):
        self.decided: dict[str, str] = {}
        self.lock = threading.Lock()

    def __call__(self, request: dict):
        text = last_user_text(request)
        if "labelling a medical image" not in text:
            return StubReply(status=400, raw='{"error": {"message": "unexpected prompt"}}')
        url = request["messages"][0]["content"][0]["image_url"]["url"]
        with self.lock:
            decision = self.decided.setdefault(hashlib.sha256(url.encode()).hexdigest(),
                                               DECISIONS[len(self.decided) % len(DECISIONS)])
        if decision == "null":
            return 'I cannot tell. {"label": null}'
        if decision == "too_long":
            return json.dumps({"label": "a rounded hypodense focus with smooth margins in the organ"})
        if decision == "malformed":
            return "The finding is probably a lesion."
        known = re.search(r"use it exactly: (.*)\.\n", text)
        if known:  # the source's own label, spelled differently: the imputer keeps one spelling per class
            return "```json\n" + json.dumps({"label": known.group(1).split("; ")[0].upper() + "."}) + "\n```"
        place = re.search(r"is seen in the ([a-z ]+)\.", text)
        return json.dumps({"label": f"{place.group(1) if place else 'focal'} lesion"})

    def expected(self) -> Counter:
        names = {"label": IMPUTED, "null": "no_label", "too_long": "too_long", "malformed": "failed"}
        return Counter(names[d] for d in self.decided.values())


def recipe(tmp_path: Path, base_url: str | None, **imputation) -> Path:
    endpoint = {"base_url": base_url or "http://127.0.0.1:9/v1", "model": "stub-imputer", "concurrency": 4,
                "max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02, "timeout_s": 5}
    return write_recipe(
        tmp_path / "recipe.yaml", output_dir=str(tmp_path / "out"),
        sources=[{"kind": "deeplesion", "root": str(deeplesion_with_unlabeled_rows(tmp_path / "dl"))},
                 {"kind": "phantom_pubmedvision", "n": 6, "seed": 2}],
        imputation={"endpoint": endpoint, **imputation},
        generation={"backend": "offline", "trajectories_per_sample": 1, "negatives_per_sample": 0},
        exports={"rl_size": 50, "val_fraction": 0.2},
    )


def _committed(out: Path) -> list[dict]:
    """The committed samples (each with its record) of a build."""
    lines = (out / "work" / "trajectories.jsonl").read_text().splitlines()
    return [json.loads(line)["sample"] for line in lines]


def _records(out: Path) -> dict[str, dict]:
    return {s["record"]["record_id"]: s["record"] for s in _committed(out)}


def test_unlabeled_records_get_model_labels_with_counted_failures_and_resume_from_the_cache(tmp_path):
    labeller = Labeller()
    with StubServer(labeller) as srv:
        stats = build(load_config(recipe(tmp_path, srv.base_url, enabled=True)), progress=False)
        first_calls = len(srv.calls)
    candidates = len(UNLABELED_ROWS) + 6
    assert len(labeller.decided) == candidates
    assert stats.imputation == labeller.expected()
    assert stats.imputation == Counter({IMPUTED: 4, "no_label": 2, "too_long": 2, "failed": 2})

    records = _records(tmp_path / "out")
    by_source: dict[str, list] = {}
    for record in records.values():
        by_source.setdefault(record["source"], []).append(record)
    deeplesion_space = {label for r in by_source["deeplesion"] if "label_imputed_by" not in r["meta"] for label in r["labels"]}
    imputed = [r for r in records.values() if "label_imputed_by" in r["meta"]]
    assert len(imputed) == 4 and all(r["meta"]["label_imputed_by"] == "stub-imputer" and len(r["labels"]) == 1 for r in imputed)
    assert all(r["labels"][0] in deeplesion_space for r in imputed if r["source"] == "deeplesion")
    assert all(r["labels"][0].endswith(" lesion") for r in imputed if r["source"] == "pubmedvision")
    # DeepLesion rows the model could not label have no question either: dropped and counted.
    dropped = len(UNLABELED_ROWS) - sum(r["source"] == "deeplesion" for r in imputed)
    assert stats.filtered["unlabeled"] == dropped and len(by_source["deeplesion"]) == 6 - dropped
    # PubMedVision records keep their own question whatever the model said; only labelled ones get templated tasks.
    assert len(by_source["pubmedvision"]) == 6
    templated = {s["record"]["record_id"] for s in _committed(tmp_path / "out") if s["task_type"] != SOURCE_QA}
    imputed_ids = {r["record_id"] for r in imputed}
    assert templated & imputed_ids and {i for i in templated if i.startswith("pubmedvision/")} <= imputed_ids

    with StubServer(labeller) as srv:  # the same build again: only the failed requests are asked again
        again = build(load_config(recipe(tmp_path, srv.base_url, enabled=True)), progress=False)
        assert len(srv.calls) == 2 * 3  # two failed records x (1 + max_retries)
    assert first_calls == 4 + 2 + 2 + 2 * 3
    assert _records(tmp_path / "out") == records and again.imputation == stats.imputation
    # finished records are replayed from work/records.jsonl: no image decoded, no cache looked up
    assert again.usage["stub-imputer"]["cache_hits"] == 0 and again.filtered == stats.filtered


def test_full_build_reports_imputation_in_the_card(tmp_path):
    with StubServer(Labeller()) as srv:
        stats = build(load_config(recipe(tmp_path, srv.base_url, enabled=True)), progress=False)
    card = (tmp_path / "out" / "card" / "README.md").read_text()
    assert "Labels proposed by **stub-imputer via" in card and f"| {IMPUTED} | 4 |" in card
    assert stats.usage["stub-imputer"]["calls"] == 4 + 2 + 2 + 2 * 3
    saved = json.loads((tmp_path / "out" / "card" / "stats.json").read_text())
    assert saved["imputation"] == dict(stats.imputation)


def test_off_by_default_unlabeled_records_are_counted_and_no_model_is_asked(tmp_path):
    config = load_config(recipe(tmp_path, None))  # the endpoint points nowhere: any call would fail
    assert not config.imputation.enabled
    stats = build(config, progress=False)
    assert stats.filtered["unlabeled"] == len(UNLABELED_ROWS) and not stats.imputation
    assert {s["task_type"] for s in _committed(tmp_path / "out") if s["record"]["source"] == "pubmedvision"} == {SOURCE_QA}
    assert not (tmp_path / "out" / "work" / "imputation_cache.sqlite").exists()


def test_imputation_section_is_checked_like_every_other(tmp_path):
    with pytest.raises(ValueError, match=r"imputation.enable: unknown key"):
        load_config(recipe(tmp_path, None, enable=True))
    with pytest.raises(ValueError, match=r"imputation\.endpoint\.key: unknown key"):
        load_config(write_recipe(tmp_path / "r.yaml", imputation={"endpoint": {"base_url": "x", "model": "m", "key": "k"}}))


@pytest.mark.parametrize("reply, label", [
    ('{"label": "liver"}', "liver"), ('Sure: {"label": null}', None), ('{"label": ["a"]}', ...),
    ('{"finding": "liver"}', ...), ("liver", ...), ("", ...),
])
def test_parse_label_accepts_text_or_null_only(reply, label):
    parsed = parse_label(reply)
    assert (parsed is None) if label is ... else parsed["label"] == label
