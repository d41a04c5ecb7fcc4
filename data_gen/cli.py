"""``medsage-data build RECIPE.yaml [a.b=value ...]``: build SAGE-sft, SAGE-rl and the scorer pairs
described by a recipe (recipes/data/).

The recipe is read and checked whole before any record is read or any model is called.
Examples:
    medsage-data build recipes/data/quickstart.yaml
    medsage-data build recipes/data/sage_sft20k.yaml output_dir=/scratch/sage_sft20k sources.0.root=/data/DeepLesion
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from medsage.config import parse, recipe_parser, run

PROG = "medsage-data"


def main(argv: Sequence[str] | None = None) -> int:
    verbs = {"build": "write sft/, rl/, scorer/pairs.jsonl and card/ under the recipe's output_dir"}
    parser = recipe_parser(PROG, __doc__, "recipes/data/quickstart.yaml", verbs)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parse(parser, argv)
    return run(PROG, lambda: _build(args.recipe, args.overrides, not args.no_progress))


def _build(recipe: str, overrides: list[str], progress: bool) -> int:
    from medsage.config import ConfigError, missing_paths
    from medsage.data_gen.config import load_config

    config = load_config(recipe, tuple(overrides))
    # all at once, before a build that would stop at the first (after surveying the sources before it)
    missing = missing_paths((f"sources.{i}.{name}", getattr(source, name))
                            for i, source in enumerate(config.sources) for name in ("root", "json", "image_root"))
    if missing:
        raise ConfigError(f"{recipe}: " + "; ".join(missing))
    from medsage.data_gen.llm_client import LLMAuthError
    from medsage.data_gen.pipeline import BuildLocked, build
    from medsage.data_gen.records import DataError

    try:
        stats = build(config, progress=progress)
    except (DataError, BuildLocked) as err:  # a source that is not where or what the recipe says; a second build
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except LLMAuthError as err:  # every further call would be refused: stop, nothing exported
        print(f"{PROG}: stopped: {err}", file=sys.stderr)
        return 3
    print(f"accepted {stats.accepted}/{stats.trajectories} trajectories; outputs: {dict(stats.outputs)}")
    if not stats.accepted:
        print(f"{PROG}: no trajectory was accepted; see {config.output_dir}/card/README.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
