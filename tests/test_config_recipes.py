"""Every section of every shipped recipe is checked by the one loader: an unknown key and a value of the
wrong type anywhere are refused with the file and the dotted key, before anything runs."""

from __future__ import annotations

import copy
import dataclasses
import re
import sys
import types
from pathlib import Path
from typing import Any, Iterator, Union, get_args, get_origin, get_type_hints

import pytest
import yaml

from medsage.config import ConfigError, apply_overrides, build
from medsage.data_gen.config import BuildConfig
from medsage.eval.config import EvalConfig
from medsage.plugins.verl.settings import RGRPOSettings
from medsage.reward_fns.consistency.serve import ServeConfig
from medsage.reward_fns.consistency.train import TrainConfig
from medsage.reward_fns.rewards import RewardKwargs

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
sys.path.insert(0, str(RECIPES / "quickstart"))
from ablation import AblationConfig  # noqa: E402
from quickstart import QuickstartConfig  # noqa: E402

SHIPPED = {
    "data/sage_sft20k.yaml": BuildConfig, "data/sage_rl10k.yaml": BuildConfig, "data/quickstart.yaml": BuildConfig,
    "eval/table1.yaml": EvalConfig, "eval/table1_judged.yaml": EvalConfig, "eval/table2.yaml": EvalConfig,
    "scorer/train.yaml": TrainConfig, "scorer/serve.yaml": ServeConfig, "scorer/reward_kwargs.yaml": RewardKwargs,
    "quickstart/quickstart.yaml": QuickstartConfig, "quickstart/ablation.yaml": AblationConfig,
}


def _sections(cls: type, data: dict, key: str, override: str) -> Iterator[tuple[str, str, str]]:
    """(override path, error path, field kind) for every field of every section present in ``data``."""
    hints = get_type_hints(cls)
    yield f"{override}bogus_key", f"{key}bogus_key", "unknown"
    for spec in dataclasses.fields(cls):
        hint, value = _strip_optional(hints[spec.name]), data.get(spec.name)
        path, at = f"{override}{spec.name}", f"{key}{spec.name}"
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            yield from _sections(hint, value, f"{at}.", f"{path}.")
        elif get_origin(hint) is tuple and dataclasses.is_dataclass(get_args(hint)[0]) and value:
            yield from _sections(get_args(hint)[0], value[0], f"{at}[0].", f"{path}.0.")
        elif hint is not Any:
            yield path, at, "list" if get_origin(hint) in (tuple, list) else "other"


def _strip_optional(hint: Any) -> Any:
    args = [a for a in get_args(hint) if a is not type(None)]
    return args[0] if get_origin(hint) in (Union, types.UnionType) and len(args) == 1 else hint


def _cases() -> Iterator[Any]:
    for name, cls in SHIPPED.items():
        data = yaml.safe_load((RECIPES / name).read_text())
        for override, at, kind in _sections(cls, data, "", ""):
            yield pytest.param(name, cls, override, at, kind, id=f"{name}:{at}")
    for override, at, kind in _sections(RGRPOSettings, {}, "medsage.", ""):
        yield pytest.param("verl", RGRPOSettings, override, at, kind, id=f"verl:{at}")


@pytest.mark.parametrize("recipe, cls, override, at, kind", list(_cases()))
def test_every_key_is_checked(recipe, cls, override, at, kind):
    data = {} if recipe == "verl" else yaml.safe_load((RECIPES / recipe).read_text())
    wrong = {"unknown": "1", "list": "{a: 1}", "other": "[1]"}[kind]
    data = apply_overrides(copy.deepcopy(data), [f"{override}={wrong}"], recipe)
    message = "unknown key; valid keys here" if kind == "unknown" else "expected "
    with pytest.raises(ConfigError, match=rf"^{recipe}: {re.escape(at)}: {message}"):
        build(cls, data, recipe, "medsage" if recipe == "verl" else "")
