"""``medsage-data build <config.yaml>``: build SAGE-sft and SAGE-rl from a recipe (recipes/data/)."""

from __future__ import annotations

import argparse
import sys

from medsage.data_gen.config import load_config
from medsage.data_gen.pipeline import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medsage-data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the SFT, RL and scorer sets described by a recipe")
    b.add_argument("config", help="a YAML recipe, e.g. recipes/data/quickstart.yaml")
    b.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parser.parse_args(argv)
    stats = build(load_config(args.config), progress=not args.no_progress)
    print(f"accepted {stats.accepted}/{stats.trajectories} trajectories; outputs: {dict(stats.outputs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
