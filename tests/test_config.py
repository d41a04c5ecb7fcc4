"""The one recipe loader: types, choices, ranges, unknown keys, nested sections and overrides, each
error naming the file and the dotted key before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from medsage.config import ConfigError, apply_overrides, bounded, build, load, package_file


@dataclass(frozen=True)
class Endpoint:
    url: str
    retries: int = bounded(3, ge=0)


@dataclass(frozen=True)
class Source:
    kind: Literal["coco", "voc"]
    root: Path | None = None


@dataclass(frozen=True)
class Recipe:
    output_dir: Path
    sources: tuple[Source, ...]
    rate: float = bounded(0.5, gt=0, le=1)
    steps: int | None = None
    names: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    endpoint: Endpoint = field(default_factory=lambda: Endpoint("http://x"))
    flag: bool = False

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("sources: expected at least one source")


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {"output_dir": "out", "sources": [{"kind": "coco", "root": "/data/coco"}]}


def test_a_recipe_becomes_typed_values(tmp_path):
    recipe = load(Recipe, _write(tmp_path, {**BASE, "rate": "1e-1", "names": ["a"], "endpoint": {"url": "http://y"}}))
    assert recipe.output_dir == Path("out") and recipe.sources == (Source("coco", Path("/data/coco")),)
    assert recipe.rate == 0.1 and recipe.names == ["a"] and recipe.endpoint == Endpoint("http://y", 3)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": "10k"}, r"steps: expected int or null, got '10k' \(str\)"),
        ({"flag": 1}, r"flag: expected bool, got 1 \(int\)"),
        ({"rate": "fast"}, r"rate: expected float, got 'fast' \(str\)"),
        ({"names": "a"}, r"names: expected a list of str, got 'a' \(str\)"),
        ({"names": ["a", 2]}, r"names\[1\]: expected str, got 2 \(int\)"),
        ({"sources": [{"kind": "yolo"}]}, r"sources\[0\].kind: expected one of 'coco', 'voc', got 'yolo' \(str\)"),
        ({"sources": [{"kind": "coco", "root": 3}]}, r"sources\[0\].root: expected Path or null, got 3 \(int\)"),
        ({"endpoint": {"url": "u", "retries": -1}}, r"endpoint.retries: expected >= 0, got -1 \(int\)"),
        ({"rate": 0}, r"rate: expected > 0, got 0.0"),
        ({"rate": 1.5}, r"rate: expected <= 1, got 1.5"),
        ({"endpoint": "http://z"}, r"endpoint: expected a mapping \(Endpoint\), got 'http://z' \(str\)"),
        ({"extra": [1]}, r"extra: expected a mapping, got a list"),
        ({"endpoint": {"retries": 1}}, r"endpoint.url: required, not given"),
        ({"sources": []}, r"sources: expected at least one source"),
    ],
)
def test_a_wrong_value_names_the_file_and_the_key(tmp_path, change, message):
    path = _write(tmp_path, {**BASE, **change})
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'recipe.yaml'}: {message}"):
        load(Recipe, path)


def test_an_unknown_key_names_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"endpoint.retires: unknown key; valid keys here: url, retries$"):
        load(Recipe, _write(tmp_path, {**BASE, "endpoint": {"url": "u", "retires": 1}}))
    with pytest.raises(ConfigError, match=r"recipe.yaml: output_dri: unknown key; valid keys here: output_dir, sources,"):
        load(Recipe, _write(tmp_path, {**BASE, "output_dri": "x"}))


def test_overrides_set_nested_keys_list_items_and_yaml_values(tmp_path):
    recipe = load(Recipe, _write(tmp_path, BASE),
                  ["endpoint.url=http://z", "sources.0.kind=voc", "steps=12", "names=[a, b]", "extra.k.j=null"])
    assert recipe.endpoint.url == "http://z" and recipe.sources[0].kind == "voc" and recipe.steps == 12
    assert recipe.names == ["a", "b"] and recipe.extra == {"k": {"j": None}}
    with pytest.raises(ConfigError, match=r"steps: expected int or null, got 'abc'"):
        load(Recipe, _write(tmp_path, BASE), ["steps=abc"])
    with pytest.raises(ConfigError, match=r"endpoint.urll: unknown key"):
        load(Recipe, _write(tmp_path, BASE), ["endpoint.urll=x"])
    with pytest.raises(ConfigError, match=r"override 'steps': expected KEY=VALUE"):
        apply_overrides({}, ["steps"], "r.yaml")
    with pytest.raises(ConfigError, match=r"override output_dir.x: 'x' is inside a str"):
        apply_overrides({"output_dir": "o"}, ["output_dir.x=1"], "r.yaml")


def test_a_missing_or_broken_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the recipe"):
        load(Recipe, tmp_path / "nowhere.yaml")
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(ConfigError, match="bad.yaml: cannot read the recipe"):
        load(Recipe, tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1")
    with pytest.raises(ConfigError, match=r"list.yaml: expected a mapping \(Recipe\), got a list"):
        load(Recipe, tmp_path / "list.yaml")


def test_a_section_inside_a_bigger_config_is_named_by_its_path():
    with pytest.raises(ConfigError, match=r"^verl config: medsage.retries: expected >= 0"):
        build(Endpoint, {"url": "u", "retries": -2}, "verl config", "medsage")


def test_shipped_files_are_found_from_any_working_directory(tmp_path):
    """pkg:// paths name files inside the installed package: the R-GRPO instructions (also the evaluation's
    defaults), verl's agent-loop registry and the data build's stage prompts and question templates all
    load from a directory outside the repository."""
    code = "\n".join([
        "from medsage.config import package_file",
        "from medsage.data_gen.instructions import load_question_templates",
        "from medsage.data_gen.prompts import StagePrompts",
        "from medsage.eval.config import EvalConfig",
        "from medsage.plugins.verl.settings import RGRPOSettings, render_instruction",
        "check, retry = RGRPOSettings().templates()",
        "defaults = {f.name: f.default for f in EvalConfig.__dataclass_fields__.values()}",
        "print(bool(check and retry), render_instruction(defaults['retry_template']) == retry,",
        "      package_file('pkg://medsage.plugins.verl/agent_loops.yaml').is_file(),",
        "      bool(StagePrompts.load() and load_question_templates()))",
    ])
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ""})
    assert out.stdout.split() == ["True", "True", "True", "True"], out.stderr[-2000:]
    assert package_file("relative/file.txt") == Path("relative/file.txt")
    with pytest.raises(FileNotFoundError, match="no installed package 'medsage.nowhere'"):
        package_file("pkg://medsage.nowhere/x.txt")
