"""``medsage-eval RECIPE.yaml [--set key.sub=value ...]``: run an evaluation recipe (recipes/eval/)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .benchmarks import BenchmarkFormatError
from .config import RecipeError, load_recipe
from .evaluate import run_evaluation


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medsage-eval", description=__doc__)
    parser.add_argument("recipe", help="YAML recipe, e.g. recipes/eval/table1.yaml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set model.path=/ckpt --set output_dir=runs/x (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_recipe(args.recipe, tuple(args.overrides))
        result = run_evaluation(config)
    except (RecipeError, BenchmarkFormatError, FileNotFoundError) as err:
        print(f"medsage-eval: {err}", file=sys.stderr)
        return 2
    print(result.files.table1_md.read_text(encoding="utf-8"))
    print(f"reports in {config.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
