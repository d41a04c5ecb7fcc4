"""``medsage-eval``: run an evaluation recipe (recipes/eval/), or check its benchmarks for leakage.

    medsage-eval RECIPE.yaml [--set key.sub=value ...]
    medsage-eval leakage RECIPE.yaml --train SFT.json|IMAGE_DIR [--train ...] [--max-distance 20] [--out FILE]

``leakage`` loads the recipe's benchmarks (no model), compares every question's image with the
training images by perceptual hash, prints leaked questions per benchmark and writes their ids
to ``<output_dir>/leakage.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from medsage.data_gen.records import DataError

from .benchmarks import BenchmarkFormatError
from .config import RecipeError, load_recipe
from .evaluate import run_evaluation
from .leakage import DEFAULT_MAX_DISTANCE, check_leakage, leakage_table, write_leakage

_ERRORS = (RecipeError, BenchmarkFormatError, DataError, FileNotFoundError)
_LEAKAGE = "leakage"


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="YAML recipe, e.g. recipes/eval/table1.yaml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set model.path=/ckpt --set output_dir=runs/x (repeatable)",
    )
    return parser


def _leakage_parser() -> argparse.ArgumentParser:
    parser = _parser(f"medsage-eval {_LEAKAGE}", "Count the recipe's benchmark questions whose image is in a training set.")
    parser.add_argument("--train", action="append", required=True, type=Path, metavar="PATH",
                        help="LLaMA-Factory sharegpt json (its 'images') or a folder of images (repeatable)")
    parser.add_argument("--media-dir", type=Path, default=None,
                        help="folder the json's image paths are relative to (default: the json's folder)")
    parser.add_argument("--max-distance", type=int, default=DEFAULT_MAX_DISTANCE,
                        help=f"largest Hamming distance of 256-bit hashes counted as a copy (default {DEFAULT_MAX_DISTANCE})")
    parser.add_argument("--out", type=Path, default=None, help="leaked ids as JSON (default: <output_dir>/leakage.json)")
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    config = load_recipe(args.recipe, tuple(args.overrides))
    result = run_evaluation(config)
    print(result.files.table1_md.read_text(encoding="utf-8"))
    print(f"reports in {config.output_dir}")
    return 0


def _leakage(args: argparse.Namespace) -> int:
    config = load_recipe(args.recipe, tuple(args.overrides))
    results = check_leakage(config, args.train, args.max_distance, args.media_dir)
    out = write_leakage(results, args.out or config.output_dir / "leakage.json", args.train, args.max_distance)
    print(leakage_table(results))
    print(f"leaked question ids in {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [_LEAKAGE]:
        command, args = _leakage, _leakage_parser().parse_args(argv[1:])
    else:
        parser = _parser("medsage-eval", __doc__)
        command, args = _evaluate, parser.parse_args(argv)
    try:
        return command(args)
    except _ERRORS as err:
        print(f"medsage-eval: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
