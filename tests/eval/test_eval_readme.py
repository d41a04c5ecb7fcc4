"""The evaluation README's benchmark options are the keys the loaders accept (a doc that names a key the
code refuses, as an old comment once named ``lang``, sends a user to an error)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from medsage.eval.benchmarks import BenchmarkFormatError, _check_options

README = Path(__file__).resolve().parents[2] / "recipes" / "eval" / "README.md"


def _documented_benchmarks() -> list[dict]:
    section = README.read_text(encoding="utf-8").split("## Benchmark options", 1)[1].split("\n## ", 1)[0]
    entries = []
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        block = block if block.lstrip().startswith(("benchmarks:", "temperature:")) else "benchmarks:\n" + block
        entries += yaml.safe_load(block)["benchmarks"]
    return entries


def test_every_documented_option_is_accepted():
    entries = _documented_benchmarks()
    assert {k for e in entries for k in e["options"]} == {"language", "circular", "samples"}
    for entry in entries:
        options = {k: v for k, v in entry["options"].items() if k not in ("circular", "samples")}
        _check_options(entry["name"], options)  # raises on a key the loader does not take


def test_the_old_slake_key_is_refused_by_name():
    with pytest.raises(BenchmarkFormatError, match="options.lang"):
        _check_options("slake", {"lang": "en"})
