"""The one command-line shape of every tool: ``medsage-<tool> [verb] RECIPE.yaml a.b=value ...``.

As with llamafactory-cli and verl, a recipe is followed by dotted overrides whose values are read as
YAML. Parsing imports nothing heavy, so ``--help`` answers at once; a tool imports its frameworks
after its arguments are read. A user's mistake (a wrong key or value, a missing file) prints
``medsage-<tool>: message`` and exits with 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .recipe import ConfigError

USAGE_ERROR = 2


def recipe_parser(prog: str, description: str, example: str, verbs: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """A parser taking ``[VERB] RECIPE.yaml KEY=VALUE ...`` (``verbs``: name -> what it does); the tool
    adds its own options."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if verbs:
        parser.add_argument("verb", choices=list(verbs), help="; ".join(f"{v}: {text}" for v, text in verbs.items()))
    parser.add_argument("recipe", type=Path, metavar="RECIPE.yaml", help=f"the recipe, e.g. {example}")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="change a recipe value by its dotted key; the value is read as YAML "
             "(model.path=/ckpt, sources.0.root=/data, eval_dirs=[a,b], max_steps=null)",
    )
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Options may come before, between or after the overrides."""
    return parser.parse_intermixed_args(None if argv is None else list(argv))


def run(prog: str, command: Callable[[], int | None], user_errors: tuple[type[Exception], ...] = ()) -> int:
    """Run ``command``; a recipe error, a missing file or one of ``user_errors`` is the user's to fix:
    its message alone, exit code 2."""
    try:
        return command() or 0
    except (ConfigError, FileNotFoundError, *user_errors) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return USAGE_ERROR
