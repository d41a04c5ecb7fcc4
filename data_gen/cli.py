"""``medsage-data build <config.yaml>``: build SAGE-sft and SAGE-rl from a recipe (recipes/data/)."""

from __future__ import annotations

import argparse
import sys

from medsage.data_gen.config import load_config
from medsage.data_gen.llm_client import LLMAuthError
from medsage.data_gen.pipeline import BuildLocked, build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medsage-data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the SFT, RL and scorer sets described by a recipe")
    b.add_argument("config", help="a YAML recipe, e.g. recipes/data/quickstart.yaml")
    b.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    try:
        stats = build(config, progress=not args.no_progress)
    except BuildLocked as err:  # a second build on one output directory
        print(f"medsage-data: {err}", file=sys.stderr)
        return 2
    except LLMAuthError as err:  # every further call would be refused: stop, nothing exported
        print(f"medsage-data: stopped: {err}", file=sys.stderr)
        return 3
    print(f"accepted {stats.accepted}/{stats.trajectories} trajectories; outputs: {dict(stats.outputs)}")
    if not stats.accepted:
        print(f"medsage-data: no trajectory was accepted; see {config.output_dir}/card/README.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
