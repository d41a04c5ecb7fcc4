"""``medsage-eval``: run an evaluation recipe (recipes/eval/), or check its benchmarks for leakage.

    medsage-eval RECIPE.yaml [a.b=value ...]
    medsage-eval leakage RECIPE.yaml --train SFT.json|IMAGE_DIR [--train ...] [--max-distance 20] [--out FILE] [a.b=value ...]

``leakage`` loads the recipe's benchmarks (no model), compares every question's image with the
training images by perceptual hash, prints leaked questions per benchmark and writes their ids
to ``<output_dir>/leakage.json`` (or ``--out``).
Examples:
    medsage-eval recipes/eval/table1.yaml model.path=/ckpt/medsage output_dir=runs/eval/medsage
    medsage-eval leakage recipes/eval/table1.yaml --train outputs/data/sage_sft20k/sft/sage_sft.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from medsage.config import parse, recipe_parser, run

PROG = "medsage-eval"
LEAKAGE = "leakage"
EXAMPLE = "recipes/eval/table1.yaml"


def _leakage_parser() -> argparse.ArgumentParser:
    parser = recipe_parser(f"{PROG} {LEAKAGE}", "Count the recipe's benchmark questions whose image is in a training set.",
                           EXAMPLE)
    parser.add_argument("--train", action="append", required=True, type=Path, metavar="PATH",
                        help="LLaMA-Factory sharegpt json (its 'images') or a folder of images (repeatable)")
    parser.add_argument("--media-dir", type=Path, default=None,
                        help="folder the json's image paths are relative to (default: the json's folder)")
    parser.add_argument("--max-distance", type=int, default=None,
                        help="largest Hamming distance of 256-bit hashes counted as a copy "
                             "(default: the data recipes' leakage.max_distance default)")
    parser.add_argument("--out", type=Path, default=None, help="leaked ids as JSON (default: <output_dir>/leakage.json)")
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from .config import load_recipe

    config = load_recipe(args.recipe, tuple(args.overrides))
    from .evaluate import run_evaluation

    result = run_evaluation(config)
    print(result.files.table1_md.read_text(encoding="utf-8"))
    print(f"reports in {config.output_dir}")
    return 0


def _leakage(args: argparse.Namespace) -> int:
    from .config import load_recipe

    config = load_recipe(args.recipe, tuple(args.overrides))
    from .leakage import DEFAULT_MAX_DISTANCE, check_leakage, leakage_table, write_leakage

    distance = DEFAULT_MAX_DISTANCE if args.max_distance is None else args.max_distance
    results = check_leakage(config, args.train, distance, args.media_dir)
    out = write_leakage(results, args.out or config.output_dir / "leakage.json", args.train, distance)
    print(leakage_table(results))
    print(f"leaked question ids in {out}")
    return 0


def _user_errors() -> tuple[type[Exception], ...]:
    """A benchmark or training set that is not where or what the recipe says."""
    from medsage.data_gen.records import DataError

    from .benchmarks import BenchmarkFormatError

    return BenchmarkFormatError, DataError


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [LEAKAGE]:
        command, args = _leakage, parse(_leakage_parser(), argv[1:])
    else:
        command, args = _evaluate, parse(recipe_parser(PROG, __doc__, EXAMPLE), argv)
    return run(PROG, lambda: command(args), _user_errors())


if __name__ == "__main__":
    sys.exit(main())
