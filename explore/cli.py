"""``medsage-explore``: write the HTML explorer for what the given folders hold.

    medsage-explore DIR [DIR ...] [--out OUT]

Each DIR is a data build's ``output_dir``, an RL run's ``sessions/`` folder (or the folder above
it), an evaluation's ``output_dir``, or a folder whose subfolders are any of these (the quickstart's
run directory). Several evaluation runs are shown side by side, in the order given (a run
directory's in the order they finished). The site opens
from disk (``OUT/index.html``) or from any static host; OUT defaults to ``DIR/explore`` for one DIR.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .site import ImageStore, Page, PageSummary, write_site


class ExploreError(ValueError):
    """A folder the explorer cannot show, said in one line."""


@dataclass
class Found:
    """What the given folders hold, by kind."""

    builds: list[Path] = field(default_factory=list)
    sessions: list[Path] = field(default_factory=list)
    evals: list[Path] = field(default_factory=list)

    def add(self, folder: Path) -> bool:
        """Classify ``folder``; False when it is none of the kinds."""
        from . import predictions, samples, sessions  # after parsing: --help stays fast

        if samples.is_build(folder):
            self.builds.append(folder)
        elif predictions.is_eval_run(folder):
            self.evals.append(folder)
        elif (found := sessions.sessions_dir(folder)) is not None:
            self.sessions.append(found)
        else:
            return False
        return True


def _subfolders(folder: Path) -> list[Path]:
    """Subfolders, evaluation runs in the order they finished (a run directory's base, SFT, RL)."""
    def finished(sub: Path) -> float:
        summary = sub / "summary.json"
        return summary.stat().st_mtime if summary.is_file() else 0.0

    return sorted((sub for sub in folder.iterdir() if sub.is_dir()), key=lambda sub: (finished(sub), sub.name))


def detect(folders: Sequence[Path]) -> Found:
    """Each folder by what it holds, else by what its subfolders hold."""
    found = Found()
    for folder in folders:
        if not folder.is_dir():
            raise ExploreError(f"{folder}: not a folder")
        if not found.add(folder) and not [sub for sub in _subfolders(folder) if found.add(sub)]:
            raise ExploreError(f"{folder}: holds no data build (samples.jsonl + work/trajectories.jsonl), RL session "
                               "records (step_<k>.jsonl) or evaluation run (summary.json + predictions/)")
    if len(found.builds) > 1 or len(found.sessions) > 1:
        raise ExploreError("give one data build and one RL run at most (several evaluation runs are shown side by side)")
    return found


def pages(found: Found, images: ImageStore) -> list[Page]:
    from . import predictions, samples, sessions

    out = [samples.page(b, images) for b in found.builds] + [sessions.page(s) for s in found.sessions]
    if found.evals:
        try:
            runs = [predictions.read_run(e) for e in found.evals]
        except ValueError as err:
            raise ExploreError(str(err)) from None
        out.append(predictions.page(runs, images))
    return out


def build_site(folders: Sequence[Path], out: Path) -> list[PageSummary]:
    """Detect, read and write; returns what each page holds."""
    return write_site(pages(detect(folders), ImageStore(out)), out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medsage-explore", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="folders to show (see above)")
    parser.add_argument("--out", type=Path, default=None, help="site folder (default: DIR/explore for one DIR)")
    args = parser.parse_args(argv)
    if args.out is None and len(args.dirs) > 1:
        parser.error("--out is needed with several folders")
    out = args.out or args.dirs[0] / "explore"
    start = time.perf_counter()
    try:
        summaries = build_site(args.dirs, out)
    except ExploreError as err:
        print(f"medsage-explore: {err}", file=sys.stderr)
        return 2
    for s in summaries:
        print(f"{s.title}: {s.entries} entries in {s.chunks} chunk(s)")
    print(f"wrote {out / 'index.html'} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
